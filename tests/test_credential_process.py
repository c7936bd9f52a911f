"""credential_process: a command prints the key; the proxy runs it, renews it and never shows it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import shlex
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from conftest import ProxyFactory, ServerFactory, write_credentials
from fake_upstream import FakeUpstream
from test_cli import base_env, proxy_process, run_failing
from test_rotation import key_of, wait_for

from proxy.errors import CredentialsError
from proxy.keys import process, reload
from proxy.keys.credentials import load_credentials

# The script a credential_process line names: it records each run (pid and arguments), then
# does what state.json says.
SCRIPT = """\
#!{python} -S
import json, os, sys, time
here = os.path.dirname(os.path.realpath(__file__))
with open(os.path.join(here, "runs"), "a") as runs:
    runs.write(json.dumps({{"pid": os.getpid(), "argv": sys.argv[1:]}}) + "\\n")
with open(os.path.join(here, "state.json")) as file:
    state = json.load(file)
if state["spawn"]:  # a child of its own, holding the pipes open, as a shell script's would
    import subprocess
    child = subprocess.Popen([sys.executable, "-S", "-c", "import time; time.sleep(30)"])
    with open(os.path.join(here, "grandchild"), "w") as file:
        file.write(str(child.pid))
time.sleep(state["sleep"])
sys.stderr.write(state["stderr"])
sys.stdout.write(state["stdout"])
sys.exit(state["status"])
"""

KEY_A, KEY_B, KEY_C = "PROCESSKEYA000000001", "PROCESSKEYB000000002", "PROCESSKEYC000000003"
# 32 bytes each, NUL and high bytes included; in base64 they have letters and digits.
SECRET_A, SECRET_B, SECRET_C = (
    b"\x00\xff" + hashlib.sha256(k.encode()).digest()[2:] for k in "ABC"
)
DEVELOPER_KEY = "PROCESS-DEVKEY-0123456789"
WHERE = "test, profile [DEFAULT]"


class Command:
    """A credential_process script in its own directory: the test sets what it prints next,
    and reads how many times (and with which arguments) it was run."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir()
        self.directory = directory
        self.script = directory / "issue-key.py"
        self.script.write_text(SCRIPT.format(python=sys.executable))
        self.script.chmod(0o755)
        self.prints("")

    @property
    def line(self) -> str:
        """The command line for the credentials file, the script's path quoted as needed."""
        return shlex.quote(str(self.script))

    def prints(
        self,
        stdout: str,
        *,
        stderr: str = "",
        status: int = 0,
        sleep: float = 0,
        spawn: bool = False,
    ) -> None:
        state = {
            "stdout": stdout,
            "stderr": stderr,
            "status": status,
            "sleep": sleep,
            "spawn": spawn,
        }
        # Replaced whole: the proxy may run the script while the test changes this.
        draft = self.directory / "state.draft"
        draft.write_text(json.dumps(state))
        os.replace(draft, self.directory / "state.json")

    def issues(
        self,
        key_id: str,
        secret: bytes,
        expiration: float | None = None,
        developer_key: str | None = None,
    ) -> None:
        """Print this key, as JSON, from the next run on."""
        self.prints(key_json(key_id, secret, expiration, developer_key))

    def records(self) -> list[dict[str, Any]]:
        path = self.directory / "runs"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    @property
    def runs(self) -> int:
        return len(self.records())


@pytest.fixture
def command(tmp_path: Path) -> Command:
    return Command(tmp_path / "key-issuer")


def rfc3339(epoch: float) -> str:
    """E.g. 2026-12-07T21:30:00.250Z."""
    when = datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds")
    return when.replace("+00:00", "Z")


def key_json(
    key_id: str, secret: bytes, expiration: float | None = None, developer_key: str | None = None
) -> str:
    """What a credential_process prints."""
    printed = {
        "R3_ACCESS_KEY_ID": key_id,
        "R3_SECRET_ACCESS_KEY": base64.b64encode(secret).decode(),
    }
    if developer_key is not None:
        printed["R3_DEVELOPER_API_KEY"] = developer_key
    if expiration is not None:
        printed["Expiration"] = rfc3339(expiration)
    return json.dumps(printed)


