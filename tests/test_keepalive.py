"""The upstream connection end to end: keep-alive reuse and its limits, answers framed every
legal way (and some illegal ones), written by a scripted upstream on raw sockets."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
import pytest
from conftest import KEY_ID, SECRET, ProxyClient, ProxyFactory
from fake_upstream import FakeUpstream, check_signature
from multidict import CIMultiDict

from proxy.errors import ConfigError

KEYS = {KEY_ID: SECRET}
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@dataclass
class Seen:
    """One request as the scripted upstream read it, its signature checked independently."""

    connection: int
    method: str
    target: str
    headers: CIMultiDict[str]
    body: bytes
    signature_problem: str


# What to write for the n-th request (0-based, across connections): bytes to write, pieces
# to write one by one (CLOSE among them closes the connection there), or None to close the
# connection without answering.
Script = Callable[[int, Seen], "bytes | list[bytes] | None"]
CLOSE = b""


@dataclass
class ScriptedUpstream:
    script: Script
    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while head := await reader.readuntil(b"\r\n\r\n"):
                line, *fields = head.decode("latin-1").rstrip("\r\n").split("\r\n")
                method, target, _ = line.split(" ")
                headers = CIMultiDict(f.split(": ", 1) for f in fields)
                body = await reader.readexactly(int(headers.get("Content-Length", "0")))
                seen = Seen(number, method, target, headers, body, "")
                seen.signature_problem = check_signature(method, target, headers, KEYS)
                self.seen.append(seen)
                answer = self.script(len(self.seen) - 1, seen)
                if answer is None:
                    break
                for piece in [answer] if isinstance(answer, bytes) else answer:
                    if piece == CLOSE:
                        writer.close()
                        return
                    writer.write(piece)
                    await writer.drain()
                    if not isinstance(answer, bytes):
                        await asyncio.sleep(0.002)
        writer.close()


@asynccontextmanager
async def scripted(script: Script) -> AsyncIterator[ScriptedUpstream]:
    upstream = ScriptedUpstream(script)
    server = await asyncio.start_server(upstream.serve, "127.0.0.1", 0)
    upstream.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with server:
        yield upstream


async def fetch(client: ProxyClient, method: str = "GET", **kwargs: object) -> tuple[int, bytes]:
    async with client.request(method, "/graphql/v1", **kwargs) as response:
        return response.status, await response.read()


async def test_one_connection_carries_many_requests(make_proxy: ProxyFactory) -> None:
    async with scripted(lambda n, seen: OK) as upstream:
        client = await make_proxy(upstream=upstream.url)
        for method in ("GET", "POST", "PUT", "DELETE", "GET"):
            assert await fetch(client, method, data=b"{}") == (200, b"ok")
    assert upstream.connections == 1
    assert [s.signature_problem for s in upstream.seen] == [""] * 5


async def status_line(client: ProxyClient, fields: bytes) -> bytes:
    """GET through the proxy written on a raw socket with these header lines; its status line."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(b"GET /graphql/v1 HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
    line = await reader.readline()
    writer.close()
    return line


async def test_header_bytes_reach_the_upstream_as_the_client_sent_them(
    make_proxy: ProxyFactory,
) -> None:
    async with scripted(lambda n, seen: OK) as upstream:
        client = await make_proxy(upstream=upstream.url)
        fields = b"X-Name:  caf\xe9 \r\nX-Name: second\r\nConnection: close\r\n"
        assert (await status_line(client, fields)).startswith(b"HTTP/1.1 200 ")
    seen = upstream.seen[0]
    assert seen.headers.getall("X-Name") == ["caf\xe9", "second"]  # read as latin-1
    assert seen.signature_problem == ""


