"""The chunked transfer coding, decoded incrementally (RFC 9112 section 7.1)."""

from __future__ import annotations

import re

MAX_CHUNK_LINE = 4096
MAX_TRAILERS = 64 * 1024
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")


class ChunkedError(ValueError):
    """The chunked framing is broken."""


class ChunkedDecoder:
    """Incremental decoder for the chunked transfer coding (RFC 9112 section 7.1).

    ``feed`` returns the data of the chunks in what it was given; ``done`` turns true after
    the last chunk and the trailer section (whose fields are dropped, as the proxy sends the
    body on with a framing of its own). ``extra`` holds any bytes that came after that.
    """

    __slots__ = ("_pending", "_left", "_state", "_trailers", "done", "extra")

    def __init__(self) -> None:
        self._pending = b""
        self._left = 0
        self._state = "size"  # size -> data -> crlf -> size ... -> trailers
        self._trailers = 0
        self.done = False
        self.extra = b""

    def feed(self, data: bytes) -> list[bytes]:
        if self._pending:
            data, self._pending = self._pending + data, b""
        out: list[bytes] = []
        pos, end = 0, len(data)
        while pos < end and not self.done:
            state = self._state
            if state == "data":
                take = min(self._left, end - pos)
                out.append(data[pos : pos + take])
                pos += take
                self._left -= take
                if not self._left:
                    self._state = "crlf"
            elif state == "crlf":
                if end - pos < 2:
                    self._pending = data[pos:]
                    return out
                if data[pos : pos + 2] != b"\r\n":
                    raise ChunkedError("chunk data not followed by CRLF")
                pos += 2
                self._state = "size"
            else:
                line_end = data.find(b"\r\n", pos)
                if line_end < 0:
                    self._pending = data[pos:]
                    if len(self._pending) > MAX_CHUNK_LINE:
                        raise ChunkedError("chunk size line too long")
                    return out
                line = data[pos:line_end]
                pos = line_end + 2
                if state == "size":
                    self._size(line)
                else:
                    self._trailer(line)
        if self.done:
            self.extra = data[pos:]
        return out

    def _size(self, line: bytes) -> None:
        if len(line) > MAX_CHUNK_LINE:
            raise ChunkedError("chunk size line too long")
        if b"\n" in line or b"\r" in line:
            raise ChunkedError("bare CR or LF in a chunk size line")
        size = line.partition(b";")[0].rstrip(b" \t")  # chunk extensions are ignored
        if _HEX.fullmatch(size) is None:
            raise ChunkedError("invalid chunk size")
        self._left = int(size, 16)
        self._state = "data" if self._left else "trailers"

    def _trailer(self, line: bytes) -> None:
        if not line:
            self.done = True
            return
        if b"\n" in line or b"\r" in line:
            raise ChunkedError("bare CR or LF in a trailer field")
        self._trailers += len(line) + 2
        if self._trailers > MAX_TRAILERS:
            raise ChunkedError("trailer section too long")