def process_file(tmp_path: Path, command_line: str, profile: str = "DEFAULT") -> Path:
    """A credentials file whose profile names only the command: no key, no secret."""
    return write_credentials(
        tmp_path / "process-credentials", f"[{profile}]\ncredential_process = {command_line}\n"
    )


def encodings(secret: bytes) -> list[str]:
    """The forms a leaked secret would take in text."""
    return [
        base64.b64encode(secret).decode(),
        base64.urlsafe_b64encode(secret).decode(),
        secret.hex(),
        repr(secret)[2:-1],
    ]


def assert_no_secret(text: str, *secrets: bytes) -> None:
    for secret in secrets:
        for form in encodings(secret):
            assert form not in text


def accept(upstream: FakeUpstream, **keys: bytes) -> None:
    """The keys the API accepts from now on (any other is refused with 401)."""
    upstream.keys.clear()
    upstream.keys.update(keys)


# --- the key a command prints signs requests ---------------------------------------------------


async def test_serve_signs_with_the_key_the_command_prints_and_logs_no_secret(
    upstream: FakeUpstream, command: Command, tmp_path: Path
) -> None:
    command.issues(KEY_A, SECRET_A, developer_key=DEVELOPER_KEY)
    accept(upstream, **{KEY_A: SECRET_A})
    path = process_file(tmp_path, command.line)
    assert "R3_" not in path.read_text()  # the file holds no key at all
    args = ("--listen", "127.0.0.1:0", "--upstream", upstream.url, "--credentials", str(path))
    async with (
        proxy_process(*args, "--log-level", "debug", env=base_env(tmp_path)) as running,
        aiohttp.ClientSession() as session,
    ):
        async with session.post(running.url + "/graphql/v1", data=b"{}") as response:
            assert response.status == 200
        received = upstream.last()
        assert key_of(received.header("Authorization")) == KEY_A
        assert received.header("DeveloperKey") == DEVELOPER_KEY
        assert command.runs == 1
    output = "".join(running.lines)
    assert "POST /graphql/v1 200" in output  # the debug log was captured
    assert_no_secret(output, SECRET_A)
    assert KEY_A not in output and DEVELOPER_KEY not in output
    assert KEY_A[-4:] in output  # the masked key id names it


async def test_a_key_without_expiration_is_not_fetched_again_by_the_periodic_check(
    make_proxy: ProxyFactory, upstream: FakeUpstream, command: Command, tmp_path: Path
) -> None:
    command.issues(KEY_A, SECRET_A)
    accept(upstream, **{KEY_A: SECRET_A})
    client = await make_proxy(
        credentials=str(process_file(tmp_path, command.line)), reload_interval=0.05
    )
    assert client.service.watcher.current.store == "process"
    for _ in range(3):
        async with client.get("/graphql/v1") as response:
            assert response.status == 200
        await asyncio.sleep(0.1)
    assert key_of(upstream.last().header("Authorization")) == KEY_A
    assert command.runs == 1


def test_load_credentials_reads_key_developer_key_and_expiration(
    command: Command, tmp_path: Path
) -> None:
    command.prints(
        json.dumps(
            {
                "R3_ACCESS_KEY_ID": KEY_A,
                "R3_SECRET_ACCESS_KEY": base64.b64encode(SECRET_A).decode(),
                "R3_DEVELOPER_API_KEY": DEVELOPER_KEY,
                "Expiration": "2036-12-07T23:30:00+02:00",
            }
        )
    )
    path = process_file(tmp_path, command.line, profile="work")
    creds = load_credentials(path, "work", {})
    assert (creds.access_key_id, creds.secret, creds.developer_key) == (
        KEY_A,
        SECRET_A,
        DEVELOPER_KEY,
    )
    assert (creds.store, creds.profile, creds.source) == ("process", "work", str(path))
    assert creds.expires == 2112298200.0  # 2036-12-07T21:30:00Z
    assert_no_secret(repr(creds), SECRET_A)