async def test_a_clients_own_content_digest_never_stands_beside_the_proxys(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    client = await make_proxy(scheme="rfc9421", sign_content_digest="true")
    headers = {"Content-Digest": "sha-256=:AAAA:", "Content-Type": "application/json"}
    async with client.post("/graphql/v1", data=b"{}", headers=headers) as response:
        assert response.status == 200
    digest = upstream.last().header("Content-Digest")  # asserts it was sent once
    assert digest is not None and digest != "sha-256=:AAAA:"


@pytest.mark.parametrize("value", [b"\xc4\x81", b"\xff", b"X-Drop, \xff"])
async def test_odd_bytes_in_a_clients_connection_header_are_no_error(
    make_proxy: ProxyFactory, value: bytes
) -> None:
    async with scripted(lambda n, seen: OK) as upstream:
        client = await make_proxy(upstream=upstream.url)
        fields = b"X-Drop: 1\r\nX-Keep: 1\r\nConnection: " + value + b"\r\n"
        assert (await status_line(client, fields)).startswith(b"HTTP/1.1 200 ")
    seen = upstream.seen[0]
    assert seen.headers["X-Keep"] == "1"
    assert ("X-Drop" in seen.headers) is (b"X-Drop" not in value)


async def test_a_content_type_the_client_declared_hop_by_hop_is_not_signed(
    make_proxy: ProxyFactory,
) -> None:
    async with scripted(lambda n, seen: OK) as upstream:
        client = await make_proxy(upstream=upstream.url)
        headers = {"Content-Type": "text/plain", "Connection": "Content-Type"}
        assert await fetch(client, "POST", data=b"{}", headers=headers) == (200, b"ok")
    seen = upstream.seen[0]
    assert seen.headers.getall("Content-Type") == ["application/json"]
    assert seen.signature_problem == ""


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokUNASKED",
    ],
    ids=["connection-close", "http-1.0", "extra-bytes"],
)
async def test_a_connection_is_not_reused_when_the_answer_says_so(
    make_proxy: ProxyFactory, answer: bytes
) -> None:
    async with scripted(lambda n, seen: answer) as upstream:
        client = await make_proxy(upstream=upstream.url)
        assert await fetch(client) == (200, b"ok")
        assert await fetch(client) == (200, b"ok")
    assert upstream.connections == 2


async def test_an_answer_ended_by_closing_the_connection(make_proxy: ProxyFactory) -> None:
    body = bytes(range(256)) * 1200
    answer = [b"HTTP/1.1 200 OK\r\n\r\n", body[:100_000], body[100_000:], CLOSE]
    async with scripted(lambda n, seen: answer) as upstream:
        client = await make_proxy(upstream=upstream.url)
        assert await fetch(client) == (200, body)
        assert await fetch(client) == (200, body)
    assert upstream.connections == 2


@pytest.mark.parametrize("piece", [1, 7, 64])
async def test_a_chunked_answer_in_tiny_pieces_arrives_whole(
    make_proxy: ProxyFactory, piece: int
) -> None:
    answer = (
        b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Answer: yes\r\n\r\n"
        b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nChecksum: 1\r\n\r\n"
    )
    pieces = [answer[i : i + piece] for i in range(0, len(answer), piece)]
    async with scripted(lambda n, seen: pieces) as upstream:
        client = await make_proxy(upstream=upstream.url)
        for _ in range(2):
            async with client.get("/graphql/v1") as response:
                assert response.status == 200
                assert response.headers["X-Answer"] == "yes"
                assert "Link" not in response.headers
                assert "Checksum" not in response.headers
                assert await response.read() == b"hello world"
    assert upstream.connections == 1


async def test_answers_without_a_body_keep_the_connection(make_proxy: ProxyFactory) -> None:
    def answer(n: int, seen: Seen) -> bytes:
        if seen.method == "HEAD":
            return b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nX-Kind: head\r\n\r\n"
        if n == 1:
            return b"HTTP/1.1 204 No Content\r\n\r\n"
        if n == 2:
            return b'HTTP/1.1 304 Not Modified\r\nETag: "a"\r\n\r\n'
        return OK

    async with scripted(answer) as upstream:
        client = await make_proxy(upstream=upstream.url)
        async with client.head("/graphql/v1") as response:
            assert (response.status, response.headers["Content-Length"]) == (200, "1000")
            assert response.headers["X-Kind"] == "head"
        assert await fetch(client) == (204, b"")
        assert await fetch(client) == (304, b"")
        assert await fetch(client) == (200, b"ok")
    assert upstream.connections == 1


@pytest.mark.parametrize(
    ("method", "retried"), [("GET", True), ("DELETE", True), ("POST", False), ("PATCH", False)]
)
async def test_a_kept_connection_closed_by_the_upstream_as_it_is_reused(
    make_proxy: ProxyFactory, method: str, retried: bool
) -> None:
    # The second request arrives on the kept connection and the upstream closes it unanswered,
    # as a server does when its idle timeout strikes just then.
    async with scripted(lambda n, seen: None if n == 1 else OK) as upstream:
        client = await make_proxy(upstream=upstream.url)
        assert await fetch(client, method, data=b"{}") == (200, b"ok")
        status, body = await fetch(client, method, data=b"{}")
        if retried:  # safe to send again (RFC 9110 section 9.2.2): sent on a new connection
            assert (status, body) == (200, b"ok")
            assert [s.connection for s in upstream.seen] == [1, 1, 2]
        else:  # it may have been acted on: never sent twice
            assert status == 502
            assert b"upstream_error" in body
            assert len(upstream.seen) == 2
        assert await fetch(client) == (200, b"ok")


