"""Sending upstream: each attempt signed afresh; safe requests retried, a wrong clock repaired."""

from __future__ import annotations

import asyncio
import random
import time
from typing import TYPE_CHECKING

from aiohttp import web

from ..errors import UpstreamError, UpstreamTimeout, UpstreamTLSError
from ..ops.clock import parse_http_date
from ..policy.retry import (
    CLOCK,
    CONNECTION,
    RETRY_STATUSES,
    SAFE_METHODS,
    backoff,
    retry_after,
    within_budget,
)
from . import websocket
from .gate import GRAPHQL_METHODS, graphql_path, operations
from .headers import overrides_method
from .outgoing import SMALL_BODY, forwarded_content_type

if TYPE_CHECKING:
    from ..client import Answer, Head, Pool
    from ..config.settings import Settings
    from .outgoing import Outgoing
    from .state import Exchange, ProxyState

_uniform = random.Random().uniform  # jitter needs no secrecy: no system call per draw
# How often a retry's wait looks whether its client is still there and the proxy serving.
_LOOK = 0.25
_WAITED, _GONE, _STOPPING = "waited", "gone", "stopping"


async def send(
    request: web.Request,
    state: ProxyState,
    exchange: Exchange,
    settings: Settings,
    pool: Pool,
    out: Outgoing,
    upgrade: bool,
) -> Answer:
    """The answer to ``out``, sent once or, when that is safe and the upstream said "not now",
    again, each time signed with the current key and a fresh Date.

    Raises as ``Pool.request`` does; ConnectionError when the client left during a wait.
    """
    client = exchange.client
    assert client is not None, "a request is forwarded for a client"
    skew = state.skew
    first = time.monotonic()
    safe: bool | None = None  # decided when first needed: most requests never need it
    repaired = False
    while True:
        creds = exchange.signed_with = client.credentials.current
        signed = skew.now()
        lines = out.signed(settings, creds, request.method, signed)
        if upgrade:
            lines += websocket.UPGRADE_LINES
        exchange.signed_corrected = skew.correcting
        sent, started = skew.clock(), time.perf_counter()
        answer: Answer | None = None
        failure: UpstreamError | None = None
        wait: float | None = None
        try:
            answer = await pool.request(
                request.method,
                out.target,
                lines,
                out.body,
                out.length,
                zero_length=settings.signs_length,
                upgrade=upgrade,
            )
        except UpstreamError as exc:
            if settings.retries == 0 or not _failed_before_answer(exc):
                raise
            failure, reason = exc, CONNECTION
        try:  # from here ``answer`` is released on any way out but returning it
            if answer is not None:
                exchange.upstream_seconds = time.perf_counter() - started
                head = answer.head
                status = head.status
                received = skew.clock()
                # One sample a second is plenty for a settled estimate. Refusals, and every
                # answer while correcting, are looked at: a clock that is off (or fixed) shows.
                if received - state.skew_sampled >= 1.0 or status in (401, 403) or skew.correcting:
                    state.skew_sampled = received
                    date = head.headers.get("Date")
                    skew.observe(date, sent, received, head.headers.get("Age"))
                if status in (401, 403):
                    date = head.headers.get("Date")
                    if (
                        not repaired
                        and out.replayable
                        and not upgrade
                        and skew.refused(date, sent, received, signed)
                    ):
                        # A refused signature ran nothing: any method may be signed again and
                        # sent once more, now that the clock is corrected.
                        repaired = True
                        _drop(answer)
                        answer = None
                        state.metrics.retry(CLOCK)
                        exchange.attempts += 1
                        continue
                    # A command's key may have been revoked or renewed: run it again.
                    client.credentials.refused(creds)
                    return answer
                reason = RETRY_STATUSES.get(status, "")
                if not reason or settings.retries == 0:
                    return answer
                wait = retry_after(head.headers.get("Retry-After"), _answer_time(head, skew.now()))
            if safe is None:
                safe = _safe(request, state, exchange, out, upgrade)
            retried = exchange.attempts - 1 - repaired
            if wait is None:
                wait = backoff(retried + 1, _uniform)
            if (
                not safe
                or retried >= settings.retries
                or not within_budget(time.monotonic() - first, wait, settings.retry_budget)
                or _gone(request)
                or state.draining
            ):
                return _last(answer, failure)
            # The answer is held while waiting: it is what the client gets if the proxy stops.
            pause = await _pause(request, state, wait)
            if pause == _GONE:
                raise ConnectionError("the client closed the connection while a retry waited")
            if pause == _STOPPING:
                return _last(answer, failure)
            if answer is not None:
                _drop(answer)
                answer = None
            state.metrics.retry(reason)
            exchange.attempts += 1
        except BaseException:
            if answer is not None:
                answer.discard()
                answer.release()
            raise


