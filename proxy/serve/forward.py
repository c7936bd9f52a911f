"""Forwarding: send the signed request upstream, stream the answer back, map failures."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web
from multidict import CIMultiDict

from ..client import Framing
from ..errors import RequestHeadError, UpstreamClosed, UpstreamError
from . import coalesce, websocket
from .attempts import begin, landed, resend, sending
from .flights import SHARED_ANSWER as SHARED
from .flights import Shared
from .headers import REQUEST_ID, drop_hop_by_hop, undecodable
from .outgoing import BodyTooLarge, build_upstream_request
from .relay import client_gone, read_whole, relay
from .replay import keep_whole
from .responses import (
    ADDED_WHEN_MISSING,
    CLIENT_CLOSED,
    ErrorResponse,
    Relayed,
    RelayedWhole,
    error_response,
)

if TYPE_CHECKING:
    from ..client import Head
    from ..config.settings import Settings
    from .state import Exchange, ProxyState

log = logging.getLogger("proxy.forward")  # the name log lines have always had


async def forward(
    request: web.Request, state: ProxyState, exchange: Exchange, upgrade: bool = False
) -> web.StreamResponse:
    """Send the request upstream, signed, and stream the answer back (``upgrade``: a
    WebSocket upgrade, relayed both ways after a 101)."""
    settings, pool, raw_path = state.route(request.raw_path)
    path = request.raw_path.partition("?")[0]  # for log lines: raw, so nothing decoded forges one
    try:
        out = await build_upstream_request(
            request, exchange, settings, raw_path, keep_whole(request, state, upgrade)
        )
    except ConnectionError:  # the client left while its body was being read
        return _client_closed(request, path)
    except BodyTooLarge:
        too_large = error_response(
            413,
            "body_too_large",
            f"signing needs the whole body, which is over --max-buffered-body "
            f"({settings.max_buffered_body} bytes): raise the limit, or send the body "
            "with a Content-Length",
        )
        too_large.force_close()  # the rest of the body is not read for nothing
        return too_large
    flight = None
    if settings.coalesce_queries and not upgrade:
        key = coalesce.key_of(request, state, exchange, settings, out)
        if key is not None:
            flight, leader = state.coalescer.join(key)
            if not leader:  # it waits without a place under the cap: it sends nothing
                shared = await flight.wait()
                if shared is not None:
                    state.metrics.coalesced += 1
                    exchange.coalesced = shared.request_id
                    return shared.answer(exchange.request_id)
                flight = None  # it had nothing to share: this one asks on its own
    throttle = state.throttle
    held = False
    if throttle.cap is not None and not upgrade:  # an open WebSocket holds no place
        client = exchange.client
        assert client is not None, "a request is forwarded for a client"
        queued = await throttle.enter(client)
        if queued is not None:
            if flight is not None:
                flight.share(None)
            if not request.content.at_eof():
                queued.force_close()  # its body is not read for nothing
            return queued
        held = True
    # One frame for the whole exchange (no nested coroutine): this is every request's path.
    try:
        try:
            # The first attempt, inline: a retry's machinery is entered only when needed.
            attempt = begin(state, exchange, settings, out, request.method, upgrade)
            try:
                answer = await sending(pool, settings, out, attempt, request.method, upgrade)
            except UpstreamError as exc:
                answer = await resend(
                    request, state, exchange, settings, pool, out, upgrade, attempt, exc
                )
            else:
                if landed(state, exchange, attempt, answer):
                    answer = await resend(
                        request, state, exchange, settings, pool, out, upgrade, attempt, answer
                    )
        except RequestHeadError:  # a CR or LF in a header value: never written into the request
            return error_response(400, "bad_request", "a header value contains CR or LF")
        except (UpstreamError, ConnectionError) as exc:
            if client_gone(request):
                # The client left (mid-upload, or before the answer): not the upstream's fault.
                return _client_closed(request, path)
            error = exc if isinstance(exc, UpstreamError) else _lost(settings)
            if flight is not None:
                flight.failed(error, exchange.request_id)
            return _failed(request, state, path, error)
        async with answer:
            head = answer.head
            headers = head.headers
            switched = headers.get("Upgrade", "") if head.status == 101 else None
            drop_hop_by_hop(headers)  # what is left is passed on to the client
            if not head.ascii and (field := undecodable(head)) is not None:
                answer.discard()
                return _failed(request, state, path, _not_relayable(settings, field))
            headers[REQUEST_ID] = exchange.request_id
            if client_gone(request):  # it left while the upstream was answering
                if flight is not None and answer.complete and head.framing is not Framing.NONE:
                    flight.share(_shared(head, headers, answer.take(), exchange))  # still of use
                answer.discard()
                return _client_closed(request, path)
            if switched is not None:  # only ever to a request sent with ``upgrade``
                try:
                    relayed = await websocket.switch(request, state, exchange, answer, switched)
                except UpstreamError as exc:  # a 101 before the request was all sent
                    return _failed(request, state, path, exc)
                if relayed is None:
                    return _failed(request, state, path, _switched(settings, switched))
                return relayed
            unsent = tuple(name for name in ADDED_WHEN_MISSING if name not in headers)
            body_bytes = None
            if answer.complete and head.framing is not Framing.NONE:
                # The whole body came with the head (the usual small API answer): one write.
                body_bytes = answer.take()
            elif flight is not None and head.framing is Framing.LENGTH and head.length <= SHARED:
                try:  # read whole, so that the identical queries waiting can have it too
                    body_bytes = await read_whole(answer)
                except UpstreamError as exc:
                    answer.discard()
                    flight.failed(exc, exchange.request_id)
                    return _failed(request, state, path, exc)
            if body_bytes is not None:
                exchange.bytes_out = len(body_bytes)
                if flight is not None:
                    flight.share(_shared(head, headers, body_bytes, exchange))
                whole = RelayedWhole(
                    status=head.status, reason=head.reason, headers=headers, body=body_bytes
                )
                whole.unsent = unsent
                return whole
            if flight is not None:
                flight.share(None)  # streamed to this client only: the others ask now, not after
            response = Relayed(status=head.status, reason=head.reason, headers=headers)
            response.unsent = unsent
            await response.prepare(request)
            exchange.bytes_out, exchange.aborted = await relay(request, answer, response, path)
            return response
    finally:
        if flight is not None:
            flight.share(None)  # when it shared nothing (streamed, cancelled), the others ask
        if held:
            throttle.leave()


def _shared(head: Head, headers: CIMultiDict[str], body: bytes, exchange: Exchange) -> Shared:
    return Shared(head.status, head.reason, CIMultiDict(headers), body, exchange.request_id)


def _lost(settings: Settings) -> UpstreamError:
    return UpstreamClosed(
        f"the upstream {settings.upstream} broke the connection or answered something "
        "that is not HTTP"
    )


def _failed(
    request: web.Request, state: ProxyState, path: str, error: UpstreamError
) -> ErrorResponse:
    """The answer for an upstream failure: counted, logged, and told to the client."""
    state.metrics.upstream_error(error.code)
    log.warning("%s %s: %s (%s)", request.method, path, error.message, error.code)
    failed = error_response(error.status, error.code, error.message)
    if not request.content.at_eof():
        failed.force_close()  # the rest of the client's body is not read for nothing
    return failed


def _switched(settings: Settings, protocol: str) -> UpstreamError:
    return UpstreamError(
        f"the upstream {settings.upstream} switched to {protocol[:40]!r}, not websocket"
    )


def _not_relayable(settings: Settings, field: str) -> UpstreamError:
    return UpstreamError(
        f"the upstream {settings.upstream} sent {field} with bytes that are not UTF-8, "
        "which the proxy cannot pass on unchanged"
    )


def _client_closed(request: web.Request, path: str) -> web.Response:
    log.info("%s %s: the client closed the connection", request.method, path)
    return error_response(CLIENT_CLOSED, "client_closed", "the client closed the connection")
