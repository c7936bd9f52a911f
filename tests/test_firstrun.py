"""First run and daily use: per-command help, near-miss suggestions, messages a newcomer meets."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import (
    DEVELOPER_KEY,
    KEY_ID,
    SECRET_B64,
    ProxyClient,
    ProxyFactory,
    write_credentials,
)
from fake_upstream import FakeUpstream, Received
from test_cli import base_env, proxy_process, run_failing

from proxy.config.commandline import COMMAND_OPTIONS
from proxy.config.options import CONFIG_OPTION, OPTIONS

TOKEN = "firstrun-token-9f2c"
SERVE_ONLY = ("--workers", "--token", "--token-file", "--listen", "--socket-mode")


def command(*args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = base_env(home) if home is not None else None
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def options_in_help(text: str) -> dict[str, str]:
    """Each ``--option`` of a help text and the description after it (possibly wrapped)."""
    found: dict[str, str] = {}
    lines = text.splitlines()
    for index, line in enumerate(lines):
        match = re.match(r"\s{2}(-\w, )?(--[\w-]+)(?: [A-Z_]+)?(?:\s{2,}(.*))?$", line)
        if match:
            following = lines[index + 1].strip() if index + 1 < len(lines) else ""
            found[match.group(2)] = match.group(3) or following
    return found


@pytest.mark.parametrize("name", ["check", "sign", "import", "configure"])
def test_each_command_lists_only_its_own_options(name: str) -> None:
    result = command(name, "--help")
    assert result.returncode == 0, result.stderr
    listed = options_in_help(result.stdout)
    used = {CONFIG_OPTION.name, *COMMAND_OPTIONS[name]}
    for option in (CONFIG_OPTION, *OPTIONS):
        assert (option.flag in listed) == (option.name in used), (name, option.flag)
    for flag in SERVE_ONLY:
        assert flag not in listed
    for flag, description in listed.items():
        assert description and not description.startswith("-"), (name, flag)


def test_serve_lists_every_setting_and_has_a_description() -> None:
    result = command("serve", "--help")
    listed = options_in_help(result.stdout)
    for option in (CONFIG_OPTION, *OPTIONS):
        assert option.flag in listed and option.env in result.stdout
        assert listed[option.flag]
    assert "sign them with the profile's access key" in result.stdout


def test_check_help_gives_the_exit_codes() -> None:
    text = command("check", "--help").stdout
    assert re.search(r"^\s+0\s+the API accepted", text, re.M)
    assert re.search(r"^\s+1\s+the API refused", text, re.M)
    assert re.search(r"^\s+2\s+a configuration error", text, re.M)


def test_top_level_help_lists_every_command() -> None:
    text = command("--help").stdout
    for name in COMMAND_OPTIONS:
        assert re.search(rf"^\s+{name}\s+\w", text, re.M), name


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["sevre"], "remoteit-proxy: 'sevre' is not a command; did you mean 'serve'?"),
        (["chek"], "remoteit-proxy: 'chek' is not a command; did you mean 'check'?"),
        (["improt", "x.csv"], "remoteit-proxy: 'improt' is not a command; did you mean 'import'?"),
        (["zzz"], "remoteit-proxy: 'zzz' is not a command"),
        (["--listn", "127.0.0.1:0"], "serve has no option --listn; did you mean '--listen'?"),
        (["check", "--profle", "x"], "check has no option --profle; did you mean '--profile'?"),
        (["check", "--workers", "2"], "check has no option --workers (it is an option of serve)"),
        (["sign"], "the following arguments are required: PATH_OR_URL"),
        (["configure", "--developer-key-fil", "x"], "configure has no option --developer-key-fil"),
        (["sign", "/x", "--formt", "curl"], "sign has no option --formt; did you mean '--format'?"),
        (["--config", "x.ini", "check"], "put the command first: remoteit-proxy check [OPTIONS]"),
    ],
)
def test_unknown_commands_and_options_are_named_with_the_nearest(
    args: list[str], expected: str, tmp_path: Path
) -> None:
    result = command(*args, home=tmp_path)
    assert result.returncode == 2
    first, hint = result.stderr.splitlines()
    assert first.startswith("remoteit-proxy: ") and expected in first, first
    assert "--help" in hint and "Traceback" not in result.stderr and result.stdout == ""


def test_a_config_file_without_a_section_header_names_the_file_and_the_section(
    tmp_path: Path,
) -> None:
    config = tmp_path / "proxy.ini"
    config.write_text("listen = 127.0.0.1:8181\n")
    line = run_failing(["--config", str(config)], base_env(tmp_path))
    assert str(config) in line and "[proxy]" in line and "line 1" in line
    assert "Error" not in line  # no Python class name
    config.write_text("# nothing yet\n")
    line = run_failing(["--config", str(config)], base_env(tmp_path))
    assert f"config file {config} has no [proxy] section" in line
    # A misspelt section is named, not ignored: its settings would silently not apply.
    config.write_text("[proxy]\n[clients.backup]\nprofile = work\n")
    line = run_failing(["--config", str(config)], base_env(tmp_path))
    assert "unknown section [clients.backup]" in line and "[client.NAME]" in line


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[proxy]\nlisten = a\nlisten = b\n", "setting listen appears twice in [proxy] (line 3)"),
        ("[proxy]\n[proxy]\n", "section [proxy] appears twice (line 2)"),
        ("[proxy]\nnot a setting\n", "line 2 is neither 'key = value' nor '[section]'"),
    ],
)
def test_config_file_syntax_errors_are_worded(tmp_path: Path, text: str, expected: str) -> None:
    config = tmp_path / "proxy.ini"
    config.write_text(text)
    line = run_failing(["--config", str(config)], base_env(tmp_path))
    assert expected in line and "Error" not in line


# --- the access line, health and start-up line -------------------------------------------


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="proxy")
    return caplog


def access_fields(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    records = [r for r in caplog.records if r.name == "proxy.access" and r.levelno >= logging.INFO]
    return [{**vars(r)["fields"], "line": r.getMessage()} for r in records]


async def test_the_proxys_own_refusals_carry_their_code_in_the_access_line(
    proxy: ProxyClient, upstream: FakeUpstream, logs: pytest.LogCaptureFixture
) -> None:
    async with proxy.post("/graphql/v1", data=b"{}", headers={"Origin": "https://x.example"}) as r:
        assert r.status == 403

    async def refused(request: Any, received: Received) -> aiohttp.web.StreamResponse:
        return aiohttp.web.json_response({"message": "Forbidden"}, status=403)

    upstream.respond = refused
    async with proxy.post("/graphql/v1", data=b"{}") as r:
        assert r.status == 403
    own, api = access_fields(logs)
    assert "403 code=browser_request_refused " in own["line"] and "upstream=-" in own["line"]
    assert own["code"] == "browser_request_refused"
    assert "code=" not in api["line"] and api["code"] is None  # the API's own 403


async def test_health_and_the_startup_line_say_whether_a_developer_key_is_loaded(
    make_proxy: ProxyFactory, tmp_path: Path, upstream: FakeUpstream
) -> None:
    (tmp_path / "dev").mkdir()
    creds = write_credentials(
        tmp_path / "dev" / "credentials",
        f"[DEFAULT]\nR3_ACCESS_KEY_ID={KEY_ID}\nR3_SECRET_ACCESS_KEY={SECRET_B64}\n"
        f"R3_DEVELOPER_API_KEY={DEVELOPER_KEY}\n",
    )
    without = await make_proxy()
    with_key = await make_proxy(credentials=str(creds))
    for client, loaded in ((without, False), (with_key, True)):
        async with client.get("/-/health") as response:
            body = await response.json()
        assert body["developer_key"] is loaded
        assert DEVELOPER_KEY not in json.dumps(body)
    args = ("--listen", "127.0.0.1:0", "--upstream", upstream.url, "--credentials", str(creds))
    async with proxy_process(*args, env=base_env(tmp_path)) as running:
        startup = next(line for line in running.lines if "listening on" in line)
    assert "developer_key=true" in startup and DEVELOPER_KEY not in startup


async def test_each_worker_names_its_number_at_start(
    credentials_file: Path, tmp_path: Path, upstream: FakeUpstream
) -> None:
    args = ("--listen", "127.0.0.1:0", "--workers", "2", "--upstream", upstream.url)
    args += ("--credentials", str(credentials_file))
    async with proxy_process(*args, env=base_env(tmp_path)) as running:
        for _ in range(100):
            if sum("listening on" in line for line in running.lines) == 2:
                break
            await asyncio.sleep(0.05)
        starts = [line for line in running.lines if "listening on" in line]
    numbers = sorted(re.search(r"worker (\d)/2 \(pid \d+\)", line).group(1) for line in starts)  # type: ignore[union-attr]
    assert numbers == ["1", "2"], starts


# --- browsers --------------------------------------------------------------------------------


async def test_a_cors_preflight_with_a_token_set_gets_cors_not_supported(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    client = await make_proxy(token=TOKEN)
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    async with client.request("OPTIONS", "/graphql/v1", headers=preflight) as response:
        assert response.status == 403
        assert (await response.json())["error"]["code"] == "cors_not_supported"
        assert "Access-Control-Allow-Origin" not in response.headers
    # Without the preflight header it is an ordinary OPTIONS: the token decides.
    async with client.request("OPTIONS", "/graphql/v1", headers={"Origin": "x"}) as response:
        assert response.status == 401
    assert upstream.received == []
    # Without a token every browser request is refused as before, preflights included.
    tokenless = await make_proxy()
    async with tokenless.request("OPTIONS", "/graphql/v1", headers=preflight) as response:
        assert (await response.json())["error"]["code"] == "browser_request_refused"


# --- sign ---------------------------------------------------------------------------------------


def test_sign_warns_when_the_url_is_not_the_configured_upstream(creds: Path) -> None:
    args = ("sign", "--credentials", str(creds), "--upstream", "https://api.remote.it")
    other = command(*args, "https://api.example.org/graphql/v1", home=creds.parent)
    assert other.returncode == 0
    assert "warning: https://api.example.org is not the configured upstream" in other.stderr
    assert "Authorization: Signature" in other.stdout
    same = command(*args, "https://api.remote.it/graphql/v1", home=creds.parent)
    assert same.returncode == 0 and same.stderr == ""
    path = command(*args, "/graphql/v1", home=creds.parent)
    assert path.returncode == 0 and path.stderr == ""


def test_sign_curl_output_is_quiet_and_quoted_for_the_shell(creds: Path, tmp_path: Path) -> None:
    body = tmp_path / "my query's body.json"
    body.write_text('{"query":"{ login { email } }"}')
    target = "/apv/v27/device/list/all?size=5&from=$(id)"
    result = command(
        "sign",
        "--format",
        "curl",
        "--data-file",
        str(body),
        "--credentials",
        str(creds),
        target,
        home=creds.parent,
    )
    assert result.returncode == 0, result.stderr
    words = shlex.split(result.stdout)
    assert words[:2] == ["curl", "-sS"]
    assert words[4] == "https://api.remote.it" + target
    assert words[-2:] == ["--data-binary", f"@{body}"]
    # What a shell makes of it: the same words, nothing expanded or run ($(id) stays text).
    shell = subprocess.run(
        ["sh", "-c", 'curl() { printf "%s\\n" "$@"; }; ' + result.stdout],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert shell.stdout.splitlines() == words[1:]
    for leak in (SECRET_B64, KEY_ID):
        assert leak not in result.stderr


def test_settings_a_command_does_not_read_cannot_stop_it(creds: Path) -> None:
    env = base_env(creds.parent) | {"REMOTEIT_PROXY_WORKERS": "many", "REMOTEIT_PROXY_LISTEN": "?"}
    result = subprocess.run(
        [sys.executable, "-m", "proxy", "sign", "--credentials", str(creds), "/graphql/v1"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    # serve reads them, and says which is wrong.
    assert "REMOTEIT_PROXY_LISTEN: '?'" in run_failing(["--credentials", str(creds)], env)


async def test_check_interrupted_exits_130_not_0(creds: Path) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts, never answers

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "proxy",
            "check",
            "--credentials",
            str(creds),
            "--upstream",
            f"http://127.0.0.1:{port}",
            env=base_env(creds.parent),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        await asyncio.sleep(1.0)  # connected and waiting for the answer
        process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode == 130


def test_output_into_a_closed_pipe_ends_quietly(creds: Path) -> None:
    # '| true': the reader is gone before the command writes (as 'check | head -1' can be).
    script = (
        f"{shlex.quote(sys.executable)} -m proxy sign --credentials {shlex.quote(str(creds))} "
        "--format json /graphql/v1 | true"
    )
    result = subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, timeout=30, env=base_env(creds.parent)
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
