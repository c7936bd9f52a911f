"""Local limits: each client's request rate, and how many requests are at the upstream at once."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from ..policy.bucket import TokenBucket
from .responses import error_response

if TYPE_CHECKING:
    from ..config.settings import Settings
    from ..ops.metrics import Metrics
    from .clients import Client, Clients


class Throttle:
    """The limits of one proxy process.

    With ``--workers N`` every worker enforces its share (1/N of each rate, burst and cap,
    rounded down but at least 1), sharing nothing with the others: together they never pass
    a limit, unless a burst or cap is under N (each worker keeps one).
    """

    def __init__(
        self,
        settings: Settings,
        clients: Clients,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._metrics = metrics
        now = self._clock()
        workers = settings.workers
        # By client label: a bucket for each client with a rate.
        self._buckets = {
            client.label: TokenBucket(client.rate.share(workers), now)
            for client in clients.all
            if client.rate is not None
        }
        cap = settings.max_upstream_concurrency
        self.cap = max(1, cap // workers) if cap else None
        self._slots = asyncio.Semaphore(self.cap) if self.cap else None
        self._queue_timeout = settings.queue_timeout
        # Read for every request: whether there are rates to check (else that step is skipped).
        self.rated = bool(self._buckets)

    def over_rate(self, client: Client) -> web.Response | None:
        """The 429 for a client over its rate (it takes a token otherwise); None to go on."""
        bucket = self._buckets.get(client.label)
        if bucket is None:
            return None
        wait = bucket.take(self._clock())
        if not wait:
            return None
        self._metrics.rate_limited(client.label, "rate")
        return limited(
            wait,
            f"this client is over its rate limit ({bucket.rate.text}, burst "
            f"{bucket.rate.burst}); nothing was sent upstream: retry after the time in "
            "Retry-After",
        )

    async def enter(self, client: Client) -> web.Response | None:
        """Take a place among the requests at the upstream (give it back with ``leave``), or,
        when none frees within ``--queue-timeout``, the 429 to answer instead."""
        slots = self._slots
        if slots is None:
            return None
        if not slots.locked():
            await slots.acquire()  # at once
            return None
        self._metrics.queued += 1
        try:
            await asyncio.wait_for(slots.acquire(), self._queue_timeout)
            return None
        except asyncio.TimeoutError:
            pass
        finally:
            self._metrics.queued -= 1
        self._metrics.rate_limited(client.label, "concurrency")
        return limited(
            1.0,
            f"{self.cap} requests were at the upstream for all of --queue-timeout "
            f"({self._queue_timeout:g} s) and this one could not join them "
            "(--max-upstream-concurrency); nothing was sent upstream",
        )

    def leave(self) -> None:
        """Give back the place ``enter`` took."""
        if self._slots is not None:
            self._slots.release()


def limited(wait: float, message: str) -> web.Response:
    """``429 rate_limited`` with ``Retry-After`` in whole seconds, rounded up (RFC 9110 10.2.3)."""
    answer = error_response(429, "rate_limited", message)
    answer.headers["Retry-After"] = str(max(1, math.ceil(wait)))
    return answer
