"""Slow and idle clients: a deadline for the request head, an idle timeout for a request body
and for an answer, and a cap on client connections that keeps /-/health reachable."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import resource
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from conftest import ProxyClient, ProxyFactory
from fake_upstream import FakeUpstream, Received
from prometheus_client.parser import text_string_to_metric_families
from test_cli import base_env, proxy_process

from proxy.config.resolve import resolve
from proxy.errors import ConfigError

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def connect(client: ProxyClient, receive_buffer: int | None = None) -> Stream:
    """A raw connection to the proxy (``receive_buffer``: a small SO_RCVBUF, set before the
    connection so that the window stays small)."""
    if receive_buffer is None:
        return await asyncio.open_connection(client.host, client.port)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (client.host, client.port))
    return await asyncio.open_connection(sock=sock, limit=receive_buffer)


async def until_closed(reader: asyncio.StreamReader, timeout: float) -> bytes:
    """Everything the proxy sends until it closes the connection (a reset counts as closed)."""

    async def read() -> bytes:
        data = b""
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                data += chunk
        return data

    return await asyncio.wait_for(read(), timeout)


async def answer(reader: asyncio.StreamReader) -> tuple[int, bytes, bytes]:
    """One answer with a Content-Length: status, head, body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = re.search(rb"(?im)^content-length: *(\d+)", head)
    body = await reader.readexactly(int(length.group(1))) if length else b""
    return int(head.split(b" ", 2)[1]), head, body


def error_code(body: bytes) -> str:
    code: str = json.loads(body)["error"]["code"]
    return code


