"""Edges of the upstream connection: an answer that comes and closes before the upload is read,
and idle connections closed when their keep-alive runs out, without waiting for a request."""

from __future__ import annotations

import asyncio
import gc
import random
import socket
import ssl
import struct
import time
import weakref
from pathlib import Path

import aiohttp
import pytest
import trustme
from conftest import ProxyClient, ProxyFactory

from proxy.client import Dialer, Origin, Pool
from proxy.client import pool as pool_module

# --- an early complete answer, then the connection closed -------------------------------------

ROUNDS = 30


def early_answer(status: bytes, body: bytes, chunked: bool = False) -> bytes:
    framing, payload = b"Content-Length: %d" % len(body), body
    if chunked:
        framing, payload = (
            b"Transfer-Encoding: chunked",
            b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body),
        )
    return b"HTTP/1.1 %b\r\n%b\r\nConnection: close\r\n\r\n%b" % (status, framing, payload)


def server_tls(ca: trustme.CA, scheme: str) -> ssl.SSLContext | None:
    """The upstream's TLS, its certificate issued by ``ca``, when the scheme is https."""
    if scheme != "https":
        return None
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(tls)
    return tls


async def answering_at_once(
    answer: bytes, how: str, tls: ssl.SSLContext | None = None
) -> tuple[asyncio.Server, int]:
    """An upstream that reads the request head, answers whole at once, and closes with the
    body unread: ``close`` (the kernel resets anyway, as data is left unread), ``reset``
    (SO_LINGER 0: a reset for sure), or ``late`` (closes a little later: the answer is read
    before a write fails)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        if how == "late":
            await asyncio.sleep(0.02)
        if how == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await writer.drain()
            writer.transport.abort()
        else:
            await writer.drain()
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
    return server, server.sockets[0].getsockname()[1]


async def assert_settled(client: ProxyClient, before: set[asyncio.Task[object]]) -> None:
    """Within a short while: no upstream connection held or kept, no stray tasks (the client's
    connections are closed first, so that the proxy's handlers of them end)."""
    await client.session.close()
    pool = client.service.state.pool
    assert pool is not None
    current = asyncio.current_task()
    deadline = time.monotonic() + 3
    while True:
        stray = [t for t in asyncio.all_tasks() if t not in before and t is not current]
        if not pool.in_use and not pool.idle and not stray:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"leaked: {pool.in_use} busy, {pool.idle} idle, tasks {stray}")
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("how", ["close", "reset", "late"])
@pytest.mark.parametrize(
    "answer",
    [
        early_answer(b"413 Content Too Large", b'{"error":"too large"}'),
        early_answer(b"200 OK", b"x" * 40_000),
        early_answer(b"400 Bad Request", b'{"error":"no"}', chunked=True),
    ],
    ids=["413", "200-40k", "400-chunked"],
)
@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_an_early_complete_answer_is_passed_on_when_the_upstream_closes(
    make_proxy: ProxyFactory, tls_ca: trustme.CA, ca_pem: Path, how: str, answer: bytes, scheme: str
) -> None:
    server, port = await answering_at_once(answer, how, server_tls(tls_ca, scheme))
    status = int(answer[9:12])
    body = answer.partition(b"\r\n\r\n")[2]
    if b"chunked" in answer:
        body = body.split(b"\r\n")[1]
    rng = random.Random(9112)
    async with server:
        upstream = f"{scheme}://127.0.0.1:{port}"
        client = await make_proxy(upstream=upstream, ca_bundle=str(ca_pem))
        before = set(asyncio.all_tasks())
        lost: list[str] = []
        for _ in range(ROUNDS):
            upload = bytes(rng.randint(1, 10) * 1024 * 1024)
            async with client.post("/graphql/v1/file/upload", data=upload) as response:
                got = await response.read()
                if response.status != status or got != body:
                    lost.append(f"{response.status} {got[:80]!r}")
        assert not lost, f"{len(lost)} of {ROUNDS} answers lost: {lost[:3]}"
        await assert_settled(client, before)


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_a_partial_answer_before_a_reset_is_never_passed_on_as_complete(
    make_proxy: ProxyFactory, tls_ca: trustme.CA, ca_pem: Path, scheme: str
) -> None:
    # The head promises 100,000 bytes and 10 come: the answer is not whole, so the client sees
    # a 502 or a body broken off, never a short body that looks complete.
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n"
    server, port = await answering_at_once(
        head + b"0123456789", "reset", server_tls(tls_ca, scheme)
    )
    async with server:
        upstream = f"{scheme}://127.0.0.1:{port}"
        client = await make_proxy(upstream=upstream, ca_bundle=str(ca_pem))
        before = set(asyncio.all_tasks())
        for _ in range(10):
            upload = bytes(2 * 1024 * 1024)
            try:
                async with client.post("/graphql/v1/file/upload", data=upload) as response:
                    if response.status == 200:
                        with pytest.raises(aiohttp.ClientPayloadError):
                            await response.read()
                    else:
                        assert response.status == 502
            except aiohttp.ClientError:
                pass  # the proxy broke the client's connection off: not complete either
        await assert_settled(client, before)


# --- idle connections closed when their keep-alive runs out -----------------------------------


def pool_to(port: int) -> Pool:
    """A pool of the project's client for a plain upstream on this machine's ``port``."""
    origin = Origin("http", "127.0.0.1", port, f"http://127.0.0.1:{port}", "the test upstream")
    return Pool(Dialer(origin, tls=None, proxy=None, connect_timeout=5.0, read_timeout=5.0))


async def test_an_idle_connection_is_closed_when_its_keepalive_runs_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keepalive = 0.3
    monkeypatch.setattr(pool_module, "KEEPALIVE", keepalive)
    closed: list[float] = []
    served = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        served.set()
        assert await reader.read() == b""  # nothing more: the proxy closes it, idle
        closed.append(time.monotonic())
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    pool = pool_to(server.sockets[0].getsockname()[1])
    async with server:
        try:
            async with await pool.request("GET", "/", [b"Host: upstream"], None) as answer:
                assert await answer.read() == b"ok"
                assert await answer.read() == b""
            released = time.monotonic()
            assert pool.idle == 1
            await asyncio.wait_for(served.wait(), 1)
            deadline = released + keepalive + 0.5
            while not closed and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert closed, "the idle connection outlived its keep-alive"
            assert keepalive - 0.05 <= closed[0] - released <= keepalive + 0.5
            assert pool.idle == 0
            # The pool still works: a new connection for the next request.
            async with await pool.request("GET", "/", [b"Host: upstream"], None) as answer:
                assert answer.head.status == 200
        finally:
            pool.close()


async def test_a_closed_pool_leaves_no_timer_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool_module, "KEEPALIVE", 30.0)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()
        await reader.read()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    pool = pool_to(server.sockets[0].getsockname()[1])
    async with server:
        async with await pool.request("GET", "/", [b"Host: upstream"], None):
            pass
        assert pool.idle == 1
        pool.close()
        assert pool.idle == 0
        # Nothing holds the pool any more: a sweep still due in 30 s would.
        gone = weakref.ref(pool)
        del pool
        gc.collect()
        assert gone() is None
