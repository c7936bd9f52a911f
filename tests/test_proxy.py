"""End to end: a client, the proxy app, and the verifying fake upstream, all on loopback."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from conftest import DEVELOPER_KEY, KEY_ID, ProxyClient, ProxyFactory
from fake_upstream import FakeUpstream, Received, pattern
from yarl import URL

MIB = 1024 * 1024


async def test_get_with_query_string_is_signed_and_answered(
    proxy: ProxyClient, upstream: FakeUpstream
) -> None:
    response = await proxy.get("/apv/v27/device/list/all?size=50&from=100&sort=-name")
    assert response.status == 200
    body = await response.json()
    assert body["path"] == "/apv/v27/device/list/all?size=50&from=100&sort=-name"
    received = upstream.last()
    assert received.method == "GET"
    # The vendor's tools sign a Content-Type even without a body; the proxy adds the same.
    assert received.header("Content-Type") == "application/json"
    assert received.header("Host") == URL(upstream.url).raw_authority
    assert f'keyId="{KEY_ID}"' in (received.header("Authorization") or "")


async def test_post_json_passes_body_and_content_type(
    proxy: ProxyClient, upstream: FakeUpstream
) -> None:
    query = json.dumps({"query": "{ login { email } }"}).encode()
    response = await proxy.post(
        "/graphql/v1", data=query, headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert response.status == 200
    received = upstream.last()
    assert received.body_sha256 == hashlib.sha256(query).hexdigest()
    assert received.header("Content-Type") == "application/json; charset=utf-8"
    assert received.header("Content-Length") == str(len(query))


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND"])
async def test_every_method_is_forwarded_and_signed(
    proxy: ProxyClient, upstream: FakeUpstream, method: str
) -> None:
    response = await proxy.request(method, "/apv/v27/thing/1", data=b'{"a":1}')
    assert response.status == 200
    assert upstream.last().method == method


async def test_head_keeps_headers_and_sends_no_body(
    proxy: ProxyClient, upstream: FakeUpstream
) -> None:
    async def sized(request: web.Request, received: Received) -> web.StreamResponse:
        return web.Response(body=b"0123456789", content_type="text/plain")

    upstream.respond = sized
    response = await proxy.head("/graphql/v1")
    assert response.status == 200
    assert response.headers["Content-Length"] == "10"
    assert await response.read() == b""
    assert upstream.last().method == "HEAD"


@pytest.mark.parametrize(
    "target",
    [
        "/a//b/../c/./d?x=%20&y=..",
        "/caf%C3%A9/%E2%9C%93?name=%C3%BC%2F&empty=&=&&flag",
        "/graphql/v1/%2e%2e/%2F%2f?q=a+b%2Bc",
        "//double/leading",
    ],
)
async def test_path_and_query_reach_upstream_byte_for_byte(
    proxy: ProxyClient, upstream: FakeUpstream, target: str
) -> None:
    async with proxy.get(target) as response:
        assert response.status == 200
    assert upstream.last().raw_path == target


# A fragment ("/a?b=1#frag") was dropped and the rest forwarded: it is now refused with 400
# (test_hostile.py), as a request target carries none.
@pytest.mark.parametrize(("sent", "forwarded"), [("/trailing/?", "/trailing/")])
async def test_what_is_signed_is_what_is_sent(
    proxy: ProxyClient, upstream: FakeUpstream, sent: str, forwarded: str
) -> None:
    # Written on a raw socket: client libraries would drop these parts before sending.
    reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
    writer.write(f"GET {sent} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    status_line = await reader.readline()
    writer.close()
    assert b" 200 " in status_line
    assert upstream.last().raw_path == forwarded


async def test_upstream_path_prefix_is_sent_and_signed(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    client = await make_proxy(upstream=upstream.url + "/remoteit/")
    response = await client.post("/graphql/v1?x=1", data=b"{}")
    assert response.status == 200
    assert upstream.last().raw_path == "/remoteit/graphql/v1?x=1"


async def test_date_comes_from_the_clock(make_proxy: ProxyFactory, upstream: FakeUpstream) -> None:
    upstream.clock = lambda: 1_796_023_164.0
    client = await make_proxy(clock=lambda: 1_796_023_164.5)
    response = await client.get("/graphql/v1")
    assert response.status == 200
    assert upstream.last().header("Date") == "Mon, 30 Nov 2026 07:19:24 GMT"


async def test_client_authorization_date_and_host_are_replaced(
    proxy: ProxyClient, upstream: FakeUpstream
) -> None:
    response = await proxy.get(
        "/graphql/v1",
        headers={
            "Authorization": "Bearer client-token",
            "Date": "Thu, 01 Jan 1970 00:00:00 GMT",
            "Host": "evil.example",
        },
    )
    assert response.status == 200
    received = upstream.last()
    assert received.header(
        "Authorization",
    ).startswith("Signature ")  # type: ignore[union-attr]
    assert received.header("Date") != "Thu, 01 Jan 1970 00:00:00 GMT"
    assert received.header("Host") == URL(upstream.url).raw_authority
    assert "client-token" not in repr(received.headers)


async def test_hop_by_hop_request_headers_are_removed(
    proxy: ProxyClient, upstream: FakeUpstream
) -> None:
    response = await proxy.get(
        "/graphql/v1",
        headers={
            "Connection": "keep-alive, X-Private-Hop",
            "X-Private-Hop": "1",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Trailer": "X-Checksum",
            "Proxy-Authorization": "Basic abc",
            "Proxy-Connection": "keep-alive",
            "X-End-To-End": "kept",
        },
    )
    assert response.status == 200
    names = {name.lower() for name, _ in upstream.last().headers}
    for hop in (
        "connection",
        "x-private-hop",
        "keep-alive",
        "te",
        "trailer",
        "proxy-authorization",
        "proxy-connection",
    ):
        assert hop not in names
    assert upstream.last().header("X-End-To-End") == "kept"


async def test_request_headers_pass_through_with_repeats(
    proxy: ProxyClient, upstream: FakeUpstream
) -> None:
    headers = [
        ("X-Trace", "one"),
        ("X-Trace", "two"),
        ("User-Agent", "curl/8.5.0"),
        ("Accept", "*/*"),
    ]
    response = await proxy.get(
        "/graphql/v1", headers=headers, skip_auto_headers=["Accept-Encoding"]
    )
    assert response.status == 200
    received = upstream.last().headers
    assert [v for k, v in received if k == "X-Trace"] == ["one", "two"]
    assert ("User-Agent", "curl/8.5.0") in received
    # Nothing the client did not send is invented (no Accept-Encoding from the client library).
    assert "accept-encoding" not in {k.lower() for k, _ in received}


async def test_response_status_headers_and_body_come_back_unchanged(
    proxy: ProxyClient, upstream: FakeUpstream
) -> None:
    body = b'{"status":"false","reason":"[0102] nope"}'

    async def custom(request: web.Request, received: Received) -> web.StreamResponse:
        response = web.Response(status=418, reason="I'm a teapot", body=body)
        response.headers["Content-Type"] = "application/json"
        response.headers.add("Set-Cookie", "a=1")
        response.headers.add("Set-Cookie", "b=2")
        response.headers["X-Upstream"] = "yes"
        response.headers["Keep-Alive"] = "timeout=5"
        return response

    upstream.respond = custom
    response = await proxy.get("/apv/v27/user/login")
    assert response.status == 418
    assert response.reason == "I'm a teapot"
    assert await response.read() == body
    assert response.headers.getall("Set-Cookie") == ["a=1", "b=2"]
    assert response.headers["X-Upstream"] == "yes"
    assert "Keep-Alive" not in response.headers


async def test_content_encoding_is_passed_through_compressed(
    proxy: ProxyClient, upstream: FakeUpstream
) -> None:
    compressed = gzip.compress(b'{"data":{"login":{"email":"a@example.com"}}}')

    async def gzipped(request: web.Request, received: Received) -> web.StreamResponse:
        return web.Response(
            body=compressed,
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )

    upstream.respond = gzipped
    response = await proxy.post("/graphql/v1", data=b"{}", headers={"Accept-Encoding": "gzip"})
    assert response.headers["Content-Encoding"] == "gzip"
    assert await response.read() == compressed
    assert upstream.last().header("Accept-Encoding") == "gzip"


async def test_redirects_are_returned_not_followed(
    proxy: ProxyClient, upstream: FakeUpstream
) -> None:
    async def redirect(request: web.Request, received: Received) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": "https://elsewhere.example/x"})

    upstream.respond = redirect
    response = await proxy.get("/graphql/v1", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "https://elsewhere.example/x"
    assert len(upstream.received) == 1


async def test_upstream_refusal_is_passed_through(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    upstream.keys = {KEY_ID: b"another secret"}  # the API would answer 401 to a wrong key
    client = await make_proxy()
    response = await client.post("/graphql/v1", data=b"{}")
    assert response.status == 401
    assert await response.json() == {"message": "Unauthorized"}


async def test_developer_key_is_sent_on_every_request_and_replaces_the_clients(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    client = await make_proxy(environ={"R3_DEVELOPER_API_KEY": DEVELOPER_KEY})
    for method in ("GET", "POST"):
        response = await client.request(
            method, "/apv/v27/device/list/all", headers={"developerkey": "client-value"}
        )
        assert response.status == 200
        assert upstream.last().header("DeveloperKey") == DEVELOPER_KEY


async def test_no_developer_key_header_without_a_developer_key(
    proxy: ProxyClient, upstream: FakeUpstream
) -> None:
    assert (await proxy.get("/graphql/v1")).status == 200
    assert upstream.last().header("DeveloperKey") is None


async def test_upstream_connections_are_reused(proxy: ProxyClient, upstream: FakeUpstream) -> None:
    for _ in range(5):
        response = await proxy.post("/graphql/v1", data=b"{}")
        assert response.status == 200
        await response.read()
    assert len({r.peer_port for r in upstream.received}) == 1


async def chunks(data: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_large_upload_streams_through(
    proxy: ProxyClient, upstream: FakeUpstream, chunked: bool
) -> None:
    data = pattern(48 * MIB + 7)
    payload = chunks(data) if chunked else data
    response = await proxy.post("/graphql/v1/file/upload", data=payload)
    assert response.status == 200
    body = await response.json()
    assert body == {
        "method": "POST",
        "path": "/graphql/v1/file/upload",
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_large_download_streams_through(
    proxy: ProxyClient, upstream: FakeUpstream, chunked: bool
) -> None:
    data = pattern(48 * MIB + 5)

    async def download(request: web.Request, received: Received) -> web.StreamResponse:
        response = web.StreamResponse()
        if chunked:
            response.enable_chunked_encoding()
        else:
            response.content_length = len(data)
        await response.prepare(request)
        async for chunk in chunks(data):
            await response.write(chunk)
        return response

    upstream.respond = download
    response = await proxy.get("/download")
    assert response.status == 200
    digest, size = hashlib.sha256(), 0
    async for chunk in response.content.iter_any():
        digest.update(chunk)
        size += len(chunk)
    assert size == len(data)
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_upstream_is_502_json(make_proxy: ProxyFactory) -> None:
    client = await make_proxy(upstream=f"http://127.0.0.1:{closed_port()}")
    response = await client.get("/graphql/v1")
    assert response.status == 502
    body = await response.json()
    assert body["error"]["code"] == "upstream_unreachable"
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}


async def test_slow_upstream_is_504_json(make_proxy: ProxyFactory, upstream: FakeUpstream) -> None:
    async def slow(request: web.Request, received: Received) -> web.StreamResponse:
        await asyncio.sleep(2)
        return web.Response()

    upstream.respond = slow
    client = await make_proxy(read_timeout="0.2")
    response = await client.get("/graphql/v1")
    assert response.status == 504
    assert (await response.json())["error"]["code"] == "upstream_timeout"


async def garbage_server(reply: bytes) -> tuple[asyncio.Server, int]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_upstream_answering_garbage_is_502_json(make_proxy: ProxyFactory) -> None:
    server, port = await garbage_server(b"\x16\x03\x01 this is not HTTP\r\n\r\n")
    async with server:
        client = await make_proxy(upstream=f"http://127.0.0.1:{port}")
        response = await client.get("/graphql/v1")
        assert response.status == 502
        assert (await response.json())["error"]["code"] == "upstream_error"


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"a" * 100,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n" + b"a" * 100 + b"\r\n",
    ],
    ids=["content-length", "chunked"],
)
async def test_upstream_cut_mid_body_aborts_the_client_connection(
    make_proxy: ProxyFactory, head: bytes
) -> None:
    server, port = await garbage_server(head)
    async with server:
        client = await make_proxy(upstream=f"http://127.0.0.1:{port}")
        response = await client.get("/graphql/v1")
        assert response.status == 200
        # Never a clean end of body: the client must see that the answer is incomplete.
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
