"""The log's stream, written in batches: lines wait a few milliseconds, never past a record."""

from __future__ import annotations

import asyncio
import atexit
import threading
from typing import TextIO

# A line waits at most this long: one system call carries every line of a busy moment,
# where one per line cost more than the rest of the access line (issue 22's measurement).
DELAY = 0.005
# Written in pieces of whole lines up to this size: a write to a pipe of at most PIPE_BUF
# bytes (4,096 on Linux; POSIX requires 512) is never interleaved with another process's,
# so lines of --workers sharing one stderr pipe stay whole.
PIECE = 4096


class Sink:
    """Lines for ``stream``, kept until DELAY has passed (on the running event loop; at once
    without one), the buffer reaches a piece, ``flush`` is called (before any other log
    record, so the order of lines is kept; at the stop; at exit)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._lines: list[str] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None
        # Other threads log too (the supervisor's); held while writing, so lines keep order.
        self._lock = threading.Lock()
        atexit.register(self.flush)

    def write(self, line: str) -> None:
        """Queue one line (with its newline)."""
        with self._lock:
            self._lines.append(line)
            self._size += len(line) if line.isascii() else len(line.encode())
            if self._size < PIECE and self._timer is None:
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    pass  # no event loop (a command, a thread): written now, below
                else:
                    self._timer = loop.call_later(DELAY, self.flush)
                    return
            elif self._size < PIECE:
                return
        self.flush()

    def flush(self) -> None:
        """Write every queued line now."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            lines, self._lines, self._size = self._lines, [], 0
            piece: list[str] = []
            size = 0
            try:
                for line in lines:
                    length = len(line) if line.isascii() else len(line.encode())
                    if piece and size + length > PIECE:
                        self._out("".join(piece))
                        piece, size = [], 0
                    piece.append(line)
                    size += length
                if piece:
                    self._out("".join(piece))
            except (OSError, ValueError):
                pass  # stderr closed or gone (a reader that left): nothing else can be told

    def _out(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
