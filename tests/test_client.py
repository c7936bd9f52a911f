"""The upstream client as its own layer: linear head search, answer heads passed on byte for byte,
and the answers it now refuses."""

from __future__ import annotations

import asyncio

import pytest
from conftest import ProxyFactory

from proxy.client.parser import ResponseParser
from proxy.client.wire import ParseError


def long_head(fields: int) -> bytes:
    lines = b"".join(b"X-Filler-%05d: %s\r\n" % (i, b"v" * 40) for i in range(fields))
    return b"HTTP/1.1 200 OK\r\n" + lines + b"Content-Length: 2\r\n\r\nok"


def scanned_in_pieces(data: bytes, size: int) -> tuple[int, ResponseParser]:
    parser = ResponseParser("GET")
    body = b""
    for start in range(0, len(data), size):
        body += b"".join(parser.feed(data[start : start + size]))
    assert parser.done and body == b"ok"
    return parser.scanned, parser


def test_a_head_in_4_byte_reads_is_searched_in_linear_time() -> None:
    # 60 KB of head, 15,000 reads: a search that restarts at every read would look at about
    # 450 million bytes; resuming where it stopped, each byte is looked at about twice.
    small, big = long_head(250), long_head(1000)
    assert 55_000 < len(big) < 64 * 1024
    scanned_small, _ = scanned_in_pieces(small, 4)
    scanned_big, parser = scanned_in_pieces(big, 4)
    assert scanned_big < 2 * len(big)
    assert 3.5 < scanned_big / scanned_small < 4.5  # four times the head, four times the work
    assert parser.head is not None and len(parser.head.headers) == 1001
    # One read: the head is looked at once.
    assert scanned_in_pieces(big, len(big))[0] == big.index(b"\r\n\r\n") + 4


# The answers a differential run against llhttp and h11 found this client accepting while
# both libraries refuse them (tests/test_differential.py keeps looking for more).
REFUSED = {
    "nbsp-before-length-after-100": b"HTTP/1.1 100 Continue\r\nContent-Length:\xc2\xa0 5\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    "nbsp-before-length": b"HTTP/1.1 200 OK\r\nContent-Length:\xc2\xa0 5\r\n\r\nhello",
    "trailer-not-a-field": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\nhello\r\n\r\n",
    "plus-length": b"HTTP/1.1 200 OK\r\nContent-Length:+4\r\n\r\nabcd",
    "space-before-chunk-extension": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5 ;a=b\r\nhello\r\n0\r\n\r\n",
    "nel-after-chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\xc2\x85\r\n\r\n0\r\n\r\n",
    "repeated-length": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
    "length-and-chunked": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "control-in-reason": b"HTTP/1.1 200 O\x01K\r\nContent-Length: 2\r\n\r\nok",
    "bad-length-in-304": b"HTTP/1.1 304 Not Modified\r\nContent-Length: x\r\n\r\n",
    "http10-interim": b"HTTP/1.0 100 Continue\r\n\r\n"
    b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
    "tab-after-chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n",
    "closing-interim": b"HTTP/1.1 100 Continue\r\nConnection: close\r\n\r\n"
    b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
}


@pytest.mark.parametrize("data", list(REFUSED.values()), ids=list(REFUSED))
def test_answers_both_libraries_refuse_are_refused(data: bytes) -> None:
    parser = ResponseParser("GET")
    with pytest.raises(ParseError):
        parser.feed(data)
        parser.eof()


# The package imports nothing of the proxy but errors: tests/test_structure.py checks it.


# --- heads passed on as they came ------------------------------------------------------------


async def scripted_upstream(head: bytes, body: bytes) -> tuple[asyncio.Server, int]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(head + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def raw_get(host: str, port: int) -> tuple[bytes, bytes]:
    """GET through the proxy on a raw socket: the answer's head and body, as bytes."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /graphql/v1 HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n\r\n")
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


async def test_answer_fields_reach_the_client_byte_for_byte(make_proxy: ProxyFactory) -> None:
    head = (
        b"HTTP/1.1 200 Tr\xc3\xa8s bien\r\nX-Name: caf\xc3\xa9 \xe2\x98\x95\r\nServer: api/1\r\n"
        b"Content-Length: 2\r\n\r\n"
    )
    server, port = await scripted_upstream(head, b"ok")
    async with server:
        client = await make_proxy(upstream=f"http://127.0.0.1:{port}")
        got, body = await raw_get(client.host, client.port)
    assert body == b"ok"
    assert got.startswith(b"HTTP/1.1 200 Tr\xc3\xa8s bien\r\n")
    assert b"\r\nX-Name: caf\xc3\xa9 \xe2\x98\x95\r\n" in got
    assert got.count(b"Server:") == 1 and b"\r\nServer: api/1\r\n" in got


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
async def test_no_server_or_content_type_is_added(make_proxy: ProxyFactory, streamed: bool) -> None:
    framing = b"Transfer-Encoding: chunked" if streamed else b"Content-Length: 2"
    body = b"2\r\nok\r\n0\r\n\r\n" if streamed else b"ok"
    server, port = await scripted_upstream(b"HTTP/1.1 200 OK\r\n" + framing + b"\r\n\r\n", body)
    async with server:
        client = await make_proxy(upstream=f"http://127.0.0.1:{port}")
        got, _ = await raw_get(client.host, client.port)
    fields = got.lower()
    assert b"\r\nserver:" not in fields and b"\r\ncontent-type:" not in fields, got
    assert b"\r\ndate:" in fields  # RFC 9110 section 6.6.1: added when missing


async def test_the_proxys_own_answers_name_no_server(make_proxy: ProxyFactory) -> None:
    client = await make_proxy()
    async with client.get("/-/health") as response:
        assert response.status == 200 and "Server" not in response.headers


@pytest.mark.parametrize(
    ("head", "named"),
    [
        (b"HTTP/1.1 200 OK\r\nX-Name: caf\xe9\r\nContent-Length: 2\r\n\r\n", "the header X-Name"),
        (b"HTTP/1.1 200 Tr\xe8s bien\r\nContent-Length: 2\r\n\r\n", "the reason phrase"),
    ],
    ids=["field", "reason"],
)
async def test_bytes_that_are_not_utf8_are_refused_not_altered(
    make_proxy: ProxyFactory, head: bytes, named: str
) -> None:
    # aiohttp writes text as UTF-8 (its C writer used to drop the byte: "caf"), so such an
    # answer cannot be passed on unchanged: 502, naming what is at fault.
    server, port = await scripted_upstream(head, b"ok")
    async with server:
        client = await make_proxy(upstream=f"http://127.0.0.1:{port}")
        async with client.get("/graphql/v1") as response:
            error = (await response.json())["error"]
    assert response.status == 502 and error["code"] == "upstream_error"
    assert named in error["message"] and "not UTF-8" in error["message"]
