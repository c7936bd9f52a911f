"""The chunked transfer coding, decoded incrementally (RFC 9112 section 7.1)."""

from __future__ import annotations

import re

from .wire import FIELD_LINE, ParseError

MAX_CHUNK_LINE = 4096
MAX_TRAILERS = 64 * 1024
_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
# chunk-size [ chunk-ext ] (RFC 9112 section 7.1.1), with no white space anywhere: the
# section's BWS is what llhttp and h11 read differently (h11 takes "5 ;a", llhttp refuses it).
_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})(?:;%s(?:=(?:%s|%s))?)*" % (_TOKEN, _TOKEN, _QUOTED))


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
                    raise ParseError("chunk data not followed by CRLF")
                pos += 2
                self._state = "size"
            else:
                line_end = data.find(b"\r\n", pos)
                if line_end < 0:
                    self._pending = data[pos:]
                    if len(self._pending) > MAX_CHUNK_LINE:
                        raise ParseError("chunk size line too long")
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
            raise ParseError("chunk size line too long")
        match = _SIZE_LINE.fullmatch(line)  # extensions are checked, then ignored
        if match is None:
            raise ParseError("invalid chunk size line")
        self._left = int(match[1], 16)
        self._state = "data" if self._left else "trailers"

    def _trailer(self, line: bytes) -> None:
        if not line:
            self.done = True
            return
        if FIELD_LINE.fullmatch(line) is None:  # a field line, as in a head (section 7.1.2)
            raise ParseError("malformed trailer field")
        self._trailers += len(line) + 2
        if self._trailers > MAX_TRAILERS:
            raise ParseError("trailer section too long")