async def samples(client: ProxyClient) -> Samples:
    async with client.get("/-/metrics") as response:
        text = await response.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def metric(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


@contextlib.asynccontextmanager
async def trickling(writer: asyncio.StreamWriter, every: float = 0.1) -> AsyncIterator[None]:
    """Send one more byte of a header field every ``every`` seconds, as a slow attacker does."""

    async def trickle() -> None:
        with contextlib.suppress(ConnectionError):
            writer.write(b"X-Slow: ")
            while True:
                await asyncio.sleep(every)
                writer.write(b"a")
                await writer.drain()

    task = asyncio.create_task(trickle())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        writer.close()


# --- the request head ------------------------------------------------------------------------


async def test_a_trickled_request_head_gets_408_at_the_header_timeout(
    make_proxy: ProxyFactory,
) -> None:
    client = await make_proxy(header_timeout="0.5")
    reader, writer = await connect(client)
    started = time.monotonic()
    writer.write(b"GET /graphql/v1 HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    async with trickling(writer):
        data = await until_closed(reader, 5)
    elapsed = time.monotonic() - started
    assert 0.45 <= elapsed < 2.5, elapsed
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), data
    assert b"connection: close" in head.lower()
    assert error_code(body) == "header_timeout"
    found = await samples(client)
    assert metric(found, "remoteit_proxy_client_timeouts_total", reason="header") == 1


async def test_a_connection_that_sends_nothing_is_closed_at_the_header_timeout(
    make_proxy: ProxyFactory,
) -> None:
    client = await make_proxy(header_timeout="0.3")
    reader, writer = await connect(client)
    started = time.monotonic()
    assert await until_closed(reader, 5) == b""  # no request, so no answer either
    assert 0.25 <= time.monotonic() - started < 2.5
    writer.close()


async def test_the_head_deadline_runs_per_request_and_idle_keep_alive_is_not_cut(
    make_proxy: ProxyFactory,
) -> None:
    client = await make_proxy(header_timeout="0.4")
    reader, writer = await connect(client)
    for _ in range(2):
        writer.write(b"GET /-/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, _, _ = await answer(reader)
        assert status == 200
        # Idle between requests for longer than the head deadline: kept open.
        await asyncio.sleep(0.6)
    # The next head's clock starts at its first byte, not at the connection's start.
    writer.write(b"GET /graphql/v1 HTTP/1.1\r\n")
    started = time.monotonic()
    async with trickling(writer):
        data = await until_closed(reader, 5)
    assert 0.35 <= time.monotonic() - started < 2.5
    assert data.startswith(b"HTTP/1.1 408 "), data


# --- request bodies and answers ----------------------------------------------------------------


async def test_slow_transfers_that_keep_moving_and_slow_upstreams_are_not_cut(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    client = await make_proxy(header_timeout="0.3", client_timeout="0.4")
    reader, writer = await connect(client)
    # A body that takes 1.5 s, a piece every 0.15 s: never 0.4 s without progress.
    writer.write(
        b"POST /graphql/v1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n"
    )
    for _ in range(10):
        await asyncio.sleep(0.15)
        writer.write(b"x" * 10)
    status, _, body = await answer(reader)
    assert status == 200 and json.loads(body)["size"] == 100

    async def slow(request: web.Request, received: Received) -> web.StreamResponse:
        await asyncio.sleep(0.9)  # the client waits for the upstream: not its stall
        return web.json_response({"slow": True})

    upstream.respond = slow
    writer.write(b"GET /graphql/v1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    status, _, body = await answer(reader)
    assert status == 200 and json.loads(body) == {"slow": True}
    writer.close()
    assert metric(await samples(client), "remoteit_proxy_client_timeouts_total", reason="body") in (
        None,
        0,
    )


async def test_a_stalled_request_body_is_closed_after_the_client_timeout(
    make_proxy: ProxyFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="proxy")
    client = await make_proxy(client_timeout="0.5")
    reader, writer = await connect(client)
    writer.write(
        b"POST /graphql/v1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n" + b"x" * 100
    )
    started = time.monotonic()
    await until_closed(reader, 5)
    assert 0.45 <= time.monotonic() - started < 2.5
    writer.close()
    found = await samples(client)
    assert metric(found, "remoteit_proxy_client_timeouts_total", reason="body") == 1
    assert any("request body" in r.getMessage() for r in caplog.records if r.name == "proxy.limits")


async def test_a_client_that_never_reads_a_large_answer_is_closed_after_the_client_timeout(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    size = 64 * 1024 * 1024

    async def large(request: web.Request, received: Received) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = size
        await response.prepare(request)
        block = b"y" * 65536
        for _ in range(size // len(block)):
            await response.write(block)
        return response

    upstream.respond = large
    client = await make_proxy(client_timeout="0.5")
    reader, writer = await connect(client, receive_buffer=4096)
    writer.write(b"GET /download HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    found: Samples = {}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        found = await samples(client)
        if metric(found, "remoteit_proxy_client_timeouts_total", reason="answer"):
            break
    assert metric(found, "remoteit_proxy_client_timeouts_total", reason="answer") == 1
    # What reaches the client now is what the kernel held: far from the whole answer.
    received = len(await until_closed(reader, 10))
    assert received < size // 2, received
    writer.close()


# --- the cap on connections --------------------------------------------------------------------


async def test_over_the_connection_cap_new_connections_are_refused_but_health_answers(
    make_proxy: ProxyFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="proxy")
    client = await make_proxy(max_connections="4", header_timeout="5")
    held = [await connect(client) for _ in range(4)]  # idle: they fill the cap
    await asyncio.sleep(0.05)

    reader, writer = await connect(client)
    writer.write(b"GET /graphql/v1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    data = await until_closed(reader, 5)
    assert data.startswith(b"HTTP/1.1 503 "), data
    assert error_code(data.partition(b"\r\n\r\n")[2]) == "too_many_connections"

    async def health() -> bytes:
        reader, writer = await connect(client)
        writer.write(b"GET /-/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data = await until_closed(reader, 5)  # answered, then closed: the reserve is kept free
        writer.close()
        return data

    assert (await health()).startswith(b"HTTP/1.1 200 ")
    # A flood of idle connections beyond the cap: the oldest are closed at once, and a health
    # check, the newest, is still answered.
    flood = [await connect(client) for _ in range(40)]
    await asyncio.sleep(0.1)
    closed = 0
    for flood_reader, _ in flood[:20]:
        with contextlib.suppress(asyncio.TimeoutError):
            closed += await until_closed(flood_reader, 0.5) == b""
    assert closed == 20
    assert (await health()).startswith(b"HTTP/1.1 200 ")
    for _, flood_writer in flood:
        flood_writer.close()
    for _, held_writer in held:
        held_writer.close()
    await asyncio.sleep(0.1)
    # Below the cap again: served as ever.
    async with client.get("/graphql/v1") as response:
        assert response.status == 200
    found = await samples(client)
    assert metric(found, "remoteit_proxy_max_connections") == 4
    assert (metric(found, "remoteit_proxy_connections_refused_total") or 0) >= 21
    warnings = [r for r in caplog.records if r.name == "proxy.limits" and r.levelno >= 30]
    assert warnings and "--max-connections" in warnings[0].getMessage()


async def test_the_default_cap_leaves_room_under_the_descriptor_limit(
    make_proxy: ProxyFactory,
) -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    client = await make_proxy()
    cap = metric(await samples(client), "remoteit_proxy_max_connections")
    # Each client connection may hold an upstream one too: half the limit, less a reserve.
    assert cap is not None and soft // 2 - 64 <= cap < soft // 2


def test_the_new_options_parse_and_refuse_bad_values(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    settings = resolve({}, env)
    assert (settings.header_timeout, settings.client_timeout) == (10.0, 60.0)
    assert settings.max_connections is None  # auto: from the descriptor limit at start
    given = {"header-timeout": "2.5", "client-timeout": "30", "max-connections": "100"}
    settings = resolve(given, env)
    assert (settings.header_timeout, settings.client_timeout) == (2.5, 30.0)
    assert settings.max_connections == 100
    for name, bad in [
        ("max-connections", "0"),
        ("max-connections", "lots"),
        ("header-timeout", "0"),
    ]:
        with pytest.raises(ConfigError, match=f"--{name}"):
            resolve({name: bad}, env)


# --- the descriptor limit, in a real process ---------------------------------------------------


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(resource, "prlimit"),
    reason="lowers a running process's descriptor limit (Linux)",
)
async def test_running_out_of_descriptors_is_logged_and_counted(
    upstream: FakeUpstream, credentials_file: Path, tmp_path: Path
) -> None:
    args = ("--listen", "127.0.0.1:0", "--upstream", upstream.url)
    async with proxy_process(
        *args, "--credentials", str(credentials_file), env=base_env(tmp_path)
    ) as running:
        pid = running.process.pid
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        room = 8  # descriptors left for connections
        resource.prlimit(
            pid, resource.RLIMIT_NOFILE, (len(os.listdir(f"/proc/{pid}/fd")) + room, hard)
        )
        host, _, port = running.url.removeprefix("http://").rpartition(":")
        flood = [await asyncio.open_connection(host, int(port)) for _ in range(room + 10)]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(
            "file descriptors" in line for line in running.lines
        ):
            await asyncio.sleep(0.05)
        logged = [line for line in running.lines if "file descriptors" in line]
        assert logged and "WARNING proxy.limits" in logged[0], running.lines
        for _, writer in flood:
            writer.close()
        # The listener is retried after a second; the connections closed free descriptors.
        deadline = time.monotonic() + 5
        text = ""
        while time.monotonic() < deadline and "descriptor_limit_hits_total" not in text:
            await asyncio.sleep(0.3)
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                reader, writer = await asyncio.open_connection(host, int(port))
                writer.write(b"GET /-/metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                text = (await until_closed(reader, 3)).decode()
                writer.close()
        hits = re.search(r"^remoteit_proxy_descriptor_limit_hits_total (\S+)$", text, re.M)
        assert hits and float(hits.group(1)) >= 1, text
