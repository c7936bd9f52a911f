"""HTTP/1.1 heads on the wire: request heads written, response heads parsed (RFC 9112)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from multidict import CIMultiDict

from ..errors import RequestHeadError

# What is accepted is the intersection of what llhttp (strict) and h11 accept, so that no
# reader before or after the proxy can frame an answer differently (tests/test_differential.py).
# Status line: RFC 9112 section 4; the reason phrase may be empty or left out with its space
# (both libraries read "HTTP/1.1 200" so); HTAB, SP, VCHAR and obs-text in it.
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9]{2})(?: ([\t\x20-\x7e\x80-\xff]*))?")
# Field lines (RFC 9112 section 5, RFC 9110 section 5.5): a token, a colon, a value of HTAB,
# SP, VCHAR and obs-text; no whitespace before the colon, no obsolete line folding.
_FIELD = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t\x20-\x7e\x80-\xff]*"
FIELDS = re.compile(rb"%s(?:\r\n%s)*" % (_FIELD, _FIELD))
FIELD_LINE = re.compile(_FIELD)
_DIGITS = re.compile(rb"[0-9]{1,18}")


class ParseError(ValueError):
    """What the upstream sent is not a well-formed HTTP/1.1 response."""


class Framing(Enum):
    """How the end of a response body is found (RFC 9112 section 6.3)."""

    NONE = "none"  # HEAD, 1xx, 204, 304: no body whatever the fields say
    LENGTH = "length"
    CHUNKED = "chunked"
    CLOSE = "close"  # read until the upstream closes the connection


@dataclass(slots=True)
class Head:
    """A parsed response head, every field as received (hop-by-hop ones included).

    Names are ASCII; values are the received bytes decoded as UTF-8, any invalid byte kept as
    a surrogate escape (``ascii`` tells when there is none to look for).
    """

    status: int
    reason: str
    headers: CIMultiDict[str]
    framing: Framing
    length: int
    keep_alive: bool
    ascii: bool = True


def request_head(method: str, target: str, lines: list[bytes]) -> bytes:
    """The request line and header lines, ready to write.

    Values pass through byte for byte, but a CR or LF inside one would start a field of its
    own (request smuggling), so a head with more line ends than lines is refused.
    """
    head = b"\r\n".join([f"{method} {target} HTTP/1.1".encode(), *lines, b"", b""])
    ends = len(lines) + 2
    if head.count(b"\n") != ends or head.count(b"\r") != ends or b"\r\n\r\n" in head[:-4]:
        raise RequestHeadError("a header line is empty or contains CR or LF")
    return head


def _decode(raw: bytes) -> str:
    return raw.decode("ascii") if raw.isascii() else raw.decode("utf-8", "surrogateescape")


def parse_head(raw: bytes, method: str) -> Head:
    """Parse a status line and fields (without the blank line); ``method`` is the request's."""
    status_line, _, block = raw.partition(b"\r\n")
    match = _STATUS_LINE.fullmatch(status_line)
    if match is None:
        raise ParseError("not an HTTP/1.x status line")
    http11 = match[1] == b"1"
    status = int(match[2])
    # CR and LF only as line ends: one pass checks every field line (a token, a colon, no
    # control character but HTAB in the value: RFC 9110 section 5.5 refuses NUL, CR and LF).
    if block and FIELDS.fullmatch(block) is None:
        raise ParseError("malformed header field")
    # Decoded once: names are ASCII (tokens), and the split points (CR LF, the colon) are
    # ASCII, so splitting the text splits the bytes at the same places.
    headers: CIMultiDict[str] = CIMultiDict(
        [
            (name, value.strip(" \t"))
            for name, _, value in (line.partition(":") for line in _decode(block).split("\r\n"))
        ]
        if block
        else ()
    )
    if b"\t\r\n" in block or block.endswith(b"\t"):
        _refuse_tab_after_coding(block)
    keep_alive = http11 and not _says_close(headers)
    framing, length = _framing(headers, status, method, http11)
    if framing is Framing.CLOSE:
        keep_alive = False
    return Head(
        status, _decode(match[3] or b""), headers, framing, length, keep_alive, raw.isascii()
    )


def _refuse_tab_after_coding(block: bytes) -> None:
    """llhttp does not read "chunked" followed by HTAB as chunked (it then reads the body to
    the connection's end), h11 does: such a Transfer-Encoding is refused."""
    for line in block.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"transfer-encoding" and b"\t" in value[len(value.rstrip(b" \t")) :]:
            raise ParseError("white space other than SP after a transfer coding")


def _says_close(headers: CIMultiDict[str]) -> bool:
    return any(
        token.strip(" \t").lower() == "close"
        for value in headers.getall("Connection", ())
        for token in value.split(",")
    )


def _framing(
    headers: CIMultiDict[str], status: int, method: str, http11: bool
) -> tuple[Framing, int]:
    codings = headers.getall("Transfer-Encoding", ())
    lengths = headers.getall("Content-Length", ())
    if codings and not http11:  # RFC 9112 section 6.1: faulty framing
        raise ParseError("Transfer-Encoding in an HTTP/1.0 answer")
    if codings and lengths:
        # RFC 9112 section 6.3 lets Transfer-Encoding win, but llhttp refuses the pair: an
        # answer two readers could frame two ways is refused rather than guessed at.
        raise ParseError("both Transfer-Encoding and Content-Length")
    if len(lengths) > 1:  # llhttp refuses repeats, even of one value (RFC 9110 section 8.6)
        raise ParseError("more than one Content-Length")
    # Checked whatever the status: both libraries refuse a malformed field in a 1xx, 204 or
    # 304 answer too, where it frames nothing.
    if codings and (len(codings) != 1 or codings[0].lower() != "chunked"):
        # Only chunked: the proxy decodes no other transfer coding, and passing one on
        # undeclared (the field is hop-by-hop) would hand the client bytes it cannot read.
        raise ParseError("a transfer coding other than chunked")
    length = 0
    if lengths:
        digits = lengths[0].encode("utf-8", "surrogateescape")
        if _DIGITS.fullmatch(digits) is None:
            raise ParseError("invalid Content-Length")
        length = int(digits)
    if method == "HEAD" or status < 200 or status in (204, 304):
        return Framing.NONE, 0
    if method == "CONNECT" and status < 300:
        return Framing.NONE, 0  # the tunnel starts right after the head
    if codings:
        return Framing.CHUNKED, 0
    if not lengths:
        return Framing.CLOSE, 0
    return Framing.LENGTH, length