async def test_a_connection_the_upstream_closed_while_idle_is_not_used(
    make_proxy: ProxyFactory,
) -> None:
    async with scripted(lambda n, seen: [OK, CLOSE]) as upstream:
        client = await make_proxy(upstream=upstream.url)
        assert await fetch(client) == (200, b"ok")
        await asyncio.sleep(0.05)  # the upstream's close reaches the proxy
        # A POST is never sent twice, so a dead kept connection would show as a 502.
        assert await fetch(client, "POST", data=b"{}") == (200, b"ok")
    assert upstream.connections == 2


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nBad Header : x\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X-Filler: " + b"a" * 70_000 + b"\r\n\r\n",
    ],
    ids=["space-colon", "obs-fold", "two-lengths", "bad-length", "bad-chunk", "101", "http2",
         "head-too-long"],
)  # fmt: skip
async def test_a_malformed_answer_is_502_and_its_connection_dropped(
    make_proxy: ProxyFactory, answer: bytes
) -> None:
    async with scripted(lambda n, seen: answer if n == 0 else OK) as upstream:
        client = await make_proxy(upstream=upstream.url)
        status, body = await fetch(client)
        assert status == 502 and b'"upstream_error"' in body
        assert await fetch(client) == (200, b"ok")
    assert upstream.connections == 2


async def test_a_chunked_upload_is_sent_chunked_and_signed(make_proxy: ProxyFactory) -> None:
    async def pieces() -> AsyncIterator[bytes]:
        for i in range(3):
            yield b"%d" % i * 70_000

    received: list[bytes] = []

    async def read_chunked(reader: asyncio.StreamReader) -> bytes:
        body = b""
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        await reader.readuntil(b"\r\n")
        return body

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        line, *fields = head.rstrip("\r\n").split("\r\n")
        headers = CIMultiDict(f.split(": ", 1) for f in fields)
        assert headers["Transfer-Encoding"] == "chunked" and "Content-Length" not in headers
        assert check_signature("POST", line.split(" ")[1], headers, KEYS) == ""
        received.append(await read_chunked(reader))
        writer.write(OK)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        client = await make_proxy(upstream=f"http://127.0.0.1:{port}")
        assert await fetch(client, "POST", data=pieces()) == (200, b"ok")
    assert received == [b"".join(b"%d" % i * 70_000 for i in range(3))]


# --- outbound proxies --------------------------------------------------------------------------


async def test_a_tunnel_refused_by_the_outbound_proxy_is_502_naming_it(
    make_proxy: ProxyFactory,
) -> None:
    connects: list[str] = []

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        connects.append(head)
        writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        environ = {"HTTPS_PROXY": f"http://someone:s3cret-pass@127.0.0.1:{port}"}
        client = await make_proxy(environ=environ, upstream="https://api.example.com")
        async with client.get("/graphql/v1") as response:
            assert response.status == 502
            error = (await response.json())["error"]
    assert error["code"] == "upstream_unreachable"
    assert "HTTPS_PROXY" in error["message"] and "407" in error["message"]
    assert "s3cret" not in error["message"]
    assert connects[0].startswith("CONNECT api.example.com:443 HTTP/1.1\r\n")
    token = base64.b64encode(b"someone:s3cret-pass").decode()
    assert f"Proxy-Authorization: Basic {token}\r\n" in connects[0]


@pytest.mark.parametrize(
    "value", ["https://user:hunter2@proxy.corp:3128", "socks5://proxy.corp:1080", "http://:80"]
)
async def test_an_outbound_proxy_that_is_not_http_is_a_config_error(
    make_proxy: ProxyFactory, value: str
) -> None:
    with pytest.raises(ConfigError) as info:
        await make_proxy(environ={"HTTPS_PROXY": value}, upstream="https://api.example.com")
    assert "HTTPS_PROXY" in str(info.value)
    assert "hunter2" not in str(info.value)


