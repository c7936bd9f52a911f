"""WebSocket upgrades end to end: signed, the 101 passed on, then bytes relayed both ways."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer
from conftest import ProxyClient, ProxyFactory
from fake_upstream import FakeUpstream, Received
from test_faults import assert_settled, background, command

ServerFactory = Callable[..., Awaitable[TestServer]]


# The close codes the upstream's sockets ended with, in order.
CLOSED: list[int | None] = []


async def echo_socket(request: web.Request, received: Received) -> web.StreamResponse:
    """The upstream's side: echo text and binary messages; "close:CODE" closes with CODE."""
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        if message.type is WSMsgType.TEXT and message.data.startswith("close:"):
            await ws.close(code=int(message.data[6:]), message=b"bye")
        elif message.type is WSMsgType.TEXT:
            await ws.send_str(message.data)
        elif message.type is WSMsgType.BINARY:
            await ws.send_bytes(message.data)
    CLOSED.append(ws.close_code)
    return ws


@pytest.fixture
async def ws_upstream(upstream: FakeUpstream) -> FakeUpstream:
    CLOSED.clear()
    upstream.respond = echo_socket
    return upstream


def ws_url(client: ProxyClient, target: str = "/v1") -> str:
    return f"ws://{client.host}:{client.port}{target}"


@pytest.mark.parametrize("scheme", ["cavage", "rfc9421"])
async def test_messages_go_both_ways_over_a_signed_upgrade(
    make_proxy: ProxyFactory, ws_upstream: FakeUpstream, scheme: str
) -> None:
    client = await make_proxy(scheme=scheme)
    async with client.session.ws_connect(ws_url(client, "/v1?x=1")) as ws:
        await ws.send_str("hello")
        assert (await ws.receive()).data == "hello"
        await ws.send_bytes(b"\x00\xff" * 40_000)
        assert (await ws.receive()).data == b"\x00\xff" * 40_000
        assert ws.get_extra_info("peername") is not None
    received = ws_upstream.last()  # verified on its own, in the configured scheme
    assert received.method == "GET" and received.raw_path == "/v1?x=1"
    assert received.header("Upgrade") == "websocket"
    assert "upgrade" in (received.header("Connection") or "").lower()
    assert received.header("Sec-WebSocket-Key") is not None
    assert (received.header("Signature-Input") is not None) == (scheme == "rfc9421")


async def test_ping_pong_and_close_codes_pass_through(
    make_proxy: ProxyFactory, ws_upstream: FakeUpstream
) -> None:
    client = await make_proxy()
    async with client.session.ws_connect(ws_url(client), autoping=False) as ws:
        await ws.ping(b"are you there")
        pong = await ws.receive()
        assert pong.type is WSMsgType.PONG and pong.data == b"are you there"
        await ws.send_str("close:4001")  # the upstream closes with 4001
        closing = await ws.receive()
        assert closing.type is WSMsgType.CLOSE and closing.data == 4001
        assert closing.extra == "bye"
    async with client.session.ws_connect(ws_url(client)) as ws:
        await ws.close(code=4002)  # the client closes with 4002
    for _ in range(50):
        if len(CLOSED) == 2:
            break
        await asyncio.sleep(0.02)
    assert CLOSED[-1] == 4002


async def test_the_access_line_is_written_at_close_with_the_bytes_each_way(
    make_proxy: ProxyFactory, ws_upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client = await make_proxy()
    async with client.session.ws_connect(ws_url(client)) as ws:
        await ws.send_bytes(b"x" * 10_000)
        await ws.receive()
        await asyncio.sleep(0.2)
        assert not [r for r in caplog.records if r.name == "proxy.access"]
    await asyncio.sleep(0.2)
    lines = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("proxy") and " 101 " in r.getMessage()
    ]
    assert len(lines) == 1, lines
    # Bytes each way, frames whole: the message (10,000 bytes, a 4-byte header, and a 4-byte
    # mask from the client) and the close frames (2 bytes of code, a header, the mask).
    assert " in=10016 out=10008 " in lines[0], lines[0]


