"""Sending upstream: each attempt signed afresh; safe requests retried, a wrong clock repaired."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..errors import UpstreamError
from ..ops.clock import parse_http_date
from ..policy.retry import (
    CLOCK,
    CONNECTION,
    RETRY_STATUSES,
    backoff,
    retry_after,
    within_budget,
)
from . import websocket
from .relay import client_gone
from .replay import failed_before_answer, safe_to_repeat

if TYPE_CHECKING:
    from ..client import Answer, Head, Pool
    from ..config.settings import Settings
    from .outgoing import Outgoing
    from .state import Exchange, ProxyState

_uniform = random.Random().uniform  # jitter needs no secrecy: no system call per draw
# How often a retry's wait looks whether its client is still there and the proxy serving.
_LOOK = 0.25
_WAITED, _GONE, _STOPPING = "waited", "gone", "stopping"


# The statuses that get a second look: a refusal (the clock?) or "not now" (a retry?).
_LOOK_AGAIN = frozenset({401, 403, *RETRY_STATUSES})
# One attempt: the header lines sent, the time signed, our clock and perf counter at sending.
Attempt = tuple[list[bytes], float, float, float]


def begin(
    state: ProxyState,
    exchange: Exchange,
    settings: Settings,
    out: Outgoing,
    method: str,
    upgrade: bool,
) -> Attempt:
    """Sign an attempt with the current key and time; the caller sends it at once."""
    client = exchange.client
    assert client is not None, "a request is forwarded for a client"
    skew = state.skew
    creds = exchange.signed_with = client.credentials.current
    signed = skew.now()
    lines = out.signed(settings, creds, method, signed)
    if upgrade:
        lines += websocket.UPGRADE_LINES
    exchange.signed_corrected = skew.correcting
    return lines, signed, skew.clock(), time.perf_counter()


def sending(
    pool: Pool, settings: Settings, out: Outgoing, attempt: Attempt, method: str, upgrade: bool
) -> Coroutine[Any, Any, Answer]:
    """The pool's request for an attempt, to be awaited at once (returned, not awaited here:
    no coroutine of its own on every request's path)."""
    return pool.request(
        method,
        out.target,
        attempt[0],
        out.body,
        out.length,
        zero_length=settings.signs_length,
        upgrade=upgrade,
    )


def landed(state: ProxyState, exchange: Exchange, attempt: Attempt, answer: Answer) -> bool:
    """Take note of an answer's head (its time; the clock, from its Date); whether it needs a
    second look (``resend``): most answers do not."""
    _, _, sent, started = attempt
    exchange.upstream_seconds = time.perf_counter() - started
    head = answer.head
    status = head.status
    skew = state.skew
    received = skew.clock()
    # One sample a second is plenty for a settled estimate. Refusals, and every answer while
    # correcting, are looked at: a clock that is off (or fixed) shows there.
    if received - state.skew_sampled >= 1.0 or status in (401, 403) or skew.correcting:
        state.skew_sampled = received
        skew.observe(head.headers.get("Date"), sent, received, head.headers.get("Age"))
    return status in _LOOK_AGAIN


async def resend(
    request: web.Request,
    state: ProxyState,
    exchange: Exchange,
    settings: Settings,
    pool: Pool,
    out: Outgoing,
    upgrade: bool,
    attempt: Attempt,
    outcome: Answer | UpstreamError,
) -> Answer:
    """After a first attempt that failed or needs a second look (``landed``): the answer to
    pass on, sending again while that is safe and the upstream said "not now", each time
    signed with the current key and a fresh Date.

    Raises the failure when it is not sent again; ConnectionError when the client left during
    a wait.
    """
    client = exchange.client
    assert client is not None, "a request is forwarded for a client"
    skew = state.skew
    first = time.monotonic()
    safe: bool | None = None  # decided when first needed
    repaired = False
    again = ""  # why the request is sent once more at the top of the loop ("": it is not)
    while True:
        if again:
            state.metrics.retry(again)
            exchange.attempts += 1
            attempt, outcome = await _again(
                state, exchange, settings, pool, out, request.method, upgrade
            )
        answer = outcome if not isinstance(outcome, UpstreamError) else None
        failure = outcome if isinstance(outcome, UpstreamError) else None
        wait: float | None = None
        try:  # from here ``answer`` is released on any way out but returning it
            if failure is not None:
                if settings.retries == 0 or not failed_before_answer(failure):
                    raise failure
                reason = CONNECTION
            else:
                assert answer is not None
                head = answer.head
                if head.status in (401, 403):
                    _, signed, sent, _ = attempt
                    date, received = head.headers.get("Date"), skew.clock()
                    if (
                        not repaired
                        and out.replayable
                        and not upgrade
                        and skew.refused(date, sent, received, signed)
                    ):
                        # A refused signature ran nothing: any method may be signed again and
                        # sent once more, now that the clock is corrected.
                        repaired, again = True, CLOCK
                        _drop(answer)
                        answer = None
                        continue
                    # A command's key may have been revoked or renewed: run it again.
                    refused = exchange.signed_with
                    assert refused is not None, "an attempt is signed"
                    client.credentials.refused(refused)
                    return answer
                reason = RETRY_STATUSES.get(head.status, "")
                if not reason or settings.retries == 0:
                    return answer
                wait = retry_after(head.headers.get("Retry-After"), _answer_time(head, skew.now()))
            if safe is None:
                safe = safe_to_repeat(request, state, exchange, out, upgrade)
            retried = exchange.attempts - 1 - repaired
            if wait is None:
                wait = backoff(retried + 1, _uniform)
            if (
                not safe
                or retried >= settings.retries
                or not within_budget(time.monotonic() - first, wait, settings.retry_budget)
                or client_gone(request)
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
            again = reason
        except BaseException:
            if answer is not None:
                answer.discard()
                answer.release()
            raise


async def _again(
    state: ProxyState,
    exchange: Exchange,
    settings: Settings,
    pool: Pool,
    out: Outgoing,
    method: str,
    upgrade: bool,
) -> tuple[Attempt, Answer | UpstreamError]:
    """One more attempt, and what came of it (an answer that needs no second look returns
    from ``resend`` as it is: ``landed`` says)."""
    attempt = begin(state, exchange, settings, out, method, upgrade)
    try:
        answer = await sending(pool, settings, out, attempt, method, upgrade)
    except UpstreamError as exc:
        return attempt, exc
    landed(state, exchange, attempt, answer)
    return attempt, answer


def _last(answer: Answer | None, failure: UpstreamError | None) -> Answer:
    """No more attempts: the last answer, passed on unchanged, or the last failure."""
    if answer is None:
        assert failure is not None, "an attempt ends in an answer or a failure"
        raise failure
    return answer


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


async def _pause(request: web.Request, state: ProxyState, wait: float) -> str:
    """Wait ``wait`` seconds, unless the client leaves (nothing to retry for) or the proxy
    begins to stop (no new attempt then); which of the three happened."""
    deadline = time.monotonic() + wait
    while True:
        if client_gone(request):
            return _GONE
        if state.draining:
            return _STOPPING
        left = deadline - time.monotonic()
        if left <= 0:
            return _WAITED
        await asyncio.sleep(min(left, _LOOK))
