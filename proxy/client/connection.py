"""One keep-alive HTTP/1.1 connection to the upstream: writes a request, reads its answer."""

from __future__ import annotations

import asyncio
from collections import deque
from enum import Enum
from typing import cast

from .failures import broken, malformed
from .flow import WriteFlow
from .leftover import rescue
from .parser import ResponseParser
from .timing import ReadTimer
from .tunnel import HIGH_WATER, Tunnel
from .wire import Head, ParseError


class State(Enum):
    """Where a connection is in its life; only ``IDLE`` ones are kept for the next request."""

    IDLE = "idle"  # open, no exchange under way
    SENDING = "sending"  # an exchange began: the request is being written
    WAITING = "waiting"  # the whole request is written: the answer is awaited or read
    DONE = "done"  # the whole answer is in, and the connection can carry another request
    SPENT = "spent"  # the exchange is over or broken and the connection is not reused
    UPGRADED = "upgraded"  # a 101 came: the connection is to be handed over (``handover``)


class Connection(ReadTimer, WriteFlow):
    """The protocol side of one upstream connection, used by one request at a time.

    ``read_timeout`` bounds every wait for the upstream once the request is sent: the clock
    restarts with each byte received, so a slow transfer that keeps moving is never cut.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, read_timeout: float, where: str) -> None:
        self._loop = loop
        self._read_timeout = read_timeout
        self._where = where
        self.transport: asyncio.Transport | None = None
        self.state = State.IDLE
        self._parser: ResponseParser | None = None
        self._chunks: deque[bytes] = deque()
        self._queued = 0
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._read_paused = False
        self._timer: asyncio.TimerHandle | None = None
        self._last = 0.0
        self.head: Head | None = None
        self.idle_since = 0.0
        self.writer: asyncio.Task[None] | None = None  # sends a streamed request body

    # --- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio's classes, but behave the same.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._last = self._loop.time()
        parser = self._parser
        if parser is None:  # nothing was asked: the upstream is not speaking HTTP with us
            self._fail(malformed(self._where, "bytes before any request"))
            return
        try:
            pieces = parser.feed(data)
        except ParseError as exc:
            self._fail(malformed(self._where, str(exc)))
            return
        if self.head is None and parser.head is not None:
            self.head = parser.head
        for piece in pieces:
            self._queue(piece)
        if parser.done:
            self._answered()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def eof_received(self) -> bool | None:
        return None  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        parser = self._parser
        if parser is not None and not parser.done:
            if exc is not None:  # a failed write drops what is still to read: read it first
                rescue(self, self.transport)
            try:
                if exc is not None and not parser.done:  # reset: what came is not all the body
                    raise ParseError("connection reset")
                parser.eof()  # the end of a body framed by the connection's close
            except ParseError:
                self._fail(broken(self._where))
        if self.state is not State.UPGRADED:  # else handed over all the same, as ended
            self.state = State.SPENT
        if self._drain is not None and not self._drain.done():
            self._drain.set_exception(self._error or broken(self._where))
            self._drain.exception()  # read: whoever waits on it is told through _error too
        self._wake()
        self._cancel_timer()

    # --- the request -----------------------------------------------------------------------

    def begin(self, method: str, upgrade: bool = False) -> None:
        """Start an exchange: the answer to ``method`` is read from now on (``upgrade``: the
        request asks to switch protocols, so a 101 may answer it)."""
        self._parser = ResponseParser(method, upgrade)
        self.head = None
        self.state = State.SENDING

    def sent(self) -> None:
        """The whole request is written: from now on the upstream has to answer in time."""
        if self.state is State.SENDING:
            self.state = State.WAITING
            self._start_timing()
            if self.complete:  # it answered before the request was all written
                self._answered()

    def write(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        if self.transport is None or self.transport.is_closing():
            raise broken(self._where)
        self.transport.write(data)

    @property
    def usable(self) -> bool:
        """Still open and in good order (an idle connection the upstream closed is not)."""
        transport = self.transport
        return self._error is None and transport is not None and not transport.is_closing()

    def fresh(self, keepalive: float) -> bool:
        """Usable, and idle for less than ``keepalive`` seconds. (The loop's clock: asking
        asyncio for the running loop costs a getpid system call on every request.)"""
        return self.usable and self.idle_since > self._loop.time() - keepalive

    @property
    def received(self) -> bool:
        """Any byte of the answer has come (a request then cannot be sent again safely)."""
        return self._parser is not None and self._parser.scanned > 0

    def abort(self, error: BaseException) -> None:
        """Break the exchange: the upstream sees the connection reset, never a whole request."""
        self._fail(error)

    def close(self) -> None:
        """Close for good: gracefully after a whole exchange, else reset (RST) at once."""
        whole = self._error is None and (self._parser is None or self._parser.done)
        self.state = State.SPENT
        self._cancel_timer()
        if self.transport is not None and not self.transport.is_closing():
            if whole:
                self.transport.close()
            else:
                self.transport.abort()

    def handover(self) -> Tunnel:
        """After a 101: the connection as a raw byte stream, with what came after the head."""
        transport = self.transport
        if self.state is not State.UPGRADED or transport is None:
            # A 101 before the whole request was sent (or after it broke): no tunnel.
            self.abort(broken(self._where))
            raise broken(self._where)
        self._cancel_timer()
        self.state, self.transport = State.SPENT, None
        tunnel = Tunnel(
            self._loop,
            transport,
            tuple(self._chunks),
            ended=transport.is_closing(),
            where=self._where,
        )
        self._chunks.clear()
        transport.set_protocol(tunnel)
        if self._read_paused:
            transport.resume_reading()  # the tunnel keeps its own count from now on
        return tunnel

    # --- the answer ------------------------------------------------------------------------

    async def response(self) -> Head:
        """Wait for the head of the answer."""
        while self.head is None:
            if self._error is not None:
                raise self._error
            await self._wait()
        self._start_timing()
        return self.head

    @property
    def complete(self) -> bool:
        """True once the whole body has arrived."""
        return self._parser is not None and self._parser.done

    def take(self) -> bytes:
        """Everything received of the body so far (without waiting)."""
        chunks = self._chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._queued = 0
        if self._read_paused and self.transport is not None:
            self._read_paused = False
            self._last = self._loop.time()  # the pause was ours, not the upstream's
            self.transport.resume_reading()
        return data

    async def read(self) -> bytes:
        """The next piece of the body, as it arrives; ``b""`` at its end."""
        while True:
            if self._chunks:
                return self.take()
            if self.complete:
                return b""
            if self._error is not None:
                raise self._error
            await self._wait()

    def reset(self) -> bool:
        """Make the connection ready for the next request; False when it cannot be reused.

        An armed read timer is left to lapse: it finds nobody waiting and stops, which is
        cheaper than cancelling and re-creating it for every request.
        """
        if self.state is not State.DONE or self._chunks or not self.usable:
            self.state = State.SPENT
            return False
        self.state = State.IDLE
        self._parser = None
        self.idle_since = self._loop.time()
        return True

    # --- waiting and failing ---------------------------------------------------------------

    def _answered(self) -> None:
        """The answer is complete: reusable if the request is sent and nothing is amiss."""
        parser, head = self._parser, self.head
        if self.state is State.WAITING and parser is not None and parser.upgraded:
            self.state = State.UPGRADED
        elif self.state is State.WAITING:
            reusable = parser is not None and parser.clean and head is not None and head.keep_alive
            self.state = State.DONE if reusable else State.SPENT
        elif self.state is State.DONE and parser is not None and not parser.clean:
            self.state = State.SPENT  # bytes nobody asked for followed it

    def _queue(self, data: bytes) -> None:
        if not data:
            return
        self._chunks.append(data)
        self._queued += len(data)
        if self._queued > HIGH_WATER and not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        self.state = State.SPENT
        if self.transport is not None:
            self.transport.abort()
        self._wake()

    @property
    def _timing(self) -> bool:
        """The upstream owes an answer: the request is sent, or its answer has begun."""
        return self.state is State.WAITING or (self.head is not None and not self.complete)
