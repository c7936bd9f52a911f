"""HTTP/1.1 on the wire to the upstream: request heads, response heads, body framing (RFC 9112)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from multidict import CIMultiDict

from .chunked import ChunkedDecoder, ChunkedError
from .headers import connection_tokens, drop_hop_by_hop

# Larger heads are refused: the API's answers carry a dozen short fields.
MAX_HEAD = 64 * 1024
# Field lines: an RFC 9110 section 5.6.2 token for the name, then a colon and the value.
_FIELD = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+:[^\r\n]*"
_FIELDS = re.compile(f"{_FIELD}(?:\r\n{_FIELD})*")
_DIGITS = re.compile(r"[0-9]{1,18}")
_STATUS = re.compile(r"[1-9][0-9]{2}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
MAX_INTERIM = 10


class FramingError(ValueError):
    """What the upstream sent is not a well-formed HTTP/1.1 response."""


class Framing(Enum):
    """How the end of a response body is found (RFC 9112 section 6.3)."""

    NONE = "none"  # HEAD, 1xx, 204, 304: no body whatever the fields say
    LENGTH = "length"
    CHUNKED = "chunked"
    CLOSE = "close"  # read until the upstream closes the connection


@dataclass(slots=True)
class Head:
    """A parsed response head; ``headers`` are its end-to-end fields (no hop-by-hop ones)."""

    status: int
    reason: str
    headers: CIMultiDict[str]
    framing: Framing
    length: int
    keep_alive: bool


def request_head(method: str, target: str, lines: list[bytes]) -> bytes:
    """The request line and header lines, ready to write.

    Values pass through byte for byte, but a CR or LF inside one would start a field of its
    own (request smuggling), so a head with more line ends than lines is refused.
    """
    head = b"\r\n".join([f"{method} {target} HTTP/1.1".encode(), *lines, b"", b""])
    ends = len(lines) + 2
    if head.count(b"\n") != ends or head.count(b"\r") != ends or b"\r\n\r\n" in head[:-4]:
        raise FramingError("a header line is empty or contains CR or LF")
    return head


def parse_head(raw: bytes, method: str) -> Head:
    """Parse a status line and fields (without the blank line); ``method`` is the request's."""
    text = raw.decode("utf-8", "surrogateescape")
    # CR and LF only as line ends; no other control character but HTAB anywhere (RFC 9110
    # section 5.5: NUL, CR and LF in a value must be refused; RFC 9112 section 4).
    pairs = text.count("\r\n")
    if _CONTROL.search(text) or text.count("\r") != pairs or text.count("\n") != pairs:
        raise FramingError("control character in the answer's head")
    status_line, _, block = text.partition("\r\n")
    version, _, rest = status_line.partition(" ")
    code, _, reason = rest.partition(" ")
    if version not in ("HTTP/1.1", "HTTP/1.0") or _STATUS.fullmatch(code) is None:
        raise FramingError("not an HTTP/1.x status line")
    status = int(code)
    fields: list[tuple[str, str]] = []
    if block:
        # One pass checks every line: a token, a colon, no CR or LF inside (so no whitespace
        # before the colon and no obsolete line folding, RFC 9112 section 5).
        if _FIELDS.fullmatch(block) is None:
            raise FramingError("malformed header field")
        fields = [
            (name, value.strip(" \t"))
            for name, _, value in (line.partition(":") for line in block.split("\r\n"))
        ]
    headers = CIMultiDict(fields)
    keep_alive = version == "HTTP/1.1" and "close" not in connection_tokens(headers)
    if "Transfer-Encoding" in headers:
        if version != "HTTP/1.1":  # RFC 9112 section 6.1: faulty framing
            raise FramingError("Transfer-Encoding in an HTTP/1.0 answer")
        if "Content-Length" in headers:
            # RFC 9112 section 6.3: Transfer-Encoding wins; an intermediary removes the
            # Content-Length (else the client would frame the answer by it) and does not
            # trust the connection any further.
            del headers["Content-Length"]
            keep_alive = False
    framing, length = _framing(headers, status, method)
    if framing is Framing.CLOSE:
        keep_alive = False
    drop_hop_by_hop(headers)  # what is left is passed on to the client
    return Head(status, reason, headers, framing, length, keep_alive)


