"""The pool of keep-alive connections to the origin, and sending a request through it."""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType

from ..errors import UpstreamClosed, UpstreamError
from .connection import Connection
from .dial import Dialer
from .failures import broken
from .sending import Body, flush, stream
from .tunnel import Tunnel
from .wire import Head, request_head

# An idle connection older than this is closed rather than reused: servers and middleboxes
# drop idle connections (often after 60 s), and one dropped silently would hang a request.
KEEPALIVE = 15.0
# Safe to send again when a reused connection turns out closed (RFC 9110 section 9.2.2).
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class Answer:
    """An answer whose head is in; the body is read with ``read`` (or ``take``).

    Used as an async context manager, or closed with ``release``: the connection goes back
    to the pool if the exchange ended whole, and is closed otherwise.
    """

    __slots__ = ("_pool", "_conn", "head")

    def __init__(self, pool: Pool, conn: Connection, head: Head) -> None:
        self._pool = pool
        self._conn = conn
        self.head = head

    @property
    def complete(self) -> bool:
        """True once the whole body has arrived."""
        return self._conn.complete

    def take(self) -> bytes:
        """Everything received of the body so far, without waiting."""
        return self._conn.take()

    async def read(self) -> bytes:
        """The next piece of the body as it arrives; ``b""`` at its end."""
        return await self._conn.read()

    def tunnel(self) -> Tunnel:
        """After a 101 to a request sent with ``upgrade``: the connection, taken out of the
        pool for good, as a raw byte stream both ways."""
        return self._pool.hand_over(self._conn)

    def discard(self) -> None:
        """Give up on the rest of the answer: the connection is closed, not reused."""
        self._conn.close()

    def release(self) -> None:
        """Done with the answer (idempotent)."""
        self._pool.release(self._conn)

    async def __aenter__(self) -> Answer:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.release()


class Pool:
    """Keep-alive connections to the upstream, reused one request at a time each."""

    def __init__(self, dialer: Dialer) -> None:
        self._dialer = dialer
        upstream, proxy = dialer.upstream, dialer.proxy
        self._where = upstream.name
        self._closed = False
        self._idle: deque[Connection] = deque()  # the longest idle first
        self._busy: set[Connection] = set()
        self._sweeper: asyncio.TimerHandle | None = None  # armed while a connection is idle
        # Plain http through a forward proxy: absolute-form targets (RFC 9112 section 3.2.2).
        forward = proxy is not None and upstream.scheme == "http"
        self._target_prefix = upstream.url if forward else ""
        self._proxy_lines = (
            [f"Proxy-Authorization: {proxy.authorization}".encode()]
            if forward and proxy is not None and proxy.authorization
            else []
        )

    @property
    def in_use(self) -> int:
        """Connections carrying a request now."""
        return len(self._busy)

    @property
    def idle(self) -> int:
        """Connections kept open for the next request."""
        return len(self._idle)

    async def request(
        self,
        method: str,
        target: str,
        lines: list[bytes],
        body: Body,
        length: int | None = None,
        *,
        zero_length: bool = False,
        upgrade: bool = False,
    ) -> Answer:
        """Send a request; return its answer once the head is in.

        ``lines`` are the header lines but the framing, which follows the body: sent whole
        (bytes) or streamed from the client (``length`` bytes, or chunked when it is None);
        ``zero_length`` sends ``Content-Length: 0`` without a body whatever the method (a
        signed length); ``upgrade``: the lines ask to switch protocols, and a 101 may answer
        (``Answer.tunnel``). The caller reads the answer and then releases it.
        """
        if isinstance(body, bytes):
            lines.append(b"Content-Length: %d" % len(body))
        elif body is not None:
            lines.append(
                b"Content-Length: %d" % length
                if length is not None
                else b"Transfer-Encoding: chunked"
            )
        elif zero_length or method in _BODY_METHODS:
            lines.append(b"Content-Length: 0")
        lines += self._proxy_lines
        head = request_head(method, self._target_prefix + target, lines)
        streamed = body is not None and not isinstance(body, bytes)
        replayable = not streamed and method in IDEMPOTENT
        while True:
            conn, reused = await self._acquire()
            conn.begin(method, upgrade)
            try:
                if body is not None and not isinstance(body, bytes):
                    conn.writer = asyncio.create_task(stream(conn, head, body, length))
                else:
                    conn.write(head + body if body else head)
                    if conn.backed_up:  # a large buffered body: sent once it has drained
                        conn.writer = asyncio.create_task(flush(conn))
                    else:
                        conn.sent()
                return Answer(self, conn, await conn.response())
            except UpstreamError as exc:
                exc.connected, exc.answered = True, conn.received
                self.release(conn)
                # A kept connection the upstream closed as we sent, unanswered: a new one.
                if isinstance(exc, UpstreamClosed) and reused and replayable and not exc.answered:
                    continue
                raise
            except BaseException:
                self.release(conn)
                raise

    def release(self, conn: Connection) -> None:
        """Done with the exchange: keep the connection for the next request, or close it."""
        if conn not in self._busy:
            return  # released already
        self._busy.discard(conn)
        writer, conn.writer = conn.writer, None
        if writer is not None and not writer.done():
            writer.cancel()
            # The answer ended before the body was all sent: reset, so that the upstream
            # neither waits for the rest nor ever sees it whole.
            conn.abort(broken(self._where))
        if self._closed or not conn.reset():
            conn.close()
            return
        self._idle.append(conn)
        if self._sweeper is None:
            self._sweep()

    def hand_over(self, conn: Connection) -> Tunnel:
        """A connection that switched protocols leaves the pool: its new owner closes it."""
        self._busy.discard(conn)
        writer, conn.writer = conn.writer, None
        if writer is not None and not writer.done():
            writer.cancel()  # still sending a body: handover refuses it
        return conn.handover()

    def close(self) -> None:
        """Close every connection (at shutdown)."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in (*self._idle, *self._busy):
            if conn.writer is not None:
                conn.writer.cancel()
            conn.close()
        self._idle.clear()
        self._busy.clear()

    def _sweep(self) -> None:
        """Close the idle connections past their keep-alive, and come back when the next one
        is due: the upstream (or a middlebox) drops them about then anyway, and until it does
        they hold a socket at both ends. One timer a pool, set again when it fires; a request
        pays for a check on release, and for the timer only when it had found nobody idle."""
        self._sweeper = None
        idle = self._idle
        if not idle:
            return  # all taken: the next release sets the timer again
        loop = asyncio.get_running_loop()
        expired = loop.time() - KEEPALIVE
        while idle and idle[0].idle_since <= expired:
            idle.popleft().close()
        if idle:
            self._sweeper = loop.call_at(idle[0].idle_since + KEEPALIVE, self._sweep)

    async def _acquire(self) -> tuple[Connection, bool]:
        idle = self._idle
        while idle:
            conn = idle.pop()
            if conn.fresh(KEEPALIVE):
                self._busy.add(conn)
                return conn, True
            conn.close()
        conn = await self._dialer.connect()
        self._busy.add(conn)
        return conn, False