def test_keys_in_the_environment_win_and_the_command_is_not_run(
    command: Command, tmp_path: Path
) -> None:
    command.issues(KEY_A, SECRET_A)
    environ = {
        "R3_ACCESS_KEY_ID": KEY_B,
        "R3_SECRET_ACCESS_KEY": base64.b64encode(SECRET_B).decode(),
    }
    creds = load_credentials(process_file(tmp_path, command.line), "DEFAULT", environ)
    assert (creds.access_key_id, creds.store) == (KEY_B, "environment")
    assert command.runs == 0


def test_the_line_is_split_like_a_shell_and_run_without_one(
    command: Command, tmp_path: Path
) -> None:
    command.issues(KEY_A, SECRET_A)
    spaced = tmp_path / "dir with space"
    spaced.mkdir()
    os.symlink(command.script, spaced / "issue key")
    marker = tmp_path / "shell-ran"
    line = (
        f"{shlex.quote(str(spaced / 'issue key'))} 'two words' \"$HOME\" a\\ b "
        f"&& touch {marker} | `id` $(id) > {marker}"
    )
    load_credentials(process_file(tmp_path, line), "DEFAULT", {})
    [record] = command.records()
    words = ["two words", "$HOME", "a b", "&&", "touch", str(marker), "|", "`id`", "$(id)", ">"]
    assert record["argv"] == [*words, str(marker)]
    assert not marker.exists()


@pytest.mark.parametrize(
    ("template", "argv"),
    [
        pytest.param("'{program}'", [], id="quoted-path-alone"),
        pytest.param('"{program}" get "remoteit key"', ["get", "remoteit key"], id="first-last"),
        pytest.param('{plain} show "remoteit #2"', ["show", "remoteit #2"], id="hash-in-quotes"),
        pytest.param("{plain} 'a ; b'", ["a ; b"], id="semicolon-in-quotes"),
    ],
)
def test_quotes_in_the_line_mean_what_they_mean_to_a_shell(
    command: Command, tmp_path: Path, template: str, argv: list[str]
) -> None:
    command.issues(KEY_A, SECRET_A)
    spaced = tmp_path / "dir with space"
    spaced.mkdir()
    os.symlink(command.script, spaced / "issue key")
    line = template.format(program=spaced / "issue key", plain=command.script)
    assert shlex.split(line)[1:] == argv  # what a shell would run
    try:
        load_credentials(process_file(tmp_path, line), "DEFAULT", {})
    except CredentialsError as exc:
        raise AssertionError(f"not run as a shell would run it: {exc}") from None
    [record] = command.records()
    assert record["argv"] == argv


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("'unclosed quote", "cannot be split into words"),
        ("", "credential_process is empty"),
        ("  ''  ", "credential_process is empty"),
    ],
)
def test_a_line_that_names_no_command_is_refused(tmp_path: Path, line: str, expected: str) -> None:
    with pytest.raises(CredentialsError) as caught:
        load_credentials(process_file(tmp_path, line), "DEFAULT", {})
    message = str(caught.value)
    assert f"{tmp_path / 'process-credentials'}, profile [DEFAULT]" in message
    assert "credential_process" in message and expected in message


# --- renewal: before the key expires, on SIGHUP, after the API refused it ------------------


async def test_the_command_is_run_again_before_the_key_expires_and_no_request_fails(
    make_proxy: ProxyFactory, upstream: FakeUpstream, command: Command, tmp_path: Path
) -> None:
    expires = round(time.time() + 3, 3)  # renewed halfway through its life: in 1.5 s
    command.issues(KEY_A, SECRET_A, expiration=expires)
    accept(upstream, **{KEY_A: SECRET_A, KEY_B: SECRET_B})
    client = await make_proxy(
        credentials=str(process_file(tmp_path, command.line)), reload_interval=0.05
    )
    assert client.service.watcher.current.expires == expires
    command.issues(KEY_B, SECRET_B, expiration=time.time() + 3600)
    signed: list[tuple[str, float]] = []  # (key, when its answer came)
    while not signed or signed[-1][0] != KEY_B:
        async with client.get("/graphql/v1") as response:
            assert response.status == 200, await response.text()
        signed.append((key_of(upstream.last().header("Authorization")), time.time()))
        assert time.time() < expires + 1, "the key was not renewed before it expired"
        await asyncio.sleep(0.02)
    assert all(when < expires for key, when in signed if key == KEY_A)
    assert command.runs == 2
    # The old key expires at the API: every request from now on is signed with the new one.
    accept(upstream, **{KEY_B: SECRET_B})
    await asyncio.sleep(0.3)
    for _ in range(3):
        async with client.get("/graphql/v1") as response:
            assert response.status == 200
    assert all(received.verified for received in upstream.received)
    assert command.runs == 2  # the new key expires in an hour: not run again meanwhile


