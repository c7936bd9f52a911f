"""Faults and edges: TLS, the outbound proxy, timeouts, broken transfers, shutdown and load.

Everything runs on loopback: fake upstreams (plain and TLS, with a throwaway CA from trustme),
a fake forward proxy and CONNECT tunnel, raw sockets that break mid-request, and the real
command in a subprocess for the signal tests.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import aiohttp
import pytest
import trustme
from aiohttp import web
from aiohttp.test_utils import RawTestServer, TestServer
from conftest import KEY_ID, SECRET, ProxyClient, ProxyFactory, start_https_upstream
from fake_upstream import FakeUpstream, Received, check_signature, pattern
from multidict import CIMultiDict
from yarl import URL

from proxy.config.addresses import parse_upstream
from proxy.errors import ConfigError
from proxy.serve.pools import outbound_proxy
from proxy.serve.server import ProxyService

ServerFactory = Callable[..., Awaitable[TestServer]]
RawServerFactory = Callable[..., Awaitable[RawTestServer]]
KEYS = {KEY_ID: SECRET}
T = TypeVar("T")


async def error_code(response: aiohttp.ClientResponse) -> str:
    body = await response.json()
    return str(body["error"]["code"])


# --- 1. TLS to the upstream --------------------------------------------------------------------


async def test_tls_upstream_verified_with_ca_bundle(
    make_proxy: ProxyFactory, https_upstream: FakeUpstream, ca_pem: Path
) -> None:
    client = await make_proxy(upstream=https_upstream.url, ca_bundle=str(ca_pem))
    async with client.get("/apv/v27/device/list/all?size=5") as response:
        assert response.status == 200
        assert (await response.json())["path"] == "/apv/v27/device/list/all?size=5"
    received = https_upstream.last()
    assert received.header("Host") == URL(https_upstream.url).raw_authority


async def test_tls_upstream_with_unknown_ca_is_502_tls_error(
    make_proxy: ProxyFactory, https_upstream: FakeUpstream
) -> None:
    client = await make_proxy(upstream=https_upstream.url)
    async with client.get("/graphql/v1") as response:
        assert response.status == 502
        assert await error_code(response) == "upstream_tls_error"
    assert https_upstream.received == []


async def test_tls_certificate_for_another_name_is_refused_even_from_a_trusted_ca(
    make_proxy: ProxyFactory, aiohttp_server: ServerFactory, tls_ca: trustme.CA, ca_pem: Path
) -> None:
    elsewhere = await start_https_upstream(aiohttp_server, tls_ca, "api.example.org")
    client = await make_proxy(upstream=elsewhere.url, ca_bundle=str(ca_pem))
    async with client.get("/graphql/v1") as response:
        assert response.status == 502
        assert await error_code(response) == "upstream_tls_error"
    assert elsewhere.received == []


async def test_insecure_skip_verify_connects_and_warns(
    make_proxy: ProxyFactory, https_upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="proxy")
    client = await make_proxy(upstream=https_upstream.url, insecure_skip_verify="true")
    async with client.get("/graphql/v1") as response:
        assert response.status == 200
    https_upstream.last()
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and r.name.startswith("proxy")
    ]
    assert any("insecure" in r.getMessage().lower() for r in warnings), warnings


@pytest.mark.parametrize("kind", ["missing", "not-pem", "empty"])
async def test_bad_ca_bundle_is_a_config_error_naming_the_path(
    make_proxy: ProxyFactory, https_upstream: FakeUpstream, tmp_path: Path, kind: str
) -> None:
    path = tmp_path / f"{kind}-bundle.pem"
    if kind == "not-pem":
        path.write_bytes(b"-----BEGIN NONSENSE-----\n\x00\x01garbage\n")
    elif kind == "empty":
        path.write_bytes(b"")
    with pytest.raises(ConfigError) as info:
        await make_proxy(upstream=https_upstream.url, ca_bundle=str(path))
    assert str(path) in str(info.value)


@dataclass
class Tunnel:
    """A CONNECT-only forward proxy that splices bytes and records the CONNECT lines."""

    target: tuple[str, int] | None = None
    connects: list[str] = field(default_factory=list)


async def start_tunnel(tunnel: Tunnel) -> asyncio.Server:
    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        request_line = head.split("\r\n", 1)[0]
        tunnel.connects.append(request_line)
        host, _, port = request_line.split(" ")[1].rpartition(":")
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    return await asyncio.start_server(serve, "127.0.0.1", 0)


@pytest.mark.parametrize("trusted", [True, False], ids=["ca-bundle", "no-ca-bundle"])
async def test_https_proxy_tunnels_and_still_verifies_the_upstream(
    make_proxy: ProxyFactory, https_upstream: FakeUpstream, ca_pem: Path, trusted: bool
) -> None:
    tunnel = Tunnel()
    server = await start_tunnel(tunnel)
    async with server:
        port = server.sockets[0].getsockname()[1]
        settings = {"ca_bundle": str(ca_pem)} if trusted else {}
        client = await make_proxy(
            environ={"HTTPS_PROXY": f"http://127.0.0.1:{port}"},
            upstream=https_upstream.url,
            **settings,
        )
        async with client.get("/graphql/v1?x=1") as response:
            if trusted:
                assert response.status == 200
            else:
                assert response.status == 502
                assert await error_code(response) == "upstream_tls_error"
        await client.session.close()
        await client.service.stop()
    authority = URL(https_upstream.url).raw_authority
    assert tunnel.connects and tunnel.connects[0] == f"CONNECT {authority} HTTP/1.1"
    if trusted:
        assert https_upstream.last().raw_path == "/graphql/v1?x=1"
    else:
        assert https_upstream.received == []


# --- 2. The outbound proxy (HTTP_PROXY / NO_PROXY) ---------------------------------------------


@dataclass
class ProxySeen:
    method: str
    raw_path: str
    headers: CIMultiDict[str]


@dataclass
class FakeForwardProxy:
    url: str = ""
    seen: list[ProxySeen] = field(default_factory=list)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        await request.read()
        self.seen.append(ProxySeen(request.method, request.raw_path, CIMultiDict(request.headers)))
        return web.json_response({"via": "forward-proxy"})


@pytest.fixture
async def forward_proxy(aiohttp_raw_server: RawServerFactory) -> FakeForwardProxy:
    fake = FakeForwardProxy()
    server = await aiohttp_raw_server(fake.handle)
    fake.url = f"http://127.0.0.1:{server.port}"
    return fake


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy"])
async def test_http_proxy_gets_the_absolute_url_and_a_valid_signature(
    make_proxy: ProxyFactory,
    upstream: FakeUpstream,
    forward_proxy: FakeForwardProxy,
    variable: str,
) -> None:
    client = await make_proxy(environ={variable: forward_proxy.url})
    target = "/apv/v27/device/list/all?size=50&q=a%20b"
    async with client.get(target) as response:
        assert response.status == 200
        assert await response.json() == {"via": "forward-proxy"}
    assert upstream.received == [], "the request went around the outbound proxy"
    assert len(forward_proxy.seen) == 1
    seen = forward_proxy.seen[0]
    assert seen.raw_path == upstream.url + target
    assert seen.headers["Host"] == URL(upstream.url).raw_authority
    assert check_signature("GET", target, seen.headers, KEYS) == ""
    assert "Proxy-Authorization" not in seen.headers


async def test_http_proxy_credentials_become_proxy_authorization_not_authorization(
    make_proxy: ProxyFactory, upstream: FakeUpstream, forward_proxy: FakeForwardProxy
) -> None:
    with_user = URL(forward_proxy.url).with_user("corp user").with_password("p@ss:word")
    client = await make_proxy(environ={"HTTP_PROXY": str(with_user)})
    async with client.post("/graphql/v1", data=b"{}") as response:
        assert response.status == 200
    seen = forward_proxy.seen[-1]
    expected = base64.b64encode(b"corp user:p@ss:word").decode()
    assert seen.headers.getall("Proxy-Authorization") == [f"Basic {expected}"]
    assert check_signature("POST", "/graphql/v1", seen.headers, KEYS) == ""


@pytest.mark.parametrize(
    "environ",
    [
        {"NO_PROXY": "127.0.0.1"},
        {"NO_PROXY": "localhost, 127.0.0.1"},
        {"NO_PROXY": "127.0.0.0/8"},
        {"NO_PROXY": "*"},
        {"no_proxy": "example.com,127.0.0.1"},
    ],
    ids=["ip", "list", "cidr", "star", "lower-case"],
)
async def test_no_proxy_sends_straight_to_the_upstream(
    make_proxy: ProxyFactory,
    upstream: FakeUpstream,
    forward_proxy: FakeForwardProxy,
    environ: dict[str, str],
) -> None:
    client = await make_proxy(environ={"HTTP_PROXY": forward_proxy.url, **environ})
    async with client.get("/graphql/v1") as response:
        assert response.status == 200
    assert forward_proxy.seen == []
    upstream.last()


async def test_no_proxy_for_other_hosts_still_uses_the_proxy(
    make_proxy: ProxyFactory, upstream: FakeUpstream, forward_proxy: FakeForwardProxy
) -> None:
    environ = {"HTTP_PROXY": forward_proxy.url, "NO_PROXY": "example.com,10.0.0.0/8,127.0.0.2"}
    client = await make_proxy(environ=environ)
    async with client.get("/graphql/v1") as response:
        assert response.status == 200
    assert len(forward_proxy.seen) == 1 and upstream.received == []


async def test_https_proxy_is_not_used_for_an_http_upstream(
    make_proxy: ProxyFactory, upstream: FakeUpstream, forward_proxy: FakeForwardProxy
) -> None:
    client = await make_proxy(environ={"HTTPS_PROXY": forward_proxy.url})
    async with client.get("/graphql/v1") as response:
        assert response.status == 200
    assert forward_proxy.seen == []
    upstream.last()


# --- 3. Timeouts -------------------------------------------------------------------------------


async def test_connect_timeout_is_504(make_proxy: ProxyFactory) -> None:
    loop = asyncio.get_running_loop()
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        # Fill the accept queue (never accepted): further SYNs are dropped, connects hang.
        for _ in range(8):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(address)
            fillers.append(filler)
        probe = socket.socket()
        probe.setblocking(False)
        fillers.append(probe)
        try:
            await asyncio.wait_for(loop.sock_connect(probe, address), 0.3)
        except asyncio.TimeoutError:
            pass
        else:
            pytest.skip("this kernel completes connects to a full backlog; cannot make one hang")

        client = await make_proxy(
            upstream=f"http://127.0.0.1:{address[1]}", connect_timeout="0.3", read_timeout="30"
        )
        started = time.monotonic()
        response = await asyncio.wait_for(client.get("/graphql/v1"), 5)
        elapsed = time.monotonic() - started
        assert response.status == 504
        assert await error_code(response) == "upstream_timeout"
        assert elapsed < 3, f"the connect timeout did not apply ({elapsed:.1f}s)"
    finally:
        for sock in fillers:
            sock.close()
        listener.close()


async def test_a_slow_but_moving_download_is_not_cut(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    pieces = [pattern(10_000 + i) for i in range(8)]

    async def trickle(request: web.Request, received: Received) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for piece in pieces:
            await response.write(piece)
            await asyncio.sleep(0.2)
        return response

    upstream.respond = trickle
    client = await make_proxy(read_timeout="0.5")
    started = time.monotonic()
    first_at: float | None = None
    data = b""
    async with client.get("/download") as response:
        assert response.status == 200
        async for chunk in response.content.iter_any():
            if first_at is None:
                first_at = time.monotonic() - started
            data += chunk
    elapsed = time.monotonic() - started
    assert data == b"".join(pieces)
    assert elapsed >= 1.4, "the transfer should have outlasted the read timeout several times"
    assert first_at is not None and first_at < 0.8, "the body was buffered, not streamed"


async def test_a_slow_but_moving_upload_is_not_cut(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    pieces = [pattern(20_000 + i) for i in range(8)]

    async def slowly() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece
            await asyncio.sleep(0.2)

    client = await make_proxy(read_timeout="0.5")
    async with client.post("/graphql/v1/file/upload", data=slowly()) as response:
        assert response.status == 200
        body = await response.json()
    data = b"".join(pieces)
    assert body["size"] == len(data)
    assert body["sha256"] == hashlib.sha256(data).hexdigest()


# --- 4. Broken client transfers and leaks ------------------------------------------------------


@dataclass
class Outcome:
    started: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    size: int = 0
    result: str = ""


class ObservingUpstream(FakeUpstream):
    """The verifying fake, also recording how each request body read ended."""

    outcomes: list[Outcome]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        outcome = Outcome()
        self.outcomes.append(outcome)
        outcome.started.set()
        try:
            response = await super().handle(request)
        except asyncio.CancelledError:
            outcome.result = "cancelled"
            raise
        except Exception as exc:
            outcome.result = f"error {type(exc).__name__}"
            raise
        else:
            outcome.size = self.received[-1].body_size if self.received else 0
            outcome.result = "complete"
            return response
        finally:
            outcome.finished.set()


@pytest.fixture
async def observing(aiohttp_server: ServerFactory) -> ObservingUpstream:
    fake = ObservingUpstream(keys=KEYS)
    fake.outcomes = []
    server = await aiohttp_server(fake.app())
    fake.url = f"http://127.0.0.1:{server.port}"
    return fake


async def assert_settled(service: ProxyService, before: set[asyncio.Task[object]]) -> None:
    """Within a short while: no connection held by the upstream pool, no stray tasks."""
    pool = service.state.pool
    assert pool is not None
    current = asyncio.current_task()
    deadline = time.monotonic() + 3
    while True:
        acquired = pool.in_use
        stray = [t for t in asyncio.all_tasks() if t not in before and t is not current]
        if not acquired and not stray:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"leaked: {acquired} upstream connections, tasks {stray}")
        await asyncio.sleep(0.05)


PARTIAL = 100_000
HEAD = (
    "POST /graphql/v1/file/upload HTTP/1.1\r\nHost: proxy\r\n"
    "Content-Type: application/octet-stream\r\n"
)


async def vanish_mid_upload(
    client: ProxyClient, upstream: ObservingUpstream, framing: str, when: str
) -> None:
    """Send the head and part of the body on a raw socket, then close it; wait for the fallout."""
    data = pattern(PARTIAL)
    if framing == "content-length":
        raw = f"{HEAD}Content-Length: 1000000\r\n\r\n".encode() + data
    else:  # one chunk, then no terminating zero-size chunk
        raw = f"{HEAD}Transfer-Encoding: chunked\r\n\r\n{PARTIAL:x}\r\n".encode() + data + b"\r\n"
    _, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(raw)
    await writer.drain()
    if when == "mid-stream":
        await asyncio.wait_for(first_request_started(upstream), 3)
        await asyncio.sleep(0.1)  # the upstream is now waiting for the rest of the body
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    await asyncio.sleep(0.2)
    for outcome in upstream.outcomes:
        await asyncio.wait_for(outcome.finished.wait(), 3)


async def first_request_started(upstream: ObservingUpstream) -> None:
    while not upstream.outcomes:
        await asyncio.sleep(0.01)
    await upstream.outcomes[0].started.wait()


@pytest.mark.parametrize("when", ["mid-stream", "at-once"])
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_client_that_vanishes_mid_upload_never_yields_a_complete_upstream_request(
    make_proxy: ProxyFactory, observing: ObservingUpstream, framing: str, when: str
) -> None:
    client = await make_proxy(upstream=observing.url)
    before = set(asyncio.all_tasks())
    await vanish_mid_upload(client, observing, framing, when)
    if when == "mid-stream":
        assert len(observing.outcomes) == 1, "the upload never reached the upstream"
    for outcome in observing.outcomes:
        assert outcome.result != "complete", f"the upstream saw a complete body ({outcome.size})"
    assert observing.received == [], "a truncated body reached the upstream as a whole request"
    await assert_settled(client.service, before)
    pool = client.service.state.pool
    assert pool is not None
    assert not pool.idle, "the half-used upstream connection was pooled"

    # And the proxy is fine afterwards: the next request arrives whole and signed.
    async with client.post("/graphql/v1", data=b'{"after":1}') as response:
        assert response.status == 200
        assert (await response.json())["sha256"] == hashlib.sha256(b'{"after":1}').hexdigest()
    assert observing.last().body_size == len(b'{"after":1}')


@pytest.mark.parametrize("moment", ["mid-upload", "before-the-answer"])
async def test_a_client_leaving_is_not_blamed_on_the_upstream(
    make_proxy: ProxyFactory,
    observing: ObservingUpstream,
    caplog: pytest.LogCaptureFixture,
    moment: str,
) -> None:
    caplog.set_level(logging.INFO, logger="proxy")
    client = await make_proxy(upstream=observing.url)
    if moment == "mid-upload":
        await vanish_mid_upload(client, observing, "content-length", "mid-stream")
        assert observing.outcomes and observing.outcomes[0].result != "complete"
    else:
        answered = asyncio.Event()

        async def late(request: web.Request, received: Received) -> web.StreamResponse:
            await asyncio.sleep(0.3)
            answered.set()
            return web.Response(body=b"late")

        observing.respond = late
        _, writer = await asyncio.open_connection(client.host, client.port)
        writer.write(b"GET /graphql/v1 HTTP/1.1\r\nHost: proxy\r\n\r\n")
        await writer.drain()
        await asyncio.wait_for(first_request_started(observing), 3)
        writer.close()
        await asyncio.wait_for(answered.wait(), 3)
        await asyncio.sleep(0.3)
    pool = client.service.state.pool
    assert pool is not None
    assert not pool.in_use
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("proxy")]
    assert not [m for m in messages if "upstream_error" in m], messages
    assert any("client" in m.lower() for m in messages), messages


@pytest.mark.parametrize("when", ["before-the-answer", "mid-download"])
async def test_client_leaving_early_releases_the_upstream(
    make_proxy: ProxyFactory, upstream: FakeUpstream, when: str
) -> None:
    arrived, ended = asyncio.Event(), asyncio.Event()
    how: list[str] = []

    async def endless(request: web.Request, received: Received) -> web.StreamResponse:
        arrived.set()
        if when == "before-the-answer":
            await asyncio.sleep(0.5)
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        try:
            await response.prepare(request)
            for _ in range(200):  # ten seconds at most
                await response.write(b"z" * 16384)
                await asyncio.sleep(0.05)
            how.append("finished")
        except asyncio.CancelledError:
            how.append("cancelled")
            raise
        except ConnectionError as exc:
            how.append(type(exc).__name__)
        finally:
            ended.set()
        return response

    upstream.respond = endless
    client = await make_proxy()
    before = set(asyncio.all_tasks())
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(b"GET /stream HTTP/1.1\r\nHost: proxy\r\n\r\n")
    await writer.drain()
    await asyncio.wait_for(arrived.wait(), 3)
    if when == "mid-download":
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        assert head.startswith(b"HTTP/1.1 200 ")
        await asyncio.wait_for(reader.read(1), 3)
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()

    # The upstream is let go of soon: not streamed to the end for nobody.
    await asyncio.wait_for(ended.wait(), 3)
    assert how and how != ["finished"]
    await assert_settled(client.service, before)
    pool = client.service.state.pool
    assert pool is not None
    assert not pool.idle, "a connection with an unread body was pooled"


# --- 5. Graceful shutdown of the real command --------------------------------------------------

LISTENING = re.compile(r"listening on (http://\S+?),")


def command_env(home: Path) -> dict[str, str]:
    dropped = ("R3_", "REMOTEIT_PROXY_")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(dropped) and not k.lower().endswith("_proxy")
    }
    env["HOME"] = str(home)
    return env


@dataclass
class Command:
    process: asyncio.subprocess.Process
    url: str
    host: str
    port: int
    lines: list[str]


@asynccontextmanager
async def command(*args: str, home: Path) -> AsyncIterator[Command]:
    """``python -m proxy ARGS`` until it says where it listens; killed at the end if need be."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", *args, env=command_env(home), stderr=subprocess.PIPE
    )
    assert process.stderr is not None
    stderr = process.stderr
    lines: list[str] = []
    drain: asyncio.Task[None] | None = None
    try:
        while True:
            line = (await asyncio.wait_for(stderr.readline(), 15)).decode()
            assert line, f"the proxy exited before listening: {lines}"
            lines.append(line)
            if match := LISTENING.search(line):
                break

        async def read_rest() -> None:
            while line := await stderr.readline():
                lines.append(line.decode())

        drain = asyncio.create_task(read_rest())
        url = URL(match.group(1))
        yield Command(process, str(url), url.host or "", url.port or 0, lines)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        if drain is not None:
            await asyncio.wait_for(drain, 5)


