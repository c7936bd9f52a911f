"""systemd: socket activation, sd_notify (ready, reloading, stopping, watchdog) and the units."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from fake_upstream import FakeUpstream, Received
from test_cli import base_env

from proxy.serve.activation import activated

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "deploy" / "systemd"
QUERY = b'{"query":"{ login { email } }"}'


def systemd_tool(name: str) -> str:
    """The path of a systemd tool; CI installs them and must never skip for want of one."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("REMOTEIT_PROXY_REQUIRE_SYSTEMD") == "1":
            pytest.fail(f"{name} is not installed (.ci/run installs Debian's systemd package)")
        pytest.skip(f"needs {name} (Debian's systemd package)")
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def post(session: aiohttp.ClientSession, url: str) -> int:
    headers = {"Content-Type": "application/json"}
    async with session.post(url, data=QUERY, headers=headers) as response:
        await response.read()
        return response.status


async def test_socket_activation_serves_the_tcp_and_unix_sockets_systemd_passes(
    upstream: FakeUpstream, home: Path, tmp_path: Path
) -> None:
    tool = systemd_tool("systemd-socket-activate")
    port, path = free_port(), tmp_path / "proxy.sock"
    process = await asyncio.create_subprocess_exec(
        tool, "-l", f"127.0.0.1:{port}", "-l", str(path), "--fdname=web:local",
        sys.executable, "-m", "proxy", "serve", "--upstream", upstream.url,
        "--listen", "127.0.0.1:1",  # not used: the passed sockets replace it
        env=base_env(home), stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        for _ in range(100):  # the tool listens, then starts the proxy at the first connection
            if path.exists():
                break
            await asyncio.sleep(0.05)
        async with aiohttp.ClientSession() as session:
            assert await post(session, f"http://127.0.0.1:{port}/graphql/v1") == 200
        connector = aiohttp.UnixConnector(path=str(path))
        async with aiohttp.ClientSession(connector=connector) as session:
            assert await post(session, "http://proxy/graphql/v1") == 200
        assert len(upstream.received) == 2 and all(r.verified for r in upstream.received)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
        assert process.stderr is not None
        log = (await process.stderr.read()).decode()
        assert f"listening on http://127.0.0.1:{port}, unix:{path} (sockets from systemd)" in log
        assert path.exists(), "a socket systemd made is its own to remove"
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.parametrize(
    ("listen", "extra", "expected"),
    [
        ("0.0.0.0:{port}", (), "refusing to serve on http://0.0.0.0:"),
        ("127.0.0.1:{port}", ("--workers", "2"), "--workers above 1 cannot share sockets"),
        ("127.0.0.1:{port}", ("--datagram",), "is not a listening stream socket"),
    ],
)
async def test_socket_activation_refusals_name_the_fix(
    home: Path, listen: str, extra: tuple[str, ...], expected: str
) -> None:
    tool = systemd_tool("systemd-socket-activate")
    port = free_port()
    tool_args = [a for a in extra if a == "--datagram"]
    proxy_args = [a for a in extra if a != "--datagram"]
    process = await asyncio.create_subprocess_exec(
        tool, *tool_args, "-l", listen.format(port=port),
        sys.executable, "-m", "proxy", "serve", *proxy_args,
        env=base_env(home), stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        await asyncio.sleep(0.3)
        kind = socket.SOCK_DGRAM if tool_args else socket.SOCK_STREAM
        with socket.socket(socket.AF_INET, kind) as poke:  # starts the proxy
            poke.settimeout(5)
            if tool_args:
                poke.sendto(b"x", ("127.0.0.1", port))
            else:
                poke.connect(("127.0.0.1", port))
        assert await asyncio.wait_for(process.wait(), 10) == 2
        assert process.stderr is not None
        assert expected in (await process.stderr.read()).decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_sockets_meant_for_another_process_are_left_alone() -> None:
    environ = {"LISTEN_PID": "1", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "web"}
    assert activated(environ) == []
    assert environ == {}, "the variables are for one process: no command the proxy runs sees them"


class Manager:
    """A stand-in for systemd's notification socket: the datagrams the service sends."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[str] = []

    async def until(self, field: str, timeout: float = 10, count: int = 1) -> None:
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout
        while sum(field in m.split("\n") for m in self.messages) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"no {field} in {self.messages}"
            data = await asyncio.wait_for(loop.sock_recv(self.sock, 4096), left)
            self.messages.append(data.decode())


@asynccontextmanager
async def notified_proxy(
    home: Path, upstream: FakeUpstream, notify: str, **env: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    environ = base_env(home) | {"NOTIFY_SOCKET": notify, **env}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "serve", "--listen", f"127.0.0.1:{free_port()}",
        "--upstream", upstream.url, env=environ, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_the_service_manager_hears_ready_reloading_stopping_and_watchdog_pings(
    home: Path, upstream: FakeUpstream, tmp_path: Path
) -> None:
    manager = Manager(tmp_path / "notify")
    watchdog = {"WATCHDOG_USEC": "300000"}  # a ping every 0.15 s
    async with notified_proxy(home, upstream, str(tmp_path / "notify"), **watchdog) as process:
        await manager.until("READY=1")
        ready = next(m for m in manager.messages if "READY=1" in m.split("\n"))
        assert "STATUS=listening on http://127.0.0.1:" in ready
        await asyncio.sleep(0.5)
        process.send_signal(signal.SIGHUP)
        await manager.until("RELOADING=1")
        await manager.until("READY=1", count=2)  # (the reload runs while requests are served)
        process.send_signal(signal.SIGTERM)
        await manager.until("STOPPING=1")
        assert await asyncio.wait_for(process.wait(), 10) == 0
    events = [
        line
        for message in manager.messages
        for line in message.split("\n")
        if line in ("READY=1", "RELOADING=1", "STOPPING=1", "WATCHDOG=1")
    ]
    reloading = events.index("RELOADING=1")
    assert events[0] == "READY=1" and events.count("READY=1") == 2
    assert events.index("READY=1", 1) > reloading, "READY=1 again after the reload"
    assert events[-1] == "STOPPING=1"
    assert events[1:reloading].count("WATCHDOG=1") >= 2, events
    reload = next(m for m in manager.messages if "RELOADING=1" in m.split("\n"))
    assert "MONOTONIC_USEC=" in reload


async def test_a_sighup_while_stopping_is_ignored(
    home: Path, upstream: FakeUpstream, tmp_path: Path
) -> None:
    # Once STOPPING=1 is sent, the manager must hear no RELOADING=1 or READY=1: a SIGHUP
    # during the drain reloads nothing, and says so.
    arrived = asyncio.Event()

    async def respond(request: web.Request, received: Received) -> web.StreamResponse:
        arrived.set()
        await asyncio.sleep(1.5)
        return web.json_response({"data": {}})

    upstream.respond = respond
    manager = Manager(tmp_path / "notify")
    port = free_port()
    environ = base_env(home) | {"NOTIFY_SOCKET": str(tmp_path / "notify")}
    with (tmp_path / "log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "proxy", "serve", "--listen", f"127.0.0.1:{port}",
            "--upstream", upstream.url, env=environ, stderr=log,
        )  # fmt: skip
    try:
        await manager.until("READY=1")
        async with aiohttp.ClientSession() as session:
            in_flight = asyncio.create_task(post(session, f"http://127.0.0.1:{port}/graphql/v1"))
            await asyncio.wait_for(arrived.wait(), 5)
            process.send_signal(signal.SIGTERM)
            await manager.until("STOPPING=1")
            process.send_signal(signal.SIGHUP)
            assert await asyncio.wait_for(in_flight, 10) == 200  # the drain went on
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    with contextlib.suppress(BlockingIOError):
        while True:  # whatever else was sent, up to the exit
            manager.messages.append(manager.sock.recv(4096).decode())
    events = [
        line
        for message in manager.messages
        for line in message.split("\n")
        if line in ("READY=1", "RELOADING=1", "STOPPING=1")
    ]
    assert events == ["READY=1", "STOPPING=1"], events
    assert "SIGHUP while shutting down: ignored" in (tmp_path / "log").read_text()


async def test_with_workers_ready_waits_until_every_worker_listens(
    home: Path, upstream: FakeUpstream, tmp_path: Path
) -> None:
    manager = Manager(tmp_path / "notify")
    port = free_port()
    environ = base_env(home) | {"NOTIFY_SOCKET": str(tmp_path / "notify")}
    with (tmp_path / "log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "proxy", "serve", "--listen", f"127.0.0.1:{port}",
            "--upstream", upstream.url, "--workers", "2", env=environ, stderr=log,
        )  # fmt: skip
    try:
        await manager.until("READY=1")
        # Both workers had written their start-up line (just before telling the parent) by
        # the time the manager heard READY=1: forked is not enough.
        started = (tmp_path / "log").read_text()
        assert "worker 1/2" in started and "worker 2/2" in started, started
        ready = next(m for m in manager.messages if "READY=1" in m.split("\n"))
        assert f"STATUS=2 workers listening on 127.0.0.1:{port}" in ready
        async with aiohttp.ClientSession() as session:
            assert await post(session, f"http://127.0.0.1:{port}/graphql/v1") == 200
        process.send_signal(signal.SIGTERM)
        await manager.until("STOPPING=1")
        assert await asyncio.wait_for(process.wait(), 15) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert sum(m.split("\n").count("READY=1") for m in manager.messages) == 1


async def test_an_abstract_notify_socket_and_no_watchdog_for_another_pid(
    home: Path, upstream: FakeUpstream
) -> None:
    name = f"remoteit-proxy-test-{os.getpid()}-{time.monotonic_ns()}"
    manager = Manager.__new__(Manager)
    manager.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    manager.sock.bind("\0" + name)
    manager.sock.setblocking(False)
    manager.messages = []
    env = {"WATCHDOG_USEC": "100000", "WATCHDOG_PID": "1"}  # the watchdog is another's
    async with notified_proxy(home, upstream, "@" + name, **env) as process:
        await manager.until("READY=1")
        await asyncio.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        await manager.until("STOPPING=1")
        assert await asyncio.wait_for(process.wait(), 10) == 0
    assert not any("WATCHDOG=1" in m for m in manager.messages)


@pytest.mark.parametrize("unit", sorted(UNITS.rglob("*.service")) + sorted(UNITS.rglob("*.socket")))
def test_systemd_analyze_verifies_every_unit(unit: Path, tmp_path: Path) -> None:
    tool = systemd_tool("systemd-analyze")
    # verify wants each ExecStart program to exist: point the units at this one, in a copy.
    program = shutil.which("remoteit-proxy") or str(Path(sys.executable).parent / "remoteit-proxy")
    for source in unit.parent.iterdir():
        text = source.read_text().replace("/usr/local/bin/remoteit-proxy", program)
        text = text.replace("%h/.local/bin/remoteit-proxy", program)
        (tmp_path / source.name).write_text(text)
    result = subprocess.run(
        [tool, "verify", "--man=no", str(tmp_path / unit.name)],
        capture_output=True,
        text=True,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr
