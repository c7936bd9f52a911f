"""Back-pressure towards the upstream: waiting while it does not take what was written."""

from __future__ import annotations

import asyncio

from ..errors import UpstreamTimeout


class WriteFlow(asyncio.Protocol):
    """The writing half of an upstream connection's protocol (see connection.Connection)."""

    _loop: asyncio.AbstractEventLoop
    _read_timeout: float
    _where: str
    _error: BaseException | None
    transport: asyncio.Transport | None
    _drain: asyncio.Future[None] | None = None
    _write_paused = False

    def _fail(self, error: BaseException) -> None:
        raise NotImplementedError

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    @property
    def backed_up(self) -> bool:
        """More is written than the upstream has taken yet."""
        return self._write_paused

    async def drain(self) -> None:
        """Wait while the upstream is not taking what was written (back-pressure).

        Fails once the upstream has taken nothing for ``read_timeout`` seconds; a slow
        reader that keeps taking is waited for.
        """
        if self._error is not None:
            raise self._error
        if not self._write_paused or self.transport is None:
            return
        drained = self._drain = self._loop.create_future()
        left = self.transport.get_write_buffer_size()
        while True:
            done, _ = await asyncio.wait({drained}, timeout=self._read_timeout)
            if done:
                drained.result()
                return
            now_left = self.transport.get_write_buffer_size()
            if now_left >= left:
                stalled = UpstreamTimeout(
                    f"the upstream {self._where} stopped taking the request body"
                )
                self._fail(stalled)
                raise stalled
            left = now_left