def _framing(headers: CIMultiDict[str], status: int, method: str) -> tuple[Framing, int]:
    if method == "HEAD" or status < 200 or status in (204, 304):
        return Framing.NONE, 0
    if method == "CONNECT" and status < 300:
        return Framing.NONE, 0  # the tunnel starts right after the head
    codings = headers.getall("Transfer-Encoding", ())
    if codings:
        # Only chunked: the proxy decodes no other transfer coding, and passing one on
        # undeclared (the field is hop-by-hop) would hand the client bytes it cannot read.
        if [c.strip().lower() for v in codings for c in v.split(",")] != ["chunked"]:
            raise FramingError("a transfer coding other than chunked")
        return Framing.CHUNKED, 0
    lengths = {value.strip() for value in headers.getall("Content-Length", ())}
    if not lengths:
        return Framing.CLOSE, 0
    # Repeated identical values are allowed, different ones are not (RFC 9110 section 8.6).
    if len(lengths) != 1 or _DIGITS.fullmatch(next(iter(lengths))) is None:
        raise FramingError("invalid Content-Length")
    return Framing.LENGTH, int(lengths.pop())


class ResponseParser:
    """Reads one answer from the bytes as they come: its head, then its body's pieces.

    Interim answers (100, 103) are skipped. ``done`` turns true at the end of the body;
    ``clean`` turns false when bytes nobody asked for follow it (the connection must then
    not be reused). Raises FramingError on anything that is not well-formed HTTP/1.1.
    """

    __slots__ = ("_method", "_buffer", "_left", "_decoder", "_interim", "head", "done", "clean")

    def __init__(self, method: str) -> None:
        self._method = method
        self._buffer = bytearray()
        self._left = 0
        self._decoder: ChunkedDecoder | None = None
        self._interim = 0
        self.head: Head | None = None
        self.done = False
        self.clean = True

    def feed(self, data: bytes) -> list[bytes]:
        """Take the next bytes received; return the body pieces in them."""
        if self.done:
            self.clean = self.clean and not data
            return []
        if self.head is None:
            data = self._head(data)
            if self.head is None or self.done:
                return []
        if not data:
            return []
        framing = self.head.framing
        if framing is Framing.LENGTH:
            if len(data) > self._left:
                self.clean = False
                data = data[: self._left]
            self._left -= len(data)
            self.done = not self._left
            return [data]
        if self._decoder is not None:
            try:
                pieces = self._decoder.feed(data)
            except ChunkedError as exc:
                raise FramingError(str(exc)) from None
            if self._decoder.done:
                self.done = True
                self.clean = not self._decoder.extra
            return pieces
        return [data]  # Framing.CLOSE: everything until the upstream closes

    def eof(self) -> None:
        """The upstream closed the connection: the end of the body, or a broken answer."""
        if not self.done:
            if self.head is None or self.head.framing is not Framing.CLOSE:
                raise FramingError("the connection closed before the answer was complete")
            self.done = True

    def _head(self, data: bytes) -> bytes:
        buffer = self._buffer
        buffer += data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end > MAX_HEAD or (end < 0 and len(buffer) > MAX_HEAD):
                raise FramingError("response head too long")
            if end < 0:
                return b""
            head = parse_head(bytes(buffer[:end]), self._method)
            rest = bytes(buffer[end + 4 :])
            buffer.clear()
            if head.status < 200:
                if head.status == 101:  # no Upgrade is ever sent, so none may be accepted
                    raise FramingError("unexpected 101 Switching Protocols")
                self._interim += 1
                if self._interim > MAX_INTERIM:
                    raise FramingError("too many interim answers")
                buffer += rest  # an interim answer: the real one follows
                continue
            self.head = head
            self._left = head.length
            if head.framing is Framing.CHUNKED:
                self._decoder = ChunkedDecoder()
            elif head.framing is Framing.NONE or (
                head.framing is Framing.LENGTH and not head.length
            ):
                self.done = True
                self.clean = not rest
            return rest