class Clock:
    """The watcher's clock (``time.time``), moved by the test."""

    def __init__(self) -> None:
        self.now = time.time()

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return time.monotonic()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(reload, "time", fake)
    return fake


async def test_a_long_lived_key_is_renewed_five_minutes_before_it_expires(
    make_proxy: ProxyFactory,
    upstream: FakeUpstream,
    command: Command,
    tmp_path: Path,
    clock: Clock,
) -> None:
    expires = round(clock.now + 3600, 3)
    command.issues(KEY_A, SECRET_A, expiration=expires)
    accept(upstream, **{KEY_A: SECRET_A, KEY_B: SECRET_B})
    path = process_file(tmp_path, command.line)
    client = await make_proxy(credentials=str(path), reload_interval=0.05)
    command.issues(KEY_B, SECRET_B, expiration=expires + 3600)
    clock.now = expires - 301
    await asyncio.sleep(0.3)  # six checks
    assert command.runs == 1
    clock.now = expires - 299
    await wait_for(lambda: client.service.watcher.current.access_key_id == KEY_B)
    async with client.get("/graphql/v1") as response:
        assert response.status == 200
    assert key_of(upstream.last().header("Authorization")) == KEY_B
    assert command.runs == 2


async def test_a_failed_renewal_keeps_the_old_key_and_is_retried_10_s_later_not_at_each_check(
    make_proxy: ProxyFactory,
    upstream: FakeUpstream,
    command: Command,
    tmp_path: Path,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="proxy")
    expires = round(clock.now + 3600, 3)
    command.issues(KEY_A, SECRET_A, expiration=expires)
    accept(upstream, **{KEY_A: SECRET_A})
    path = process_file(tmp_path, command.line)
    client = await make_proxy(credentials=str(path), reload_interval=0.05)
    command.prints("", stderr="vault: sealed\n", status=1)
    watcher = client.service.watcher
    clock.now = expires - 200
    await wait_for(lambda: watcher.results["error"] == 1)  # the run is over, and failed
    assert command.runs == 2
    clock.now += 9
    await asyncio.sleep(0.3)  # six checks: a failed run is retried later, not at each
    assert command.runs == 2
    async with client.get("/graphql/v1") as response:
        assert response.status == 200
    assert key_of(upstream.last().header("Authorization")) == KEY_A
    clock.now += 2
    await wait_for(lambda: watcher.results["error"] == 2)
    assert command.runs == 3
    errors = [r.getMessage() for r in caplog.records if "not reloaded" in r.getMessage()]
    assert len(errors) == 1  # the same error is logged once, not at every try
    assert f"{path}, profile [DEFAULT] credential_process" in errors[0]
    assert "status 1: vault: sealed" in errors[0] and KEY_A[-4:] in errors[0]
    # The command works again: the next try (SIGHUP here) gets the new key, which is used.
    command.issues(KEY_B, SECRET_B, expiration=expires + 3600)
    accept(upstream, **{KEY_B: SECRET_B})
    client.service.clients.reload("SIGHUP")
    await wait_for(lambda: watcher.current.access_key_id == KEY_B)
    async with client.get("/graphql/v1") as response:
        assert response.status == 200
    assert key_of(upstream.last().header("Authorization")) == KEY_B
    assert_no_secret(caplog.text, SECRET_A, SECRET_B)


