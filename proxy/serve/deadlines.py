"""Deadlines of a client connection: the request head's, then idle timeouts for body and answer.

Each connection has one timer: it fires at the head's deadline (``--header-timeout``, from the
connection's start or from a later head's first byte), then, while a request is handled, every
quarter of ``--client-timeout`` to see whether its body or its answer has moved. Nothing is done
per chunk; per request, the handler notes when it began. A connection idle between requests is
left to aiohttp's own keep-alive timer.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from .limits import Limits

log = logging.getLogger("proxy.limits")  # with the cap's warnings: one logger for the limits


class WatchedHandler(RequestHandler):
    """aiohttp's connection handler with the deadlines of :class:`Limits`."""

    __slots__ = (
        "reserved",
        "_limits",
        "_socket",
        "_timer",
        "_head_since",
        "_head_seen",
        "_body",
        "_read_seen",
        "_read_at",
        "_write_seen",
        "_write_at",
    )

    def __init__(self, manager: Any, *, limits: Limits, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.reserved = False  # over the cap
        self._limits = limits
        self._socket: asyncio.Transport | None = None  # kept until lost (aiohttp forgets it)
        self._timer: asyncio.TimerHandle | None = None
        self._head_since = 0.0  # when the head being waited for began; 0: none is
        self._head_seen = False  # whether a byte of it has come
        self._body: StreamReader | None = None
        self._read_seen = self._write_seen = 0
        self._read_at = self._write_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._socket = cast(asyncio.Transport, transport)  # as aiohttp takes it: no check
        # The first head's deadline runs from the start: a connection that sends nothing is
        # closed too.
        self._head_since = self._loop.time()
        self._schedule(self._head_since)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._socket = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._head_seen and (self._waiter is not None or not self._request_count):
            # The first bytes of a head (the handler waits for one): a later head's deadline
            # runs from here, so that a connection kept alive is not cut for being idle.
            self._head_seen = True
            if not self._head_since:
                self._head_since = self._loop.time()
                if self._timer is None:
                    self._schedule(self._head_since)
        super().data_received(data)

    def request_started(self, body: StreamReader) -> None:
        """A head has come in full: from now on its body and its answer are watched."""
        self._head_since = 0.0
        self._head_seen = False
        self._body = body
        self._read_seen = body.total_bytes
        self._read_at = self._loop.time()

    def pause_writing(self) -> None:
        super().pause_writing()
        self._note_writing()
        if self._timer is None and not self._upgraded:
            self._timer = self._loop.call_at(self._write_at + self._limits.check_every, self._check)

    def force_close(self) -> None:
        super().force_close()
        socket = self._socket
        if socket is not None and socket.get_write_buffer_size():
            # asyncio's close waits until the client has read what is left: only as long as
            # it keeps reading.
            self._note_writing()
            if self._timer is None and not self._upgraded:
                self._timer = self._loop.call_at(
                    self._write_at + self._limits.check_every, self._check
                )

    def _schedule(self, head_since: float) -> None:
        limits = self._limits
        now = self._loop.time()
        deadline = head_since + limits.header_timeout
        self._timer = self._loop.call_at(min(deadline, now + limits.check_every), self._check)

    def _note_writing(self) -> None:
        if self._socket is not None:
            self._write_seen = self._socket.get_write_buffer_size()
        self._write_at = self._loop.time()

    def _check(self) -> None:
        self._timer = None
        socket = self._socket
        if socket is None or self._upgraded:
            return  # lost, or a WebSocket's: --websocket-idle-timeout is its own
        limits, loop = self._limits, self._loop
        now = loop.time()
        if socket.is_closing():
            if not socket.get_write_buffer_size():
                return
            if self._write_stalled(socket, now):
                self._give_up("answer", "writing the answer")
                return
        elif self._head_since:
            if now >= self._head_since + limits.header_timeout:
                self._head_timed_out()
            else:
                self._schedule(self._head_since)
            return
        elif self._waiter is not None:
            return  # idle between requests: aiohttp's keep-alive timer closes it
        else:
            body = self._body
            if body is not None and not body.is_eof():
                total = body.total_bytes
                if self._reading_paused or total != self._read_seen:
                    # Moving, or the proxy is not reading (its upstream is slow): no stall.
                    self._read_seen, self._read_at = total, now
                elif now - self._read_at >= limits.client_timeout:
                    self._give_up("body", "reading the request body")
                    return
            if not self._paused:
                self._note_writing()
            elif self._write_stalled(socket, now):
                self._give_up("answer", "writing the answer")
                return
        self._timer = loop.call_at(now + limits.check_every, self._check)

    def _write_stalled(self, socket: asyncio.Transport, now: float) -> bool:
        size = socket.get_write_buffer_size()
        if size < self._write_seen:  # the client took some
            self._write_at = now
        self._write_seen = size
        return now - self._write_at >= self._limits.client_timeout

    def _head_timed_out(self) -> None:
        self._limits.metrics.client_timeout("header")
        socket = self._socket
        if self._head_seen and socket is not None:
            socket.write(self._limits.timeout_answer())
            log.info(
                "408 to %s: no complete request head in %gs",
                _peer(socket),
                self._limits.header_timeout,
            )
        self.force_close()

    def _give_up(self, reason: str, doing: str) -> None:
        self._limits.metrics.client_timeout(reason)
        socket = self._socket
        if socket is not None:
            log.info(
                "closed the connection from %s: no progress %s in %gs",
                _peer(socket),
                doing,
                self._limits.client_timeout,
            )
            socket.abort()  # close() would wait for the client to read what is left
        self.force_close()


def _peer(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else "a unix socket client"
