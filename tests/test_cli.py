"""The real command, run as a user would: a subprocess, its output and its exit codes."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from conftest import DEVELOPER_KEY, KEY_ID, SECRET, SECRET_B64, write_credentials
from fake_upstream import FakeUpstream

from proxy.config.options import CONFIG_OPTION, OPTIONS

LISTENING = re.compile(r"listening on (http://\S+?),")


def base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("R3_", "REMOTEIT_PROXY_"))}
    env["HOME"] = str(home)
    return env


@dataclass
class ProxyProcess:
    """A running ``python -m proxy``: its URL, the lines it has logged, the process."""

    url: str
    lines: list[str]
    process: asyncio.subprocess.Process


@asynccontextmanager
async def proxy_process(*args: str, env: dict[str, str]) -> AsyncIterator[ProxyProcess]:
    """Start ``python -m proxy ARGS``; on exit send SIGTERM and expect exit code 0."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", *args, env=env, stderr=subprocess.PIPE
    )
    assert process.stderr is not None
    lines: list[str] = []
    try:
        while True:
            line = (await asyncio.wait_for(process.stderr.readline(), 10)).decode()
            assert line, f"the proxy exited before listening: {lines}"
            lines.append(line)
            match = LISTENING.search(line)
            if match:
                break
        reader = asyncio.create_task(_collect(process.stderr, lines))
        yield ProxyProcess(match.group(1), lines, process)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
        await reader
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _collect(stream: asyncio.StreamReader, lines: list[str]) -> None:
    while line := await stream.readline():
        lines.append(line.decode())


@asynccontextmanager
async def running_proxy(*args: str, env: dict[str, str]) -> AsyncIterator[tuple[str, list[str]]]:
    """Start ``python -m proxy ARGS``; yield its URL and the lines it logs (kept up to date)."""
    async with proxy_process(*args, env=env) as running:
        yield running.url, running.lines


async def test_the_command_proxies_signed_graphql_requests(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    home = tmp_path
    (home / ".remoteit").mkdir()
    write_credentials(
        home / ".remoteit" / "credentials",
        f"[DEFAULT]\nR3_ACCESS_KEY_ID={KEY_ID}\nR3_SECRET_ACCESS_KEY={SECRET_B64}\n"
        f"R3_DEVELOPER_API_KEY={DEVELOPER_KEY}\n",
    )
    env = base_env(home)
    async with (
        running_proxy("--listen", "127.0.0.1:0", "--upstream", upstream.url, env=env) as (
            url,
            lines,
        ),
        aiohttp.ClientSession() as client,
    ):
        query = b'{"query":"{ login { email } }"}'
        async with client.post(
            url + "/graphql/v1", data=query, headers={"Content-Type": "application/json"}
        ) as response:
            assert response.status == 200
            assert (await response.json())["path"] == "/graphql/v1"
    received = upstream.received[-1]
    assert received.verified, received.reason
    assert received.header("DeveloperKey") == DEVELOPER_KEY
    output = "".join(lines)
    startup = next(line for line in lines if "listening on" in line)
    assert upstream.url in startup and "profile DEFAULT" in startup
    assert "*" * (len(KEY_ID) - 4) + KEY_ID[-4:] in startup
    for leak in (KEY_ID, SECRET_B64, DEVELOPER_KEY, repr(SECRET)):
        assert leak not in output
    assert "POST /graphql/v1 200" in output


async def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "remoteit-proxy"
    process = await asyncio.create_subprocess_exec(str(script), "--version", stdout=subprocess.PIPE)
    out, _ = await process.communicate()
    assert process.returncode == 0
    assert out.decode().startswith("remoteit-proxy ")


def run_failing(args: list[str], env: dict[str, str]) -> str:
    """Run the command expecting a configuration error; return its one line of output."""
    result = subprocess.run(
        [sys.executable, "-m", "proxy", *args], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("remoteit-proxy: error: ")
    assert "Traceback" not in result.stderr
    for leak in (SECRET_B64, "c2VjcmV0", DEVELOPER_KEY):
        assert leak not in result.stderr
    return lines[0]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / ".remoteit").mkdir()
    return tmp_path


def good_file(home: Path, body: str | None = None) -> Path:
    text = body or f"[DEFAULT]\nR3_ACCESS_KEY_ID={KEY_ID}\nR3_SECRET_ACCESS_KEY={SECRET_B64}\n"
    return write_credentials(home / ".remoteit" / "credentials", text)


def test_missing_credentials_file(home: Path) -> None:
    line = run_failing([], base_env(home))
    assert str(home / ".remoteit" / "credentials") in line
    assert "does not exist" in line and "--credentials" in line
    # The next step of the quick start, named where a newcomer first stops.
    assert "'remoteit-proxy import FILE'" in line and "'remoteit-proxy configure'" in line


def test_unknown_profile(home: Path) -> None:
    good_file(home)
    line = run_failing(["--profile", "work"], base_env(home))
    assert "profile [work]" in line and "[DEFAULT]" in line


def test_missing_key(home: Path) -> None:
    path = good_file(home, f"[DEFAULT]\nR3_SECRET_ACCESS_KEY={SECRET_B64}\n")
    line = run_failing([], base_env(home))
    assert f"{path}, profile [DEFAULT]: R3_ACCESS_KEY_ID is missing" in line


def test_bad_base64(home: Path) -> None:
    good_file(home, f"[DEFAULT]\nR3_ACCESS_KEY_ID={KEY_ID}\nR3_SECRET_ACCESS_KEY=c2VjcmV0!!\n")
    line = run_failing([], base_env(home))
    assert "R3_SECRET_ACCESS_KEY is not valid base64" in line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--listen", "8181"], "--listen: '8181' is not an address"),
        (["--upstream", "ftp://api.remote.it"], "--upstream: 'ftp://api.remote.it'"),
        (["--read-timeout", "soon"], "--read-timeout: 'soon'"),
    ],
)
def test_bad_option_values(home: Path, args: list[str], expected: str) -> None:
    good_file(home)
    assert expected in run_failing(args, base_env(home))