async def test_sighup_runs_the_command_again_and_a_failing_run_keeps_the_key_unlogged(
    upstream: FakeUpstream, command: Command, tmp_path: Path
) -> None:
    command.issues(KEY_A, SECRET_A)
    accept(upstream, **{KEY_A: SECRET_A})
    path = process_file(tmp_path, command.line)
    args = ("--listen", "127.0.0.1:0", "--upstream", upstream.url, "--credentials", str(path))

    async def signed_with() -> str:
        async with session.get(running.url + "/graphql/v1") as response:
            assert response.status == 200
        return key_of(upstream.last().header("Authorization"))

    def errors() -> list[str]:
        return [line for line in running.lines if "not reloaded" in line]

    async with (
        proxy_process(*args, "--log-level", "debug", env=base_env(tmp_path)) as running,
        aiohttp.ClientSession() as session,
    ):
        assert await signed_with() == KEY_A
        command.issues(KEY_B, SECRET_B)
        accept(upstream, **{KEY_A: SECRET_A, KEY_B: SECRET_B})
        running.process.send_signal(signal.SIGHUP)
        await wait_for(lambda: command.runs == 2)
        await wait_for(lambda: any("credentials reloaded" in line for line in running.lines))
        assert await signed_with() == KEY_B
        # A run that fails, though it printed a key: not used, and not shown.
        # Its first line on standard error is shown, any token in it elided.
        token = base64.b64encode(SECRET_C).decode()
        command.prints(
            key_json(KEY_C, SECRET_C),
            stderr=f"\n  vault: locked (token {token})\nsecond line\n",
            status=4,
        )
        accept(upstream, **{KEY_B: SECRET_B, KEY_C: SECRET_C})
        running.process.send_signal(signal.SIGHUP)
        await wait_for(lambda: len(errors()) == 1)
        assert await signed_with() == KEY_B
        # A run whose output is not JSON (the secret in it): not used, and not shown.
        command.prints(f"R3_SECRET_ACCESS_KEY={base64.b64encode(SECRET_C).decode()}\n")
        running.process.send_signal(signal.SIGHUP)
        await wait_for(lambda: len(errors()) == 2)
        assert await signed_with() == KEY_B
        assert command.runs == 4
    failed, garbage = errors()
    assert f"{path}, profile [DEFAULT] credential_process: '{command.script}'" in failed
    assert "exited with status 4: vault: locked" in failed and "second line" not in failed
    assert "not a JSON object" in garbage
    output = "".join(running.lines)
    assert "GET /graphql/v1 200" in output  # the debug log was captured
    assert_no_secret(output, SECRET_A, SECRET_B, SECRET_C)
    assert all(key not in output for key in (KEY_A, KEY_B, KEY_C))


async def test_a_refused_key_runs_the_command_once_then_no_more(
    make_proxy: ProxyFactory,
    upstream: FakeUpstream,
    command: Command,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reload, "RETRY_AFTER", 0.1)  # refusals re-run it at most this often
    command.issues(KEY_A, SECRET_A)
    accept(upstream, **{KEY_A: SECRET_A})
    client = await make_proxy(credentials=str(process_file(tmp_path, command.line)))
    watcher = client.service.watcher

    async def status() -> int:
        async with client.get("/graphql/v1") as response:
            return response.status

    assert await status() == 200
    # The key was renewed at the vault and the old one revoked: the proxy learns of it from
    # the API's 401, runs the command (without waiting for the once-a-second check)...
    command.issues(KEY_B, SECRET_B)
    accept(upstream, **{KEY_B: SECRET_B})
    assert await status() == 401
    await wait_for(lambda: watcher.current.access_key_id == KEY_B, timeout=0.8)
    assert command.runs == 2
    # ...and the next request is signed with the new key.
    assert await status() == 200
    assert upstream.last().verified and key_of(upstream.last().header("Authorization")) == KEY_B
    # A key the API refuses though the command still prints it: one more run, then no more.
    await asyncio.sleep(0.15)
    accept(upstream)
    assert await status() == 401
    await wait_for(lambda: watcher.results["success"] == 2, timeout=0.8)
    assert command.runs == 3
    for _ in range(4):
        await asyncio.sleep(0.15)
        assert await status() == 401
    await asyncio.sleep(0.2)
    assert command.runs == 3


