"""Shutdown: one --shutdown-timeout in all, 503s for what is not served, cut requests logged."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from conftest import ProxyClient, ProxyFactory
from fake_upstream import FakeUpstream, Received, pattern
from test_faults import background, command

TIMEOUT = 1.0  # --shutdown-timeout in these tests: short, yet well above scheduling noise
# The whole shutdown, from the signal (or stop()) to its end: the timeout once, not twice.
AT_MOST = 1.6 * TIMEOUT


@asynccontextmanager
async def stalled(upstream: FakeUpstream, head_first: bool = False) -> AsyncIterator[asyncio.Event]:
    """An upstream that answers nothing (or a head and some body) until the block ends;
    yields the event set once the request reached it."""
    arrived, release = asyncio.Event(), asyncio.Event()

    async def respond(request: web.Request, received: Received) -> web.StreamResponse:
        if not head_first:
            arrived.set()
            await release.wait()
            return web.Response(body=b"too late")
        response = web.StreamResponse()
        response.content_type = "application/octet-stream"
        await response.prepare(request)
        await response.write(pattern(10_000))
        arrived.set()
        await release.wait()
        return response

    upstream.respond = respond
    try:
        yield arrived
    finally:
        release.set()


def access_lines(caplog: pytest.LogCaptureFixture, path: str) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "proxy.access" and record.getMessage().startswith(f"GET {path} ")
    ]


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One answer with a Content-Length, read off a raw connection."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines if line)
    headers = {name.lower(): value for name, value in fields.items()}
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 5)
    return int(status_line.split()[1]), headers, body


async def test_sigterm_exits_after_the_shutdown_timeout_once(
    upstream: FakeUpstream, credentials_file: Path, tmp_path: Path
) -> None:
    args = ("--listen", "127.0.0.1:0", "--upstream", upstream.url)
    args += ("--shutdown-timeout", str(TIMEOUT), "--credentials", str(credentials_file))
    async with (
        stalled(upstream) as arrived,
        command(*args, home=tmp_path) as proxy,
        aiohttp.ClientSession() as session,
    ):

        async def fetch() -> tuple[int, str]:
            async with session.get(proxy.url + "/never") as response:
                return response.status, (await response.json())["error"]["code"]

        async with background(fetch()) as in_flight:
            await asyncio.wait_for(arrived.wait(), 5)
            proxy.process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            assert await asyncio.wait_for(proxy.process.wait(), 5 * TIMEOUT) == 0
            took = time.monotonic() - signalled
            await asyncio.wait({in_flight}, timeout=3)
            assert TIMEOUT <= took < AT_MOST, f"exit {took:.2f}s after SIGTERM ({TIMEOUT:g}s)"
            assert in_flight.result() == (503, "shutdown_deadline")
    logged = [line for line in proxy.lines if "proxy.access: GET /never " in line]
    assert len(logged) == 1 and " 503 code=shutdown_deadline " in logged[0], proxy.lines


async def test_a_request_cut_at_the_deadline_is_answered_503_and_logged_so(
    make_proxy: ProxyFactory, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="proxy.access")
    client = await make_proxy(shutdown_timeout=str(TIMEOUT))
    async with stalled(upstream) as arrived, background(fetch_json(client, "/cut")) as in_flight:
        await asyncio.wait_for(arrived.wait(), 5)
        started = time.monotonic()
        await asyncio.wait_for(client.service.stop(), 5 * TIMEOUT)
        took = time.monotonic() - started
        await asyncio.wait({in_flight}, timeout=3)
        assert TIMEOUT <= took < AT_MOST, f"stop() took {took:.2f}s"
        status, headers, body = in_flight.result()
    assert status == 503 and body["error"]["code"] == "shutdown_deadline"
    assert "retry" in body["error"]["message"]
    assert headers.get("Connection") == "close"
    [line] = access_lines(caplog, "/cut")
    assert " 503 code=shutdown_deadline " in line, line


async def test_an_answer_cut_mid_body_is_aborted_and_logged_as_cut(
    make_proxy: ProxyFactory, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="proxy.access")
    client = await make_proxy(shutdown_timeout=str(TIMEOUT))

    async def download() -> int:
        async with client.get("/mid-body") as response:
            assert response.status == 200
            return len(await response.read())

    async with (
        stalled(upstream, head_first=True) as arrived,
        background(download()) as in_flight,
    ):
        await asyncio.wait_for(arrived.wait(), 5)
        started = time.monotonic()
        await asyncio.wait_for(client.service.stop(), 5 * TIMEOUT)
        took = time.monotonic() - started
        # A truncated answer must never look complete.
        with pytest.raises(aiohttp.ClientPayloadError):
            await asyncio.wait_for(in_flight, 3)
    assert TIMEOUT <= took < AT_MOST, f"stop() took {took:.2f}s"
    [line] = access_lines(caplog, "/mid-body")
    assert " 503 code=shutdown_deadline " in line, line


async def test_a_request_on_a_kept_alive_connection_while_draining_is_refused_503(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    client = await make_proxy()
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(b"GET /first HTTP/1.1\r\nHost: proxy\r\n\r\n")
        status, headers, _ = await read_answer(reader)
        assert status == 200 and headers.get("connection", "keep-alive") != "close"
        client.service.state.draining = True  # as stop() marks it, before anything is closed

        writer.write(b"GET /second HTTP/1.1\r\nHost: proxy\r\n\r\n")
        status, headers, body = await read_answer(reader)
        assert status == 503
        error = json.loads(body)["error"]
        assert error["code"] == "shutting_down" and "retry" in error["message"]
        assert headers["connection"] == "close"
        assert await asyncio.wait_for(reader.read(), 5) == b"", "the connection stayed open"
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    assert [received.raw_path for received in upstream.received] == ["/first"]
    # The proxy's own endpoints still answer themselves: readiness says it is going away.
    async with client.get("/-/ready") as response:
        assert response.status == 503
        assert (await response.json())["error"]["code"] == "not_ready"


async def fetch_json(
    client: ProxyClient, target: str
) -> tuple[int, dict[str, str], dict[str, dict[str, str]]]:
    async with client.get(target) as response:
        return response.status, dict(response.headers), await response.json()