@asynccontextmanager
async def background(coro: Coroutine[object, object, T]) -> AsyncIterator[asyncio.Task[T]]:
    """Run ``coro`` as a task for the duration of the block; cancel it if still running."""
    task = asyncio.create_task(coro)
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def refused_after_signal(host: str, port: int, within: float) -> bool:
    """True once a new connection is refused (tried repeatedly for ``within`` seconds)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except ConnectionRefusedError:
            return True
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        await asyncio.sleep(0.02)
    return False


async def test_sigterm_lets_the_request_in_flight_finish(
    upstream: FakeUpstream, credentials_file: Path, tmp_path: Path
) -> None:
    arrived = asyncio.Event()
    data = pattern(300_000)

    async def slow(request: web.Request, received: Received) -> web.StreamResponse:
        arrived.set()
        await asyncio.sleep(1.5)
        return web.Response(body=data, content_type="application/octet-stream")

    upstream.respond = slow
    args = ("--listen", "127.0.0.1:0", "--upstream", upstream.url)
    async with (
        command(*args, "--credentials", str(credentials_file), home=tmp_path) as proxy,
        aiohttp.ClientSession() as session,
    ):

        async def fetch() -> tuple[int, bytes]:
            async with session.get(proxy.url + "/slow") as response:
                return response.status, await response.read()

        async with background(fetch()) as in_flight:
            await asyncio.wait_for(arrived.wait(), 5)
            proxy.process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            assert await refused_after_signal(proxy.host, proxy.port, within=1.0), (
                "the proxy still accepts connections after SIGTERM"
            )
            assert not in_flight.done(), "the request in flight ended before its answer"
            status, body = await asyncio.wait_for(in_flight, 5)
        assert status == 200
        assert body == data
        assert await asyncio.wait_for(proxy.process.wait(), 5) == 0
        assert time.monotonic() - signalled < 4
    upstream.last()


# The shutdown timeout's bound on a slow request: tests/test_shutdown.py.


# --- 6. Load -----------------------------------------------------------------------------------

CONCURRENT = 200


async def test_many_slow_requests_in_parallel_and_a_fast_one_overtakes_them(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    all_arrived = asyncio.Event()
    arrivals = 0

    async def respond(request: web.Request, received: Received) -> web.StreamResponse:
        nonlocal arrivals
        if request.path == "/fast":
            return web.json_response({"fast": True})
        arrivals += 1
        if arrivals == CONCURRENT:
            all_arrived.set()
        # One second per answer, counted once every slow request is in flight at once:
        # a proxy that serialised or capped them would never get all of them here.
        await asyncio.wait_for(all_arrived.wait(), 10)
        await asyncio.sleep(1.0)
        return web.json_response({"n": request.query["n"]})

    upstream.respond = respond
    client = await make_proxy()
    finished: list[float] = []

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def slow(n: int) -> tuple[int, str]:
            async with session.get(client.url(f"/slow?n={n}")) as response:
                body = await response.json()
                finished.append(time.monotonic())
                return response.status, body["n"]

        started = time.monotonic()
        tasks = [asyncio.create_task(slow(n)) for n in range(CONCURRENT)]
        try:
            await asyncio.wait_for(all_arrived.wait(), 10)
        finally:
            if not all_arrived.is_set():
                for task in tasks:
                    task.cancel()
        async with session.get(client.url("/fast")) as response:
            assert response.status == 200
            assert await response.json() == {"fast": True}
        fast_done = time.monotonic()
        pending = sum(not t.done() for t in tasks)
        assert pending == CONCURRENT, f"{CONCURRENT - pending} slow ones finished before the fast"
        results = await asyncio.wait_for(asyncio.gather(*tasks), 15)
        elapsed = time.monotonic() - started

    assert results == [(200, str(n)) for n in range(CONCURRENT)]
    assert min(finished) > fast_done
    assert elapsed < 8, f"{CONCURRENT} one-second requests took {elapsed:.1f}s"
    pool = client.service.state.pool
    assert pool is not None
    assert not pool.in_use


@pytest.mark.parametrize(
    ("host", "no_proxy", "bypassed"),
    [
        ("api.remote.it", "remote.it", True),
        ("api.remote.it", ".remote.it", True),
        ("api.remote.it", "api.remote.it:443", True),
        ("api.remote.it", "notremote.it", False),
        ("badremote.it", "remote.it", False),
        ("127.0.0.1", "127.0.0.0/8", True),
        ("127.0.0.1", "0.1", False),  # no suffix matching on addresses, as curl
        ("10.1.2.3", "2.3", False),
        ("::1", "[::1]", True),
        ("::1", "::1", True),
        ("api.remote.it", "*", True),
    ],
)
def test_no_proxy_matching(host: str, no_proxy: str, bypassed: bool) -> None:
    upstream = parse_upstream(f"http://[{host}]" if ":" in host else f"http://{host}", "--x")
    environ = {"HTTP_PROXY": "http://127.0.0.1:3128", "NO_PROXY": no_proxy}
    assert (outbound_proxy(upstream, environ) is None) is bypassed


async def test_bad_ca_bundle_is_reported_for_an_http_upstream_too(
    make_proxy: ProxyFactory, tmp_path: Path
) -> None:
    missing = tmp_path / "missing-ca.pem"
    with pytest.raises(ConfigError, match=str(missing)):
        await make_proxy(ca_bundle=str(missing))