async def test_refusals_run_the_command_at_most_once_in_10_s_even_for_new_keys(
    make_proxy: ProxyFactory, upstream: FakeUpstream, command: Command, tmp_path: Path
) -> None:
    assert reload.RETRY_AFTER == 10
    command.issues(KEY_A, SECRET_A)
    accept(upstream)  # a command that prints keys of another account: all refused
    client = await make_proxy(credentials=str(process_file(tmp_path, command.line)))
    watcher = client.service.watcher
    async with client.get("/graphql/v1") as response:
        assert response.status == 401
    command.issues(KEY_B, SECRET_B)
    await wait_for(lambda: watcher.current.access_key_id == KEY_B)
    command.issues(KEY_C, SECRET_C)
    for _ in range(5):  # B was never refused before, but A's re-run was less than 10 s ago
        async with client.get("/graphql/v1") as response:
            assert response.status == 401
    await asyncio.sleep(0.2)
    assert command.runs == 2
    assert watcher.current.access_key_id == KEY_B


async def test_a_late_refusal_of_a_replaced_key_does_not_use_up_the_new_keys_rerun(
    make_proxy: ProxyFactory,
    aiohttp_server: ServerFactory,
    command: Command,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reload, "RETRY_AFTER", 0.05)  # not what stops the re-run here
    fake = FakeUpstream(keys={KEY_A: SECRET_A})
    held, release = asyncio.Event(), asyncio.Event()

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.path == "/held":  # answered (and verified) only when the test says so
            held.set()
            await release.wait()
        return await fake.handle(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server: TestServer = await aiohttp_server(app)
    command.issues(KEY_A, SECRET_A)
    client = await make_proxy(
        credentials=str(process_file(tmp_path, command.line)),
        upstream=str(server.make_url("")).rstrip("/"),
    )
    watcher = client.service.watcher

    async def status(target: str = "/graphql/v1") -> int:
        async with client.get(target) as response:
            return response.status

    slow = asyncio.create_task(status("/held"))  # signed with A, in flight
    await held.wait()
    # Meanwhile A is replaced by B (SIGHUP) and revoked: the slow request's answer is a 401.
    command.issues(KEY_B, SECRET_B)
    accept(fake, **{KEY_B: SECRET_B})
    client.service.clients.reload("SIGHUP")
    await wait_for(lambda: watcher.current.access_key_id == KEY_B)
    release.set()
    assert await slow == 401
    # Should A's refusal run the command all the same, that run is over before it changes.
    deadline = time.monotonic() + 0.5
    while watcher.results["success"] < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert await status() == 200
    # Later B is revoked in turn, and the command prints C: B's first 401 must run it.
    command.issues(KEY_C, SECRET_C)
    accept(fake, **{KEY_C: SECRET_C})
    assert await status() == 401
    await wait_for(lambda: watcher.current.access_key_id == KEY_C, timeout=0.6)
    assert await status() == 200


# --- failures: each names the file, the profile, credential_process and what went wrong ------


@pytest.mark.parametrize("subcommand", [["check"], []], ids=["check", "serve"])
def test_a_failing_command_stops_the_proxy_with_its_status_and_first_stderr_line(
    command: Command, tmp_path: Path, subcommand: list[str]
) -> None:
    command.prints(
        json.dumps({"R3_ACCESS_KEY_ID": KEY_A, "R3_SECRET_ACCESS_KEY": "c2VjcmV0"}),
        stderr="first line\nsecond line\n",
        status=3,
    )
    path = process_file(tmp_path, command.line, profile="work")
    args = [*subcommand, "--credentials", str(path), "--profile", "work"]
    if not subcommand:  # serve: a port of its own, should it get that far
        args += ["--listen", "127.0.0.1:0"]
    line = run_failing(args, base_env(tmp_path))
    assert f"{path}, profile [work] credential_process: '{command.script}'" in line
    assert "exited with status 3: first line" in line
    assert "second line" not in line and KEY_A not in line
    assert command.runs == 1


def running(pid: int) -> bool:
    """Whether the process is alive (a zombie, killed and not yet reaped, is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_command_past_the_timeout_is_stopped_with_what_it_started(command: Command) -> None:
    assert process.TIMEOUT == 30
    command.prints("{}", sleep=5, spawn=True)
    started = time.monotonic()
    try:
        with pytest.raises(CredentialsError) as caught:
            process.run(command.line, WHERE, timeout=0.5)
        assert time.monotonic() - started < 2.5
        message = str(caught.value)
        assert message.startswith(f"{WHERE} credential_process: '{command.script}'")
        assert "did not finish within 0.5 s and was stopped" in message
        [record] = command.records()
        assert not running(record["pid"])
        grandchild = int((command.directory / "grandchild").read_text())
        deadline = time.monotonic() + 2
        while running(grandchild) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not running(grandchild), "what the command started is still running"
    finally:  # should it have outlived the command: ended here, once sure it is ours
        spawned = command.directory / "grandchild"
        if spawned.exists() and running(pid := int(spawned.read_text())):
            with contextlib.suppress(OSError):
                if b"time.sleep(30)" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)


def test_a_command_that_prints_nothing_to_stderr_says_so(command: Command) -> None:
    command.prints("", status=1)
    with pytest.raises(CredentialsError, match="exited with status 1 and printed nothing"):
        process.run(command.line, WHERE)


SECRET_TEXT = base64.b64encode(SECRET_A).decode()


def printed(**values: Any) -> str:
    """A command's output: key id and secret, with ``values`` changed (None: left out)."""
    base: dict[str, Any] = {"R3_ACCESS_KEY_ID": KEY_A, "R3_SECRET_ACCESS_KEY": SECRET_TEXT}
    base.update(values)
    return json.dumps({key: value for key, value in base.items() if value is not None})


@pytest.mark.parametrize(
    ("stdout", "expected"),
    [
        pytest.param(f"R3_SECRET_ACCESS_KEY={SECRET_TEXT}\n", "not a JSON object", id="not-json"),
        pytest.param("", "not a JSON object", id="empty"),
        pytest.param(f"[{printed()}]", "not a JSON object", id="array"),
        pytest.param(f'"{SECRET_TEXT}"', "not a JSON object", id="string"),
        pytest.param(printed()[:-3], "not a JSON object", id="truncated"),
        pytest.param(
            printed(R3_SECRET_ACCESS_KEY=None), "R3_SECRET_ACCESS_KEY is missing", id="no-secret"
        ),
        pytest.param(
            printed(R3_SECRET_ACCESS_KEY=""), "R3_SECRET_ACCESS_KEY is missing", id="empty-secret"
        ),
        pytest.param(printed(R3_ACCESS_KEY_ID=None), "R3_ACCESS_KEY_ID is missing", id="no-key-id"),
        pytest.param(
            printed(Expiration="2026-12-07T21:30:00"),
            "Expiration '2026-12-07T21:30:00' is not an RFC 3339 time with a time zone",
            id="expiration-without-zone",
        ),
        pytest.param(
            printed(Expiration="next tuesday"), "is not an RFC 3339 time", id="expiration-text"
        ),
        pytest.param(
            printed(Expiration=1796679000), "Expiration is not a string", id="expiration-number"
        ),
        pytest.param(
            printed(R3_SECRET_ACCESS_KEY=[SECRET_TEXT]),
            "R3_SECRET_ACCESS_KEY is not a string",
            id="secret-in-a-list",
        ),
        pytest.param(
            printed(R3_ACCESS_KEY_ID=12345), "R3_ACCESS_KEY_ID is not a string", id="key-id-number"
        ),
        pytest.param(
            printed(R3_SECRET_ACCESS_KEY=SECRET_TEXT + "!!"),
            "R3_SECRET_ACCESS_KEY is not valid base64",
            id="secret-not-base64",
        ),
        pytest.param(
            printed(R3_ACCESS_KEY_ID='KEY"ID'), "R3_ACCESS_KEY_ID contains a quote", id="key-quote"
        ),
    ],
)
def test_bad_output_is_named_without_quoting_it(
    command: Command, tmp_path: Path, stdout: str, expected: str
) -> None:
    command.prints(stdout)
    path = process_file(tmp_path, command.line)
    with pytest.raises(CredentialsError) as caught:
        load_credentials(path, "DEFAULT", {})
    message = str(caught.value)
    assert message.startswith(f"{path}, profile [DEFAULT] credential_process"), message
    assert expected in message
    assert_no_secret(message, SECRET_A)
    assert KEY_A not in message
    assert "\n" not in message


@pytest.mark.parametrize("line", ["R3_SECRET_ACCESS_KEY", "r3_secret_access_key"])
def test_a_profile_with_credential_process_and_a_secret_is_refused(
    command: Command, tmp_path: Path, line: str
) -> None:
    command.issues(KEY_A, SECRET_A)
    path = write_credentials(
        tmp_path / "credentials",
        f"[DEFAULT]\nCredential_Process = {command.line}\n{line} = {SECRET_TEXT}\n",
    )
    with pytest.raises(CredentialsError) as caught:
        load_credentials(path, "DEFAULT", {})
    message = str(caught.value)
    assert f"{path}, profile [DEFAULT]" in message
    assert "credential_process and also R3_SECRET_ACCESS_KEY" in message
    assert SECRET_TEXT not in message
    assert command.runs == 0


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (f"R3_ACCESS_KEY_ID = {KEY_A}", "R3_ACCESS_KEY_ID"),
        ("secret_store = keychain", "secret_store"),
        (f"R3_ACCESS_KEY_ID = {KEY_A}\nR3_SECRET_ACCESS_KEY = x", "R3_SECRET_ACCESS_KEY"),
    ],
)
def test_a_profile_with_credential_process_and_other_key_lines_is_refused(
    command: Command, tmp_path: Path, extra: str, named: str
) -> None:
    path = write_credentials(
        tmp_path / "credentials", f"[DEFAULT]\ncredential_process = {command.line}\n{extra}\n"
    )
    with pytest.raises(CredentialsError) as caught:
        load_credentials(path, "DEFAULT", {})
    assert "credential_process and also" in str(caught.value)
    assert named in str(caught.value)
    assert command.runs == 0