async def test_an_outbound_proxy_without_a_scheme_is_http(make_proxy: ProxyFactory) -> None:
    async with scripted(lambda n, seen: OK) as forward_proxy:
        host_port = forward_proxy.url.removeprefix("http://")
        client = await make_proxy(
            environ={"HTTP_PROXY": host_port}, upstream="http://api.example.com"
        )
        assert await fetch(client) == (200, b"ok")
    assert forward_proxy.seen[0].target == "http://api.example.com/graphql/v1"
    assert forward_proxy.seen[0].headers["Host"] == "api.example.com"


# --- timeouts and stalls around request bodies -------------------------------------------------


@asynccontextmanager
async def raw_upstream(
    serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def read_head(reader: asyncio.StreamReader) -> CIMultiDict[str]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    return CIMultiDict(f.split(": ", 1) for f in head.rstrip("\r\n").split("\r\n")[1:])


async def test_a_slow_reader_of_a_large_buffered_body_is_waited_for(
    make_proxy: ProxyFactory,
) -> None:
    # Signing a digest buffers the body. What the sockets cannot hold is sent as the upstream
    # reads, and only then does the wait for the answer (--read-timeout) begin: the upstream
    # takes about 2.4 s to read it all, the timeout is 1 s, the last 4 MiB (the most the
    # kernel holds here) take about 0.4 s.
    size, step = 24 * 1024 * 1024, 512 * 1024

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        headers = await read_head(reader)
        left = int(headers["Content-Length"])
        while left:
            left -= len(await reader.readexactly(min(left, step)))
            await asyncio.sleep(0.05)
        writer.write(OK)
        await writer.drain()
        writer.close()

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # no autotuning to 32 MiB
    listener.bind(("127.0.0.1", 0))
    server = await asyncio.start_server(serve, sock=listener)
    async with server:
        client = await make_proxy(
            upstream=f"http://127.0.0.1:{listener.getsockname()[1]}",
            read_timeout="1",
            scheme="rfc9421",
            sign_content_digest="true",
            max_buffered_body=str(32 * 1024 * 1024),
        )
        assert await fetch(client, "POST", data=b"x" * size) == (200, b"ok")


async def test_an_upstream_that_stops_reading_an_upload_is_504(make_proxy: ProxyFactory) -> None:
    finished = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        await finished.wait()  # never reads the body, never answers
        writer.close()

    async def endless() -> AsyncIterator[bytes]:
        for _ in range(400):
            yield b"u" * 65536

    async with raw_upstream(serve) as url:
        # aiohttp's server lingers over the unread rest of the upload for up to 10 s after
        # the answer; a short shutdown keeps that out of the test's time.
        client = await make_proxy(upstream=url, read_timeout="0.5", shutdown_timeout="1")
        started = asyncio.get_running_loop().time()
        status, body = await fetch(client, "POST", data=endless())
        assert status == 504 and b"stopped taking the request body" in body
        assert asyncio.get_running_loop().time() - started < 5
        pool = client.service.state.pool
        assert pool is not None and pool.in_use == 0
        finished.set()


@pytest.mark.parametrize("size", [10, 300_000])
async def test_no_answer_after_a_streamed_body_is_504(make_proxy: ProxyFactory, size: int) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        headers = await read_head(reader)
        await reader.readexactly(int(headers["Content-Length"]))
        await reader.read()  # no answer, until the proxy gives up and closes

    async def body() -> AsyncIterator[bytes]:
        yield b"s" * size

    async with raw_upstream(serve) as url:
        client = await make_proxy(upstream=url, read_timeout="0.3")
        started = asyncio.get_running_loop().time()
        async with client.post(
            "/graphql/v1", data=body(), headers={"Content-Length": str(size)}
        ) as response:
            assert response.status == 504
        assert asyncio.get_running_loop().time() - started < 3


async def test_a_timeout_on_a_kept_connection_is_not_retried(make_proxy: ProxyFactory) -> None:
    async with scripted(lambda n, seen: OK if n == 0 else [b"HTTP/1.1 200 OK\r\n"]) as upstream:
        client = await make_proxy(upstream=upstream.url, read_timeout="0.3")
        assert await fetch(client) == (200, b"ok")
        status, _ = await fetch(client)  # GET, on the kept connection: answered too slowly
        assert status == 504
    assert len(upstream.seen) == 2


async def test_an_answer_until_close_cut_by_a_reset_is_not_complete(
    make_proxy: ProxyFactory,
) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n\r\npartial")
        await writer.drain()
        await asyncio.sleep(0.1)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # RST, not FIN: the body did not end here

    async with raw_upstream(serve) as url:
        client = await make_proxy(upstream=url)
        async with client.get("/graphql/v1") as response:
            assert response.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()
