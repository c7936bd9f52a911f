"""The read timeout of an upstream connection: one timer, re-armed only when it lapses."""

from __future__ import annotations

import asyncio

from ..errors import UpstreamTimeout


class ReadTimer:
    """Waiting for the upstream, bounded by ``read_timeout`` from the last byte received.

    The timer is armed once and, when it lapses early, moved to the new deadline: cheaper than
    cancelling and re-creating it on every read (see connection.Connection).
    """

    _loop: asyncio.AbstractEventLoop
    _read_timeout: float
    _where: str
    _last: float
    _timer: asyncio.TimerHandle | None
    _waiter: asyncio.Future[None] | None

    @property
    def _timing(self) -> bool:
        """The upstream owes an answer (while not, a wait is not timed)."""
        raise NotImplementedError

    def _fail(self, error: BaseException) -> None:
        raise NotImplementedError

    async def _wait(self) -> None:
        waiter = self._waiter = self._loop.create_future()
        if self._timing and self._timer is None:
            self._timer = self._loop.call_at(self._last + self._read_timeout, self._on_timer)
        try:
            await waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _start_timing(self) -> None:
        self._last = self._loop.time()
        if self._waiter is not None and self._timer is None:  # already waiting
            self._timer = self._loop.call_at(self._last + self._read_timeout, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._waiter is None or not self._timing:
            return  # nobody is waiting on the upstream: the next wait arms the timer again
        deadline = self._last + self._read_timeout
        if self._loop.time() < deadline:
            self._timer = self._loop.call_at(deadline, self._on_timer)
            return
        self._fail(UpstreamTimeout(f"the upstream {self._where} did not answer in time"))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