@pytest.fixture
def empty_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))


@pytest.mark.usefixtures("empty_path")
@pytest.mark.parametrize(
    ("argv0", "expected"),
    [
        ("remoteit-vault-helper", "the command 'remoteit-vault-helper' was not found"),
        ("{tmp}/no such dir/helper", "the command '{tmp}/no such dir/helper' was not found"),
        ("{tmp}/not-executable", "'{tmp}/not-executable' cannot be run ("),
        ("{tmp}", "'{tmp}' cannot be run"),
    ],
)
def test_a_command_that_cannot_be_run_is_named(tmp_path: Path, argv0: str, expected: str) -> None:
    (tmp_path / "not-executable").write_text("#!/bin/sh\necho {}\n")
    program = argv0.format(tmp=tmp_path)
    path = process_file(tmp_path, f"{shlex.quote(program)} --json")
    with pytest.raises(CredentialsError) as caught:
        load_credentials(path, "DEFAULT", {})
    message = str(caught.value)
    assert message.startswith(f"{path}, profile [DEFAULT] credential_process: ")
    assert expected.format(tmp=tmp_path) in message


def test_a_key_whose_expiration_has_passed_is_refused() -> None:
    output = json.dumps(
        {
            "R3_ACCESS_KEY_ID": KEY_A,
            "R3_SECRET_ACCESS_KEY": base64.b64encode(SECRET_A).decode(),
            "Expiration": "2020-01-01T00:00:00.123456789Z",  # Go's 9 digits, read on 3.10 too
        }
    ).encode()
    with pytest.raises(CredentialsError) as caught:
        process.parse(output, "profile [work]")
    assert "Expiration '2020-01-01T00:00:00.123456789Z' has passed" in str(caught.value)
