"""The pool of keep-alive connections to the upstream, and sending a request with its body."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from aiohttp import StreamReader

from . import wire
from .connection import Connection, broken
from .dial import Dialer
from .errors import UpstreamError

# An idle connection older than this is closed rather than reused: servers and middleboxes
# drop idle connections (often after 60 s), and one dropped silently would hang a request.
KEEPALIVE = 15.0
# Safe to send again when a reused connection turns out closed (RFC 9110 section 9.2.2).
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

Body = bytes | StreamReader | None


class Pool:
    """Keep-alive connections to the upstream, reused one request at a time each."""

    def __init__(self, dialer: Dialer) -> None:
        self._dialer = dialer
        upstream, proxy = dialer.upstream, dialer.proxy
        self._where = str(upstream)
        self._closed = False
        self._idle: deque[Connection] = deque()
        self._busy: set[Connection] = set()
        # Plain http through a forward proxy: absolute-form targets (RFC 9112 section 3.2.2).
        forward = proxy is not None and upstream.scheme == "http"
        self._target_prefix = upstream.origin if forward else ""
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
    ) -> Connection:
        """Send a request; return its connection once the answer's head is in.

        ``lines`` are the header lines but the framing, which follows the body: sent whole
        (bytes) or streamed from the client (``length`` bytes, or chunked when it is None);
        ``zero_length`` sends ``Content-Length: 0`` without a body whatever the method (a
        signed length). The caller reads the answer and then calls ``release``.
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
        head = wire.request_head(method, self._target_prefix + target, lines)
        replayable = not isinstance(body, StreamReader) and method in IDEMPOTENT
        while True:
            conn, reused = await self._acquire()
            conn.begin(method)
            try:
                if isinstance(body, StreamReader):
                    conn.writer = asyncio.create_task(_stream(conn, head, body, length))
                else:
                    conn.write(head + body if body else head)
                    if conn.backed_up:  # a large buffered body: sent once it has drained
                        conn.writer = asyncio.create_task(_flush(conn))
                    else:
                        conn.sent()
                await conn.response()
                return conn
            except UpstreamError as exc:
                self.release(conn)
                # A kept connection the upstream closed as we sent, unanswered: a new one.
                if exc.code == "upstream_error" and reused and replayable and not conn.received:
                    continue
                raise
            except BaseException:
                self.release(conn)
                raise

    def release(self, conn: Connection) -> None:
        """Done with the exchange: keep the connection for the next request, or close it."""
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
        idle = self._idle
        idle.append(conn)
        while idle[0].idle_since < conn.idle_since - KEEPALIVE:
            idle.popleft().close()

    def close(self) -> None:
        """Close every connection (at shutdown)."""
        self._closed = True
        for conn in (*self._idle, *self._busy):
            if conn.writer is not None:
                conn.writer.cancel()
            conn.close()
        self._idle.clear()
        self._busy.clear()

    async def _acquire(self) -> tuple[Connection, bool]:
        idle = self._idle
        while idle:
            conn = idle.pop()
            if conn.usable and conn.idle_since > asyncio.get_running_loop().time() - KEEPALIVE:
                self._busy.add(conn)
                return conn, True
            conn.close()
        conn = await self._dialer.connect()
        self._busy.add(conn)
        return conn, False


async def _stream(conn: Connection, head: bytes, body: StreamReader, length: int | None) -> None:
    """Send the head, then the client's body as it arrives, while the answer is awaited."""
    size = 0
    try:
        conn.write(head)
        while chunk := await body.readany():
            size += len(chunk)
            conn.write(chunk if length is not None else b"%x\r\n%b\r\n" % (len(chunk), chunk))
            await conn.drain()
        if length is None:
            conn.write(b"0\r\n\r\n")
        elif size != length:
            raise ConnectionResetError("the request body ended short of its Content-Length")
        conn.sent()
    except UpstreamError:
        pass  # the connection failed: the reader of the answer reports it
    except Exception as exc:
        # The client's body broke off (it left mid-upload). Reset the upstream connection so
        # that the upstream never sees a complete request.
        conn.abort(ConnectionResetError(f"the client's request body broke off ({exc!r})"))


async def _flush(conn: Connection) -> None:
    """Wait until a body written whole has left, then start the wait for the answer."""
    with contextlib.suppress(UpstreamError):  # the reader of the answer reports it
        await conn.drain()
        conn.sent()
