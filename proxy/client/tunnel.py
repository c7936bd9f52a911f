"""An upstream connection after 101 Switching Protocols: bytes both ways, nothing parsed."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable

from .failures import broken
from .flow import WriteFlow

# Reading from the upstream pauses while this much waits for a slow reader on our side (here,
# and in an HTTP connection's body): memory stays bounded however fast the upstream sends.
HIGH_WATER = 256 * 1024


class Tunnel(WriteFlow):
    """The protocol of a connection handed over after a 101: the caller reads and writes raw
    bytes. No timeout: a quiet socket is not a stuck one (the caller decides when quiet is too
    long). Writing waits while the upstream does not take what was written."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        transport: asyncio.Transport,
        buffered: Iterable[bytes],
        *,
        ended: bool,
        where: str,
    ) -> None:
        self._loop = loop
        self.transport = self._transport = transport  # WriteFlow's may be None; not here
        self._where = where
        self._chunks: deque[bytes] = deque(chunk for chunk in buffered if chunk)
        self._queued = sum(len(chunk) for chunk in self._chunks)
        self._ended = ended  # the upstream closed its side
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._read_paused = False
        self.received = self._queued  # bytes read from the upstream so far

    # --- asyncio.Protocol ------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        self._chunks.append(data)
        self._queued += len(data)
        if self._queued > HIGH_WATER and not self._read_paused:
            self._read_paused = True
            self._transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        self._ended = True
        self._wake()
        return None  # close our side too: there is no half-open tunnel

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended = True
        if self._drain is not None and not self._drain.done():
            self._drain.set_exception(self._error or broken(self._where))
            self._drain.exception()  # read: the writer is told through _error too
        self._wake()

    # --- reading and writing ---------------------------------------------------------------

    async def read(self) -> bytes:
        """The next bytes from the upstream as they come; ``b""`` once it has closed."""
        while True:
            chunks = self._chunks
            if chunks:
                data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                self._queued = 0
                if self._read_paused:
                    self._read_paused = False
                    self._transport.resume_reading()
                return data
            if self._ended:
                return b""
            waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    def write(self, data: bytes) -> None:
        """Send bytes on; ``drain`` waits until the upstream takes them."""
        if self._error is not None:
            raise self._error
        if self._transport.is_closing():
            raise broken(self._where)
        self._transport.write(data)

    async def drain(self) -> None:
        """Wait while the upstream does not take what was written, however long: a socket's
        peer may stop reading for a while, as the client may (memory stays bounded)."""
        if self._error is not None:
            raise self._error
        if self._write_paused:
            drained = self._drain = self._loop.create_future()
            await drained

    @property
    def closed(self) -> bool:
        return self._ended or self._transport.is_closing()

    def close(self) -> None:
        """Close after what was written has gone."""
        self._transport.close()

    def abort(self) -> None:
        """Close at once (a reset), dropping what was not sent."""
        self._transport.abort()

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        self._ended = True
        self._transport.abort()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
