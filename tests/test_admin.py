"""Sidecar exit and waiting: POST /-/quitquitquit, ``wait``; and ``version``, ``completion``."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from conftest import ProxyFactory
from fake_upstream import FakeUpstream, Received
from test_faults import command

TOKEN = "admin-token-3f9a1c"


def cli(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args], capture_output=True, text=True, timeout=timeout
    )


async def test_quitquitquit_is_off_by_default(make_proxy: ProxyFactory) -> None:
    client = await make_proxy()
    async with client.post("/-/quitquitquit") as response:
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "not_found"
    async with client.get("/-/ready") as response:
        assert response.status == 200  # still serving


async def test_quitquitquit_needs_post_and_the_token(make_proxy: ProxyFactory) -> None:
    client = await make_proxy(admin_endpoints="true", token=TOKEN)
    async with client.get("/-/quitquitquit") as response:
        assert (response.status, response.headers["Allow"]) == (405, "POST")
    async with client.post("/-/quitquitquit") as response:
        assert response.status == 401
    assert not client.service.stopping.is_set()
    # Without a token, a web page may not stop it (the rule every request follows).
    open_proxy = await make_proxy(admin_endpoints="true")
    headers = {"Origin": "https://evil.example"}
    async with open_proxy.post("/-/quitquitquit", headers=headers) as response:
        assert (response.status, (await response.json())["error"]["code"]) == (
            403,
            "browser_request_refused",
        )
    assert not open_proxy.service.stopping.is_set()
    async with client.post(
        "/-/quitquitquit", headers={"Authorization": f"Bearer {TOKEN}"}
    ) as response:
        assert (response.status, await response.json()) == (202, {"status": "stopping"})
    assert client.service.stopping.is_set()


async def test_a_least_privilege_client_may_not_stop_the_proxy(
    make_proxy: ProxyFactory, tmp_path: Path
) -> None:
    (tmp_path / "reader.token").write_text("reader-token-0001\n")
    (tmp_path / "admin.token").write_text("admin-token-00002\n")
    config = tmp_path / "proxy.ini"
    config.write_text(
        f"[client.reader]\ntoken_file = {tmp_path / 'reader.token'}\nread_only = true\n"
        f"[client.admin]\ntoken_file = {tmp_path / 'admin.token'}\n"
    )
    client = await make_proxy(admin_endpoints="true", config=str(config))
    reader = {"Authorization": "Bearer reader-token-0001"}
    async with client.post("/-/quitquitquit", headers=reader) as response:
        assert (response.status, (await response.json())["error"]["code"]) == (
            403,
            "policy_denied",
        )
    assert not client.service.stopping.is_set()
    admin = {"Authorization": "Bearer admin-token-00002"}
    async with client.post("/-/quitquitquit", headers=admin) as response:
        assert response.status == 202
    assert client.service.stopping.is_set()


async def test_quitquitquit_stops_the_process_after_requests_in_flight(
    upstream: FakeUpstream, credentials_file: Path, tmp_path: Path
) -> None:
    arrived = asyncio.Event()

    async def slow(request: web.Request, received: Received) -> web.StreamResponse:
        arrived.set()
        await asyncio.sleep(1)
        return web.json_response({"data": "late but whole"})

    upstream.respond = slow
    args = ("--listen", "127.0.0.1:0", "--upstream", upstream.url, "--admin-endpoints")
    async with (
        command(*args, "--credentials", str(credentials_file), home=tmp_path) as proxy,
        aiohttp.ClientSession() as session,
    ):

        async def fetch() -> tuple[int, bytes]:
            async with session.get(proxy.url + "/slow") as response:
                return response.status, await response.read()

        in_flight = asyncio.create_task(fetch())
        await asyncio.wait_for(arrived.wait(), 5)
        async with session.post(proxy.url + "/-/quitquitquit") as response:
            assert response.status == 202
        assert await asyncio.wait_for(in_flight, 5) == (200, b'{"data": "late but whole"}')
        assert await asyncio.wait_for(proxy.process.wait(), 10) == 0
    assert any("POST /-/quitquitquit: shutting down" in line for line in proxy.lines)


async def test_quitquitquit_to_one_worker_stops_them_all(
    upstream: FakeUpstream, credentials_file: Path, tmp_path: Path
) -> None:
    args = ("--listen", "127.0.0.1:0", "--upstream", upstream.url, "--admin-endpoints")
    args += ("--workers", "2", "--credentials", str(credentials_file))
    async with command(*args, home=tmp_path) as proxy, aiohttp.ClientSession() as session:
        async with session.post(proxy.url + "/-/quitquitquit") as response:
            assert response.status == 202
        assert await asyncio.wait_for(proxy.process.wait(), 15) == 0


async def test_wait_returns_once_the_proxy_is_ready_and_fails_at_its_timeout(
    make_proxy: ProxyFactory, tmp_path: Path
) -> None:
    started = time.monotonic()
    late = await asyncio.to_thread(cli, "wait", "--url", "http://127.0.0.1:9", "--timeout", "0.5")
    assert late.returncode == 1
    assert "http://127.0.0.1:9 is not ready after 0.5 s: nothing answered" in late.stderr
    assert time.monotonic() - started < 5
    client = await make_proxy()
    url = f"http://{client.host}:{client.port}"
    ready = await asyncio.to_thread(cli, "wait", "--url", url, "--timeout", "5")
    assert (ready.returncode, ready.stdout.startswith(f"{url} is ready")) == (0, True)
    # The address --listen names is the default (here from the environment's variable).
    socket_path = tmp_path / "p.sock"
    unix = await make_proxy(listen=f"unix:{socket_path}")
    assert unix.service.addresses == [f"unix:{socket_path}"]
    env_wait = await asyncio.to_thread(cli, "wait", "--listen", f"unix:{socket_path}")
    assert env_wait.returncode == 0, env_wait.stderr


async def test_wait_for_a_proxy_that_starts_later(
    upstream: FakeUpstream, credentials_file: Path, tmp_path: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    waiting = asyncio.create_task(
        asyncio.to_thread(cli, "wait", "--url", f"http://127.0.0.1:{port}", "--timeout", "15")
    )
    await asyncio.sleep(0.5)
    assert not waiting.done()
    args = ("--listen", f"127.0.0.1:{port}", "--upstream", upstream.url)
    async with command(*args, "--credentials", str(credentials_file), home=tmp_path) as proxy:
        result = await asyncio.wait_for(waiting, 15)
        assert result.returncode == 0, result.stderr
        proxy.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proxy.process.wait(), 10) == 0


def test_wait_refuses_a_url_it_cannot_use() -> None:
    result = cli("wait", "--url", "ftp://proxy", "--timeout", "1")
    assert result.returncode == 2
    assert "--url: 'ftp://proxy' is not an http:// URL or unix:PATH" in result.stderr


def test_version_names_the_proxy_and_what_it_runs_on() -> None:
    result = cli("version")
    from proxy import __version__

    lines = result.stdout.splitlines()
    assert result.returncode == 0 and lines[0] == f"remoteit-proxy {__version__}"
    assert lines[1].startswith("Python 3.") and any(line.startswith("aiohttp 3.") for line in lines)


def bash_complete(script: str, words: str) -> list[str]:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("needs bash")
    program = (
        f"{script}\nCOMP_WORDS=({words})\nCOMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))\n"
        '_remoteit_proxy\nprintf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run([bash, "-c", program], capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_bash_completion_completes_commands_and_options() -> None:
    script = cli("completion", "bash").stdout
    assert bash_complete(script, "remoteit-proxy ch") == ["check"]
    assert bash_complete(script, "remoteit-proxy w") == ["wait"]
    assert bash_complete(script, "remoteit-proxy serve --retr") == ["--retries", "--retry-budget"]
    assert "--listen" not in bash_complete(script, "remoteit-proxy check --")


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_scripts_name_every_command(shell: str) -> None:
    script = cli("completion", shell).stdout
    for name in ("serve", "check", "sign", "import", "configure", "rotate", "exec", "wait"):
        assert name in script
    checker = shutil.which(shell)
    if checker is not None:  # a syntax check where the shell is installed
        flag = "-n" if shell == "zsh" else "--no-execute"
        done = subprocess.run([checker, flag], input=script, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


# --- the default config file -----------------------------------------------------------------


def test_the_default_config_file_is_read_when_present(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from proxy.config.resolve import resolve

    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve({}, {}).config is None  # none there: none read
    default = tmp_path / ".remoteit" / "proxy.ini"
    default.parent.mkdir()
    default.write_text("[proxy]\nretries = 5\n")
    settings = resolve({}, {})
    assert (settings.config, settings.retries) == (default, 5)
    named = tmp_path / "other.ini"
    named.write_text("[proxy]\nretries = 1\n")
    assert resolve({"config": str(named)}, {}).retries == 1  # a named file replaces it
    assert resolve({}, {"REMOTEIT_PROXY_CONFIG": str(named)}).retries == 1
    assert resolve({}, {}, read_default=False).config is None


async def test_the_start_up_line_names_the_default_config_and_version_ignores_it(
    upstream: FakeUpstream, credentials_file: Path, tmp_path: Path
) -> None:
    default = tmp_path / ".remoteit" / "proxy.ini"
    default.parent.mkdir(exist_ok=True)
    default.write_text("[proxy]\nread_only = true\n")
    args = ("--listen", "127.0.0.1:0", "--upstream", upstream.url)
    async with command(*args, "--credentials", str(credentials_file), home=tmp_path) as proxy:
        assert f"; config {default}" in proxy.lines[-1]
        async with aiohttp.ClientSession() as session:
            mutation = b'{"query":"mutation { deleteDevice(id: \\"x\\") { id } }"}'
            headers = {"Content-Type": "application/json"}
            url = proxy.url + "/graphql/v1"
            async with session.post(url, data=mutation, headers=headers) as response:
                assert response.status == 403  # read_only from the default file
        proxy.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proxy.process.wait(), 10) == 0
    default.write_text("[proxy]\nno_such_setting = 1\n")
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    broken = subprocess.run(
        [sys.executable, "-m", "proxy", "version"], capture_output=True, text=True, env=env
    )
    assert broken.returncode == 0 and broken.stdout.startswith("remoteit-proxy ")
    check = subprocess.run(
        [sys.executable, "-m", "proxy", "check"], capture_output=True, text=True, env=env
    )
    assert (
        check.returncode == 2 and str(default) in check.stderr and "no_such_setting" in check.stderr
    )


async def test_the_start_up_line_lists_the_named_upstreams(
    upstream: FakeUpstream, credentials_file: Path, tmp_path: Path
) -> None:
    config = tmp_path / "proxy.ini"
    config.write_text("[upstream.events]\nurl = http://127.0.0.1:9/ws\nmount = /events\n")
    args = ("--listen", "127.0.0.1:0", "--upstream", upstream.url, "--config", str(config))
    async with command(*args, "--credentials", str(credentials_file), home=tmp_path) as proxy:
        line = proxy.lines[-1]
        expected = f"forwarding to {upstream.url} and http://127.0.0.1:9/ws at /-/to/events"
        assert f"{expected} and /events, " in line, line
        proxy.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proxy.process.wait(), 10) == 0


def test_wait_for_a_unix_socket_where_there_are_none_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from proxy.commands.wait import ready_url
    from proxy.config.addresses import Listen
    from proxy.errors import ConfigError

    monkeypatch.delattr(socket, "AF_UNIX")
    with pytest.raises(ConfigError, match="this system has no unix sockets"):
        ready_url("unix:/run/p.sock", Listen("127.0.0.1", 8181))
