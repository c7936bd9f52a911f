"""WebSocket pass-through: the upgrade's checks, then after a 101 bytes relayed both ways."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from aiohttp.streams import StreamReader

from ..errors import UpstreamError
from .headers import REQUEST_ID, connection_tokens, drop_hop_by_hop
from .responses import ADDED_WHEN_MISSING, Relayed, error_response
from .wsframes import GOING_AWAY, FrameCursor, close_frame

if TYPE_CHECKING:
    from ..client import Answer, Tunnel
    from .state import Exchange, ProxyState

log = logging.getLogger("proxy.websocket")  # the name log lines have always had

WEBSOCKET = "websocket"
# The one hop-by-hop pair forwarded (RFC 9110 7.8): the upgrade asked of the upstream itself.
UPGRADE_LINES = (b"Connection: Upgrade", b"Upgrade: websocket")
# What the client sends waits in a buffer of this size; reading from it pauses at twice that.
CLIENT_BUFFER = 64 * 1024


def upgrade_asked(request: web.BaseRequest) -> str | None:
    """The protocol the request asks to switch to (an Upgrade field that Connection names,
    RFC 9110 section 7.8), or None. Upgrade alone is a hop-by-hop field, dropped as ever."""
    headers = request.headers
    if "Upgrade" not in headers or "upgrade" not in connection_tokens(headers):
        return None
    return ",".join(headers.getall("Upgrade")).strip()


def refuse_upgrade(
    request: web.BaseRequest, state: ProxyState, protocol: str
) -> web.Response | None:
    """The answer refusing an upgrade that cannot be relayed, or None to forward it."""
    if protocol.lower() != WEBSOCKET:
        return error_response(
            400,
            "upgrade_unsupported",
            f"Upgrade: {protocol[:40]} is not relayed: only websocket is (RFC 6455); send the "
            "request without Upgrade",
        )
    if request.method != "GET" or request.version < aiohttp.HttpVersion11 or request.body_exists:
        return error_response(
            400,
            "bad_upgrade",
            "a WebSocket upgrade is a GET over HTTP/1.1, without a body (RFC 6455 4.1)",
        )
    if state.draining:
        return error_response(503, "shutting_down", "the proxy is shutting down")
    return None


class ClientBytes:
    """What the client sends after the 101, handed over by aiohttp's connection handler (as
    its WebSocket reader is); reading from the client pauses while the buffer is full."""

    def __init__(self, protocol: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.stream = StreamReader(protocol, CLIENT_BUFFER, loop=loop)

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.stream.feed_data(data)
        return False, b""

    def feed_eof(self) -> None:
        self.stream.feed_eof()


class Relay:
    """One open WebSocket: the bytes of each direction copied as they come, never changed."""

    def __init__(
        self, response: web.StreamResponse, transport: Any, tunnel: Tunnel, idle: float | None
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._response, self._client, self._tunnel, self._idle = response, transport, tunnel, idle
        self._stop: asyncio.Future[str] = self._loop.create_future()
        self._up, self._down = FrameCursor(), FrameCursor()
        self.bytes_in = self.bytes_out = 0
        self._last = self._loop.time()

    def going_away(self, why: str = "shutdown") -> None:
        """End it with a close frame 1001 each way (where one fits between two frames)."""
        if not self._stop.done():
            self._stop.set_result(why)

    async def _upward(self, client: StreamReader) -> None:
        tunnel = self._tunnel
        while data := await client.readany():
            self.bytes_in += len(data)
            self._last = self._loop.time()
            self._up.feed(data)
            tunnel.write(data)
            await tunnel.drain()  # back-pressure: the client waits while the upstream is slow

    async def _downward(self) -> None:
        response = self._response
        while data := await self._tunnel.read():
            self.bytes_out += len(data)
            self._last = self._loop.time()
            self._down.feed(data)
            await response.write(data)  # waits while the client is slow

    async def _quiet(self, limit: float) -> None:
        while (left := self._last + limit - self._loop.time()) > 0:
            await asyncio.sleep(left)

    async def run(self, client: StreamReader) -> str:
        """Relay until one side closes (or the proxy ends it); return who ended it."""
        up = asyncio.ensure_future(self._upward(client))
        down = asyncio.ensure_future(self._downward())
        waits: set[asyncio.Future[Any]] = {up, down, self._stop}
        if self._idle is not None:
            waits.add(asyncio.ensure_future(self._quiet(self._idle)))
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if self._stop in done:
                ended = self._stop.result()
            elif up in done or down in done:
                finished = up if up in done else down
                error = finished.exception()
                if error is None:
                    ended = f"{'the client' if finished is up else 'the upstream'} closed"
                else:  # a failed write is the receiving side's doing, not the sender's
                    upstream = isinstance(error, UpstreamError)
                    ended = f"{'the upstream' if upstream else 'the client'} broke off"
            else:
                ended = "idle timeout"
            if ended in ("shutdown", "idle timeout"):
                self._close_frames()
            return ended
        finally:
            # Closed after what was written to it; the client's side is closed by aiohttp once
            # the handler returns (the answer does not keep alive).
            self._tunnel.close()
            for task in waits:
                if task is not self._stop:
                    task.cancel()
            await asyncio.gather(*(t for t in waits if t is not self._stop), return_exceptions=True)

    def _close_frames(self) -> None:
        client = self._client
        if self._down.at_boundary and client is not None and not client.is_closing():
            with contextlib.suppress(RuntimeError, ConnectionError):  # it left this very moment
                client.write(close_frame(GOING_AWAY))
        if self._up.at_boundary and not self._tunnel.closed:
            with contextlib.suppress(UpstreamError, ConnectionError):
                # Frames to a server are masked with a key it cannot predict (RFC 6455 5.3).
                self._tunnel.write(close_frame(GOING_AWAY, os.urandom(4)))


async def switch(
    request: web.Request, state: ProxyState, exchange: Exchange, answer: Answer, switched: str
) -> web.StreamResponse | None:
    """The upstream answered 101: pass it on, then relay until either side closes. None when
    the upstream switched to another protocol than the one asked (the caller answers 502)."""
    if switched.strip().lower() != WEBSOCKET:
        answer.discard()
        return None
    head = answer.head
    headers = head.headers
    drop_hop_by_hop(headers)
    headers["Upgrade"], headers["Connection"] = WEBSOCKET, "Upgrade"
    headers[REQUEST_ID] = exchange.request_id
    response = Relayed(status=101, reason=head.reason, headers=headers)
    response.unsent = tuple(name for name in ADDED_WHEN_MISSING if name not in headers)
    response.force_close()  # the connection is the socket's now: never another request
    tunnel = answer.tunnel()
    relay = Relay(response, request.transport, tunnel, state.settings.websocket_idle_timeout)
    try:
        await response.prepare(request)
    except ConnectionError:
        tunnel.close()
        raise
    client = ClientBytes(request.protocol, asyncio.get_running_loop())
    request.protocol.set_parser(client)  # type: ignore[arg-type]  # any feed_data/feed_eof
    state.tunnels.add(relay)
    if state.drain_deadline is not None:  # opened while the proxy stops: it ends on time too
        asyncio.get_running_loop().call_at(state.drain_deadline, relay.going_away)
    try:
        ended = await relay.run(client.stream)
    finally:
        state.tunnels.discard(relay)
        exchange.bytes_in, exchange.bytes_out = relay.bytes_in, relay.bytes_out
    path = request.raw_path.partition("?")[0]
    log.debug("%s %s: WebSocket ended (%s)", request.method, path, ended)
    return response