async def raw_upgrade(
    client: ProxyClient, headers: str = ""
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """A WebSocket upgrade on a raw socket: the reader and writer after the head, the head."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /v1 HTTP/1.1\r\nHost: proxy\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return reader, writer, head


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A masked client frame (RFC 6455 5.2)."""
    mask = os.urandom(4)
    size = len(payload)
    length = bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + size.to_bytes(2, "big")
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([(0x80 if fin else 0) | opcode]) + length + mask + masked


async def test_fragmented_frames_are_relayed_as_sent(
    make_proxy: ProxyFactory, ws_upstream: FakeUpstream
) -> None:
    client = await make_proxy()
    reader, writer, head = await raw_upgrade(client)
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"\r\nSec-WebSocket-Accept: " in head and head.count(b"\r\nServer:") == 1
    # One text message in three fragments, a ping between two of them (RFC 6455 5.4).
    writer.write(frame(0x1, b"hel", fin=False) + frame(0x9, b"p"))
    await writer.drain()
    writer.write(frame(0x0, b"l", fin=False))
    await asyncio.sleep(0.05)
    writer.write(frame(0x0, b"o"))
    pong = await asyncio.wait_for(reader.readexactly(3), 5)
    assert pong == b"\x8a\x01p"
    echoed = await asyncio.wait_for(reader.readexactly(7), 5)
    assert echoed == b"\x81\x05hello"
    writer.write(frame(0x8, (1000).to_bytes(2, "big")))
    assert (await asyncio.wait_for(reader.read(4), 5))[:1] == b"\x88"
    writer.close()


async def test_a_non_101_answer_is_passed_on_as_an_answer(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    async def no(request: web.Request, received: Received) -> web.StreamResponse:
        return web.json_response({"message": "no sockets here"}, status=404)

    upstream.respond = no
    client = await make_proxy()
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.session.ws_connect(ws_url(client))
    assert refused.value.status == 404
    reader, writer, head = await raw_upgrade(client)
    assert head.startswith(b"HTTP/1.1 404 ")
    writer.close()
    upstream.last()


@pytest.mark.parametrize(
    ("request_line", "headers", "code"),
    [
        ("GET / HTTP/1.1", "Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n",
         "upgrade_unsupported"),
        ("POST / HTTP/1.1", "Upgrade: websocket\r\nConnection: Upgrade\r\n", "bad_upgrade"),
        ("GET / HTTP/1.0", "Upgrade: websocket\r\nConnection: Upgrade\r\n", "bad_upgrade"),
        ("GET / HTTP/1.1",
         "Upgrade: websocket\r\nConnection: Upgrade\r\nTransfer-Encoding: chunked\r\n",
         "bad_upgrade"),
    ],
    ids=["h2c", "post", "http1.0", "with-a-body"],
)  # fmt: skip
async def test_upgrades_that_cannot_be_relayed_are_400(
    make_proxy: ProxyFactory, upstream: FakeUpstream, request_line: str, headers: str, code: str
) -> None:
    client = await make_proxy()
    reader, writer = await asyncio.open_connection(client.host, client.port)
    length = "" if "chunked" in headers else "Content-Length: 0\r\n"
    writer.write(f"{request_line}\r\nHost: p\r\n{length}{headers}\r\n".encode())
    if "chunked" in headers:
        writer.write(b"5\r\nhello\r\n0\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(2000), 5)
    writer.close()
    assert answer.split(b" ")[1] == b"400" and code.encode() in answer
    assert not upstream.received


async def test_a_client_with_a_policy_cannot_open_a_websocket(
    make_proxy: ProxyFactory, ws_upstream: FakeUpstream
) -> None:
    client = await make_proxy(read_only="true")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.session.ws_connect(ws_url(client))
    assert refused.value.status == 403
    assert not ws_upstream.received


async def test_an_upstream_switching_to_another_protocol_is_502(
    make_proxy: ProxyFactory, aiohttp_raw_server: Callable[..., Awaitable[TestServer]]
) -> None:
    async def other(request: web.BaseRequest) -> web.StreamResponse:
        response = web.StreamResponse(
            status=101, headers={"Upgrade": "h2c", "Connection": "Upgrade"}
        )
        await response.prepare(request)
        await asyncio.sleep(1)
        return response

    server = await aiohttp_raw_server(other)
    client = await make_proxy(upstream=f"http://127.0.0.1:{server.port}")
    reader, writer, head = await raw_upgrade(client)
    assert head.startswith(b"HTTP/1.1 502 ")
    writer.close()


async def test_a_quiet_socket_outlives_the_read_timeout(
    make_proxy: ProxyFactory, ws_upstream: FakeUpstream
) -> None:
    client = await make_proxy(read_timeout="0.2")
    async with client.session.ws_connect(ws_url(client)) as ws:
        await asyncio.sleep(0.8)
        await ws.send_str("still here")
        assert (await ws.receive(timeout=5)).data == "still here"


async def test_the_idle_timeout_closes_a_quiet_socket_with_1001(
    make_proxy: ProxyFactory, ws_upstream: FakeUpstream
) -> None:
    client = await make_proxy(websocket_idle_timeout="0.3")
    async with client.session.ws_connect(ws_url(client)) as ws:
        await ws.send_str("a")
        assert (await ws.receive()).data == "a"
        started = time.monotonic()
        closing = await ws.receive(timeout=5)
        assert closing.type is WSMsgType.CLOSE and closing.data == 1001
        assert 0.25 < time.monotonic() - started < 3


async def test_the_client_vanishing_closes_the_upstream_side_and_leaves_no_task(
    make_proxy: ProxyFactory, ws_upstream: FakeUpstream, aiohttp_server: ServerFactory
) -> None:
    closed = asyncio.Event()

    async def hold(request: web.Request, received: Received) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        try:
            async for message in ws:
                await ws.send_bytes(message.data * 1000)
        finally:  # the test server cancels a handler whose connection is lost
            closed.set()
        return ws

    ws_upstream.respond = hold
    client = await make_proxy()
    before = set(asyncio.all_tasks())
    reader, writer, head = await raw_upgrade(client)
    writer.write(frame(0x2, b"0123456789"))
    await reader.readexactly(100)  # mid-message from the upstream
    writer.transport.abort()  # no close frame, a reset
    await asyncio.wait_for(closed.wait(), 5)
    await assert_settled(client.service, before)
    assert not client.service.state.tunnels


async def test_the_upstream_vanishing_closes_the_client_side(
    make_proxy: ProxyFactory, ws_upstream: FakeUpstream
) -> None:
    async def vanish(request: web.Request, received: Received) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.receive()
        assert request.transport is not None
        request.transport.abort()
        return ws

    ws_upstream.respond = vanish
    client = await make_proxy()
    before = set(asyncio.all_tasks())
    async with client.session.ws_connect(ws_url(client)) as ws:
        await ws.send_str("go")
        message = await ws.receive(timeout=5)
        assert message.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR)
    await assert_settled(client.service, before)
    assert not client.service.state.tunnels


async def test_sigterm_closes_an_open_socket_with_1001_after_the_shutdown_timeout(
    ws_upstream: FakeUpstream, credentials_file: Path, tmp_path: Path
) -> None:
    args = ("--listen", "127.0.0.1:0", "--upstream", ws_upstream.url, "--shutdown-timeout", "1")
    async with (
        command(*args, "--credentials", str(credentials_file), home=tmp_path) as proxy,
        aiohttp.ClientSession() as session,
        session.ws_connect(f"ws://{proxy.host}:{proxy.port}/v1") as ws,
    ):
        await ws.send_str("up")
        assert (await ws.receive()).data == "up"
        proxy.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        closing = await ws.receive(timeout=5)
        waited = time.monotonic() - signalled
        assert closing.type is WSMsgType.CLOSE and closing.data == 1001
        assert 0.9 < waited < 3, waited
        assert await asyncio.wait_for(proxy.process.wait(), 5) == 0
    await asyncio.sleep(0.2)
    ws_upstream.last()


def memory_kib(pid: int, field: str) -> int:
    """VmRSS (now) or VmHWM (the peak so far) of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


MIB = 1024 * 1024
EACH_WAY = 64 * MIB


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
async def test_64_mib_each_way_with_slow_readers_keeps_proxy_memory_flat(
    upstream: FakeUpstream, credentials_file: Path, tmp_path: Path
) -> None:
    piece = os.urandom(MIB)
    got: dict[str, int] = {}

    async def both_ways(request: web.Request, received: Received) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=2 * MIB)
        await ws.prepare(request)

        async def send() -> None:
            for _ in range(EACH_WAY // MIB):
                await ws.send_bytes(piece)

        sending = asyncio.create_task(send())
        size = -1  # the client's first message, one byte, opens the way
        while size < EACH_WAY:
            message = await ws.receive()
            assert message.type is WSMsgType.BINARY, message
            size += len(message.data)
            await asyncio.sleep(0.004)  # a slow reader: the client must be held back
        got["upstream"] = size
        await sending
        await ws.receive()  # the client's close
        return ws

    upstream.respond = both_ways
    args = ("--listen", "127.0.0.1:0", "--upstream", upstream.url)
    async with (
        command(*args, "--credentials", str(credentials_file), home=tmp_path) as proxy,
        aiohttp.ClientSession() as session,
        session.ws_connect(f"ws://{proxy.host}:{proxy.port}/v1", max_msg_size=2 * MIB) as ws,
    ):
        pid = proxy.process.pid
        await ws.send_bytes(b"x")  # warm: the relay's buffers exist
        await asyncio.sleep(0.1)
        before = memory_kib(pid, "VmRSS")

        async def send() -> None:
            for _ in range(EACH_WAY // MIB):
                await ws.send_bytes(piece)

        async with background(send()) as sending:
            size = 0
            while size < EACH_WAY:
                message = await ws.receive(timeout=30)
                assert message.type is WSMsgType.BINARY, message
                assert message.data == piece  # unchanged, in order
                size += len(message.data)
                await asyncio.sleep(0.004)
            await asyncio.wait_for(sending, 30)
        peak = memory_kib(pid, "VmHWM")
        await ws.close()
    assert got["upstream"] == EACH_WAY
    # Unbounded buffering would hold tens of MiB of the 128 moved; the relay holds a few
    # hundred KiB per direction, plus one message being read by each side's library.
    growth = (peak - before) / 1024
    print(f"proxy RSS {before / 1024:.1f} MiB before, peak {peak / 1024:.1f} MiB")
    assert growth < 24, f"the proxy grew by {growth:.1f} MiB moving 64 MiB each way"


BIG = 3 * 1024 * 1024 + 7  # more than the tunnel's buffer, in TLS records


@pytest.mark.parametrize("where", ["in-process", "process"])
async def test_a_websocket_over_a_tls_upstream(
    make_proxy: ProxyFactory,
    https_upstream: FakeUpstream,
    ca_pem: Path,
    credentials_file: Path,
    tmp_path: Path,
    where: str,
) -> None:
    """The TLS transport is handed over as a plain one is (in a process: uvloop's, if
    installed)."""
    https_upstream.respond = echo_socket
    data = os.urandom(BIG)

    async def talk(url: str) -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(url, max_msg_size=2 * BIG) as ws,
        ):
            await ws.send_bytes(data)
            assert (await ws.receive(timeout=10)).data == data

    if where == "in-process":
        client = await make_proxy(upstream=https_upstream.url, ca_bundle=str(ca_pem))
        await talk(ws_url(client))
    else:
        args = ("--listen", "127.0.0.1:0", "--upstream", https_upstream.url)
        args += ("--ca-bundle", str(ca_pem), "--credentials", str(credentials_file))
        async with command(*args, home=tmp_path) as proxy:
            await talk(f"ws://{proxy.host}:{proxy.port}/v1")
    https_upstream.last()


async def test_during_the_shutdown_grace_messages_still_go_both_ways(
    make_proxy: ProxyFactory, ws_upstream: FakeUpstream
) -> None:
    client = await make_proxy(shutdown_timeout="1.5")
    async with client.session.ws_connect(ws_url(client)) as ws:
        stopping = asyncio.ensure_future(client.service.stop())
        await asyncio.sleep(0.2)
        await ws.send_str("during")  # aiohttp drops a request's bytes once it shuts down
        assert (await ws.receive(timeout=1)).data == "during"
        closing = await ws.receive(timeout=5)
        assert closing.type is WSMsgType.CLOSE and closing.data == 1001
        await stopping


async def test_a_socket_opened_as_the_proxy_stops_gets_its_1001_at_the_deadline(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    async def slow(request: web.Request, received: Received) -> web.StreamResponse:
        await asyncio.sleep(0.5)  # the 101 comes after the proxy began to stop
        return await echo_socket(request, received)

    upstream.respond = slow
    client = await make_proxy(shutdown_timeout="1")
    connecting = asyncio.ensure_future(client.session.ws_connect(ws_url(client)))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    stopping = asyncio.ensure_future(client.service.stop())
    async with await connecting as ws:
        closing = await ws.receive(timeout=5)
        assert closing.type is WSMsgType.CLOSE and closing.data == 1001
        assert 0.9 < time.monotonic() - started < 1.6
    await stopping


async def test_an_upstream_that_stops_reading_a_while_is_waited_for(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    size = 8 * MIB

    async def busy(request: web.Request, received: Received) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        await asyncio.sleep(1.0)  # not reading, longer than --read-timeout
        got = 0
        async for message in ws:
            got += len(message.data)
            if got >= size:
                await ws.send_str(f"got {got}")
        return ws

    upstream.respond = busy
    client = await make_proxy(read_timeout="0.3")
    async with client.session.ws_connect(ws_url(client), max_msg_size=0) as ws:
        piece = os.urandom(MIB)
        for _ in range(size // MIB):
            await ws.send_bytes(piece)  # held back while the upstream does not read
        assert (await ws.receive(timeout=10)).data == f"got {size}"


async def test_an_open_socket_counts_as_a_request_but_not_as_a_duration(
    make_proxy: ProxyFactory, ws_upstream: FakeUpstream
) -> None:
    client = await make_proxy()
    async with client.session.ws_connect(ws_url(client)) as ws:
        await ws.send_str("a")
        await ws.receive()
        async with client.get("/-/metrics") as response:
            assert "remoteit_proxy_in_flight_requests 1.0" in await response.text()
    await asyncio.sleep(0.1)
    async with client.get("/-/metrics") as response:
        text = await response.text()
    assert 'remoteit_proxy_requests_total{method="GET",status="101"} 1.0' in text
    assert "remoteit_proxy_request_duration_seconds_count 0.0" in text
