"""Forwarding: send the signed request upstream, stream the answer back, map failures."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from .connection import Connection, broken
from .errors import UpstreamError
from .headers import CLIENT_CLOSED, REQUEST_ID
from .outgoing import BodyTooLarge, build_upstream_request
from .wire import Framing, FramingError

if TYPE_CHECKING:
    from .app import ProxyState
    from .clients import Client
    from .graphql_ops import Operation

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Exchange:
    """What one request's forwarding reports back for the access line and metrics."""

    request_id: str
    upstream_seconds: float | None = None
    bytes_out: int = 0
    signed_corrected: bool = False
    aborted: int | None = None  # the status to log when the answer broke off mid-body
    client: Client | None = None  # who asked (picked by the token)
    body: bytes | None = None  # the body, when the policy had to read it whole
    operations: tuple[Operation, ...] | None = None  # GraphQL operations, when the policy looked
    rule: str | None = None  # the policy rule that refused the request

    @property
    def client_label(self) -> str:
        return self.client.label if self.client is not None else "-"


class ErrorResponse(web.Response):
    """The proxy's own error answer; ``code`` tells it apart from the API's in the access line."""

    def __init__(self, status: int, code: str, message: str) -> None:
        body = json.dumps({"error": {"code": code, "message": message}})
        super().__init__(text=body, status=status, content_type="application/json")
        self.code = code


def error_response(status: int, code: str, message: str) -> ErrorResponse:
    """The proxy's own error answer: a small JSON body with a stable ``code``."""
    return ErrorResponse(status, code, message)


async def forward(
    request: web.Request, state: ProxyState, exchange: Exchange
) -> web.StreamResponse:
    """Send the request upstream, signed, and stream the answer back."""
    pool = state.pool
    assert pool is not None, "the connection pool is created at start-up"
    path = request.raw_path.partition("?")[0]  # for log lines: raw, so nothing decoded forges one
    try:
        target, lines, body, length = await build_upstream_request(request, state, exchange)
    except ConnectionError:  # the client left while its body was being read
        return _client_closed(request, path)
    except BodyTooLarge:
        too_large = error_response(
            413,
            "body_too_large",
            f"signing needs the whole body, which is over --max-buffered-body "
            f"({state.settings.max_buffered_body} bytes): raise the limit, or send the body "
            "with a Content-Length",
        )
        too_large.force_close()  # the rest of the body is not read
        return too_large
    sent, started = state.skew.clock(), time.perf_counter()
    exchange.signed_corrected = state.skew.correcting
    try:
        conn = await pool.request(
            request.method, target, lines, body, length, zero_length=state.settings.signs_length
        )
    except FramingError:  # a CR or LF in a header value: never written into the request
        return error_response(400, "bad_request", "a header value contains CR or LF")
    except (UpstreamError, ConnectionError) as exc:
        if _client_gone(request):
            # The client left (mid-upload, or before the answer): not the upstream's fault.
            return _client_closed(request, path)
        error = exc if isinstance(exc, UpstreamError) else broken(str(state.settings.upstream))
        state.metrics.upstream_error(error.code)
        log.warning("%s %s: %s (%s)", request.method, path, error.message, error.code)
        failed = error_response(error.status, error.code, error.message)
        if not request.content.at_eof():
            failed.force_close()  # the rest of the client's body is not read for nothing
        return failed
    try:
        exchange.upstream_seconds = time.perf_counter() - started
        head = conn.head
        assert head is not None
        received = state.skew.clock()
        # One sample a second is plenty for a settled estimate. Refusals, and every answer
        # while correcting, are looked at: a clock that is off (or fixed) shows there.
        if (
            received - state.skew_sampled >= 1.0
            or head.status in (401, 403)
            or state.skew.correcting
        ):
            state.skew_sampled = received
            state.skew.observe(head.headers.get("Date"), sent, received, head.headers.get("Age"))
        headers = head.headers
        headers[REQUEST_ID] = exchange.request_id
        if _client_gone(request):  # it left while the upstream was answering
            conn.close()
            return _client_closed(request, path)
        if conn.complete and head.framing is not Framing.NONE:
            # The whole body came with the head (the usual small API answer): one write.
            body_bytes = conn.take()
            exchange.bytes_out = len(body_bytes)
            return web.Response(
                status=head.status, reason=head.reason, headers=headers, body=body_bytes
            )
        response = web.StreamResponse(status=head.status, reason=head.reason, headers=headers)
        await response.prepare(request)
        exchange.bytes_out, exchange.aborted = await _relay(request, conn, response, path)
        return response
    finally:
        pool.release(conn)


def _client_gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


def _client_closed(request: web.Request, path: str) -> web.Response:
    log.info("%s %s: the client closed the connection", request.method, path)
    return error_response(CLIENT_CLOSED, "client_closed", "the client closed the connection")


async def _relay(
    request: web.Request, conn: Connection, response: web.StreamResponse, path: str
) -> tuple[int, int | None]:
    """Copy the upstream body to the client chunk by chunk, as it arrives.

    Returns the bytes copied and, when the copy broke off, the status to log for it:
    499 when the client left, 502 when the upstream did.
    """
    size = 0
    try:
        while chunk := await conn.read():
            size += len(chunk)
            await response.write(chunk)
        await response.write_eof()
    except (UpstreamError, ConnectionError) as exc:
        # One side broke mid-body. Abort the client connection rather than end the body
        # cleanly, so that a truncated answer can never look complete (no last chunk, short
        # Content-Length); the upstream connection is closed too, never reused.
        client_left = _client_gone(request)
        level = logging.INFO if client_left else logging.WARNING
        who = "the client closed the connection" if client_left else "the upstream broke off"
        log.log(
            level,
            "%s %s: transfer aborted mid-body: %s (%s)",
            request.method,
            path,
            who,
            exc.code if isinstance(exc, UpstreamError) else "connection lost",
        )
        conn.close()
        if request.transport is not None:
            request.transport.abort()
        return size, CLIENT_CLOSED if client_left else 502
    return size, None