def test_bad_value_from_environment_names_the_variable(home: Path) -> None:
    good_file(home)
    env = base_env(home) | {"REMOTEIT_PROXY_LISTEN": "nowhere"}
    assert "REMOTEIT_PROXY_LISTEN: 'nowhere'" in run_failing([], env)


def test_port_in_use(home: Path) -> None:
    good_file(home)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = run_failing(["--listen", f"127.0.0.1:{port}"], base_env(home))
    assert f"cannot listen on 127.0.0.1:{port}" in line and "--listen" in line


def test_config_file_and_precedence(home: Path) -> None:
    good_file(home)
    config = home / "proxy.ini"
    config.write_text("[proxy]\nlisten = nowhere\n")
    # The config file's bad value is reported with its file and key...
    line = run_failing(["--config", str(config)], base_env(home))
    assert f"config file {config} [proxy] listen" in line
    # ...and the environment wins over it (so the error is now the environment's).
    env = base_env(home) | {"REMOTEIT_PROXY_LISTEN": "elsewhere"}
    assert "REMOTEIT_PROXY_LISTEN" in run_failing(["--config", str(config)], env)


def test_help_lists_the_commands_and_every_option() -> None:
    def run(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "proxy", *args], capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 0
        return result.stdout

    top = run("--help")
    for command in ("serve", "check", "sign", "import", "configure"):
        assert command in top
    # serve reads every setting; the other commands list only theirs (test_firstrun.py).
    text = run("serve", "--help")
    for option in (CONFIG_OPTION, *OPTIONS):
        assert option.flag in text and option.env in text


async def test_workers_share_one_port(upstream: FakeUpstream, tmp_path: Path) -> None:
    path = good_file_at(tmp_path)
    args = (
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "2",
        "--upstream",
        upstream.url,
        "--credentials",
        str(path),
    )
    async with proxy_process(*args, env=base_env(tmp_path)) as running:
        pids = set()
        for _ in range(40):  # a new connection each time: the kernel spreads them
            connector = aiohttp.TCPConnector(force_close=True)
            async with (
                aiohttp.ClientSession(connector=connector) as session,
                session.get(running.url + "/-/health") as response,
            ):
                pids.add((await response.json())["pid"])
            async with (
                aiohttp.ClientSession() as session,
                session.post(running.url + "/graphql/v1", data=b"{}") as response,
            ):
                assert response.status == 200
        assert len(pids) == 2 and running.process.pid not in pids
    assert all(r.verified for r in upstream.received)


def good_file_at(home: Path) -> Path:
    text = f"[DEFAULT]\nR3_ACCESS_KEY_ID={KEY_ID}\nR3_SECRET_ACCESS_KEY={SECRET_B64}\n"
    return write_credentials(home / "credentials", text)


def test_workers_refuse_a_port_in_use(tmp_path: Path) -> None:
    path = good_file_at(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = run_failing(
            ["--listen", f"127.0.0.1:{port}", "--workers", "2", "--credentials", str(path)],
            base_env(tmp_path),
        )
    assert f"cannot listen on 127.0.0.1:{port}" in line