def _failed_before_answer(error: UpstreamError) -> bool:
    """Whether a failure left the request unanswered for want of a connection: not a byte of
    an answer came, and it was not a certificate refused (that does not change) nor a slow
    answer (a timeout once connected: the upstream may be busy with it)."""
    if error.answered or isinstance(error, UpstreamTLSError):
        return False
    return not (isinstance(error, UpstreamTimeout) and error.connected)


def _last(answer: Answer | None, failure: UpstreamError | None) -> Answer:
    """No more attempts: the last answer, passed on unchanged, or the last failure."""
    if answer is None:
        assert failure is not None, "an attempt ends in an answer or a failure"
        raise failure
    return answer


# What a GraphQL request's body is written in (GraphQL over HTTP; application/graphql of old).
_GRAPHQL_MEDIA = frozenset({"application/json", "application/graphql"})


def keep_whole(request: web.Request, state: ProxyState, upgrade: bool) -> bool:
    """Whether a GraphQL POST's body is read whole although it is large (within
    --max-buffered-body), so that a query can be sent again: small ones always are. Uploads
    below a GraphQL path (multipart, octet streams) still stream."""
    length = request.content_length
    if length is None or length <= SMALL_BODY or request.method != "POST":
        return False
    media = (request.headers.get("Content-Type") or "application/json").partition(";")[0]
    return (
        state.settings.retries > 0
        and not upgrade
        and media.strip().lower() in _GRAPHQL_MEDIA
        and graphql_path(request.raw_path.partition("?")[0], state.settings.graphql_paths)
    )


def _answer_time(head: Head, fallback: float) -> float:
    """The answer's own time (its Date), against which an HTTP-date Retry-After is read: the
    upstream's clock, whatever this machine's says."""
    date = head.headers.get("Date")
    parsed = parse_http_date(date) if date else None
    return fallback if parsed is None else parsed


def _drop(answer: Answer) -> None:
    """Done with an answer that is not passed on: its connection is kept when it is whole."""
    if not answer.complete:
        answer.discard()
    answer.release()


def _gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


async def _pause(request: web.Request, state: ProxyState, wait: float) -> str:
    """Wait ``wait`` seconds, unless the client leaves (nothing to retry for) or the proxy
    begins to stop (no new attempt then); which of the three happened."""
    deadline = time.monotonic() + wait
    while True:
        if _gone(request):
            return _GONE
        if state.draining:
            return _STOPPING
        left = deadline - time.monotonic()
        if left <= 0:
            return _WAITED
        await asyncio.sleep(min(left, _LOOK))


def _safe(
    request: web.Request, state: ProxyState, exchange: Exchange, out: Outgoing, upgrade: bool
) -> bool:
    """Whether the request may be sent again: it changes nothing (RFC 9110 section 9.2.1: a
    REST GET, HEAD or OPTIONS; GraphQL whose every operation is a query) and its body is at
    hand, not streamed. A mutation, a streamed body or a WebSocket is never sent twice."""
    if upgrade or not out.replayable or overrides_method(request.headers):
        return False
    method = request.method
    path, _, query = request.raw_path.partition("?")
    if not graphql_path(path, state.settings.graphql_paths):
        return method in SAFE_METHODS
    if method != "POST" and request.body_exists:
        return False  # a server may read a GET's body as the document, which is not parsed
    if method == "OPTIONS":
        return True  # runs no operation
    if method not in GRAPHQL_METHODS:
        return False
    found = exchange.operations
    if found is None:
        from ..policy.graphql import BadGraphQL  # loaded only when a retry is weighed

        body = out.body if isinstance(out.body, bytes) else b""
        try:
            found = operations(method, query, forwarded_content_type(request), body)
        except BadGraphQL:
            return False
    return bool(found) and all(op.type == "query" for op in found)
