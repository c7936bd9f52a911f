"""aiohttp's server as the proxy needs it: JSON errors, no added fields, limits, shutdown."""

from __future__ import annotations

import asyncio
import logging
import traceback
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

from aiohttp import http_exceptions, web
from aiohttp.web_protocol import RequestHandler

from .deadlines import WatchedHandler
from .endpoints import is_endpoint
from .limits import Limits
from .responses import drop_added_fields, error_response
from .websocket import ClientBytes

if TYPE_CHECKING:
    from .state import ProxyState

log = logging.getLogger("proxy.protocol")  # the name log lines have always had
# An open WebSocket is ended at the shutdown deadline with a close 1001 each way: its
# connection is cut only this much later, so that the close frames can go out.
CLOSING_GRACE = 0.5


def _cut_answer() -> bytes:
    """The whole answer to a request cut at the shutdown deadline before its answer began,
    written past aiohttp (its handler is being cancelled); the access line has the same code."""
    response = error_response(
        503,
        "shutdown_deadline",
        "the proxy stopped before the answer came (--shutdown-timeout): the request may have "
        "reached the API; retry it only if it is safe to repeat",
    )
    body = response.text.encode() if response.text is not None else b""
    head = (
        f"HTTP/1.1 {response.status} {response.reason}\r\n"
        f"Content-Type: {response.headers['Content-Type']}\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Date: {formatdate(usegmt=True)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


class JSONErrorHandler(WatchedHandler):
    """aiohttp's connection handler, answering its own errors (bad requests) as short JSON.

    The default text answer and log line quote the offending bytes, which may hold a token.
    At shutdown, a request still being handled at the deadline is cut (see :meth:`shutdown`).
    """

    __slots__ = ("_state", "_cut_timer")

    def __init__(self, manager: Any, *, state: ProxyState, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._state = state
        self._cut_timer: asyncio.TimerHandle | None = None

    async def shutdown(self, timeout: float | None = 15.0) -> None:
        # aiohttp waits ``timeout`` for the request in progress, then as long again for its
        # handler once it has cancelled it: cut at the deadline, stopping takes it once.
        deadline = self._state.drain_deadline
        if deadline is not None:
            self._cut_timer = self._loop.call_at(deadline, self._cut, False)
        try:
            await super().shutdown(timeout)
        finally:
            if self._cut_timer is not None:
                self._cut_timer.cancel()
                self._cut_timer = None

    def _cut(self, final: bool) -> None:
        """The shutdown deadline: the request in progress is cancelled. Its client is answered
        503 if nothing of the answer was sent, else the connection is aborted (a truncated
        answer must not look whole)."""
        self._cut_timer = None
        loop, deadline = self._loop, self._state.drain_deadline
        if deadline is not None and loop.time() < deadline:
            # A timer may fire a hair early; the access line tells a cut request by the
            # deadline having passed.
            self._cut_timer = loop.call_at(deadline, self._cut, final)
            return
        task = self._task_handler
        if not self._request_in_progress or task is None or task.done():
            return
        if not final and isinstance(self._payload_parser, ClientBytes):  # an open WebSocket
            self._cut_timer = loop.call_later(CLOSING_GRACE, self._cut, True)
            return
        # None once the handler has returned and its answer is being written.
        request = self._current_request
        transport = self.transport
        if transport is not None:
            if request is None or request.writer.output_size:
                transport.abort()
            else:
                transport.write(_cut_answer())
        task.cancel()

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if isinstance(exc, http_exceptions.LineTooLong):
            status, code, text = 431, "header_too_large", "a request line or header is too long"
        elif isinstance(exc, http_exceptions.BadHttpMethod):
            code, text = "bad_method", "the request method is not a valid HTTP token"
        elif status == 400:
            code, text = "bad_request", "the request is not valid HTTP/1.1"
        else:
            code, text = "internal_error", "the proxy failed to handle the request"
        if status >= 500 and exc is not None:
            # The stack only: exception messages from libraries may quote header values.
            stack = "".join(traceback.format_tb(exc.__traceback__))
            log.error("internal error (%s):\n%s", type(exc).__name__, stack)
        else:
            log.info("bad request from %s: %s", request.remote, code)
        if request.writer.output_size > 0:
            raise ConnectionError("the response was already started")
        response = error_response(status, code, text)
        response.force_close()
        return response

    def data_received(self, data: bytes) -> None:
        parser = self._payload_parser
        if data and isinstance(parser, ClientBytes):
            # An open WebSocket's bytes. aiohttp drops what arrives once it begins to shut
            # down; a socket is relayed both ways until it is closed (at the deadline, 1001).
            parser.feed_data(data)
            return
        super().data_received(data)


class ProxyRequest(web.BaseRequest):
    async def _prepare_hook(self, response: web.StreamResponse) -> None:
        # aiohttp's hook between filling in the answer's head and writing it.
        drop_added_fields(response)


class ProxyServer(web.Server):
    """aiohttp's server with the proxy's handler, its limits, a reserve for /-/ requests, and
    the shutdown deadline for its connections."""

    def __init__(self, handler: Any, *, state: ProxyState, limits: Limits, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.state = state
        self.limits = limits

    def __call__(self) -> RequestHandler:
        return JSONErrorHandler(
            self, state=self.state, limits=self.limits, loop=self._loop, **self._kwargs
        )

    def connection_made(self, handler: RequestHandler, transport: Any) -> None:
        super().connection_made(handler, transport)
        assert isinstance(handler, WatchedHandler)
        if self.limits.opened(handler):
            # Over the cap: this connection's request is looked at before it is handled.
            handler._request_handler = self._reserved

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        super().connection_lost(handler, exc)
        assert isinstance(handler, WatchedHandler)
        self.limits.closed(handler)

    def _make_request(
        self, message: Any, payload: Any, protocol: Any, writer: Any, task: Any
    ) -> web.BaseRequest:
        protocol.request_started(payload)
        return ProxyRequest(message, payload, protocol, writer, task, self._loop)

    async def _reserved(self, request: web.BaseRequest) -> web.StreamResponse:
        """A request on a connection over the cap: the proxy's own endpoints are answered (the
        health check an operator needs most then), others refused; either way it is closed."""
        protocol = request.protocol
        assert isinstance(protocol, WatchedHandler)
        self.limits.reserve.pop(protocol, None)  # being answered: no longer the oldest to close
        if is_endpoint(request.raw_path):
            response = await self.request_handler(request)
        else:
            self.limits.refused()
            response = error_response(
                503,
                "too_many_connections",
                f"the proxy already has {self.limits.max_connections} client connections "
                "open, the most --max-connections allows; retry later",
            )
            response.headers["Retry-After"] = "1"
        response.force_close()
        return response
