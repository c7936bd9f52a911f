"""One response read from the bytes as they come: its head, then its body's pieces."""

from __future__ import annotations

from .chunked import ChunkedDecoder
from .wire import Framing, Head, ParseError, parse_head

# Larger heads are refused: the API's answers carry a dozen short fields.
MAX_HEAD = 64 * 1024
MAX_INTERIM = 10


class ResponseParser:
    """Reads one answer: interim answers (100, 103) are skipped, then its head and body.

    ``done`` turns true at the end of the body; ``clean`` turns false when bytes nobody asked
    for follow it (the connection must then not be reused); ``scanned`` counts the bytes
    looked at while searching for the end of a head. Raises ParseError on anything that is
    not well-formed HTTP/1.1. Applies no policy: every field is kept as received.
    """

    __slots__ = (
        "_method",
        "_buffer",
        "_searched",
        "_left",
        "_decoder",
        "_interim",
        "head",
        "done",
        "clean",
        "scanned",
        "_upgrade",
        "upgraded",
    )

    def __init__(self, method: str, upgrade: bool = False) -> None:
        self._method = method
        self._upgrade = upgrade  # the request asked to switch protocols: a 101 may end it
        self.upgraded = False  # a 101 came: what follows is the new protocol's, not HTTP
        self._buffer = bytearray()
        self._searched = 0  # where the search for the head's end resumes
        self._left = 0
        self._decoder: ChunkedDecoder | None = None
        self._interim = 0
        self.head: Head | None = None
        self.done = False
        self.clean = True
        self.scanned = 0

    def feed(self, data: bytes) -> list[bytes]:
        """Take the next bytes received; return the body pieces in them."""
        if self.done:
            if self.upgraded:
                return [data] if data else []
            self.clean = self.clean and not data
            return []
        if self.head is None:
            data = self._head(data)
            if self.upgraded:
                return [data] if data else []  # the new protocol's first bytes
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
            pieces = self._decoder.feed(data)
            if self._decoder.done:
                self.done = True
                self.clean = not self._decoder.extra
            return pieces
        return [data]  # Framing.CLOSE: everything until the upstream closes

    def eof(self) -> None:
        """The upstream closed the connection: the end of the body, or a broken answer."""
        if not self.done:
            if self.head is None or self.head.framing is not Framing.CLOSE:
                raise ParseError("the connection closed before the answer was complete")
            self.done = True

    def _head(self, data: bytes) -> bytes:
        buffer = self._buffer
        # The head came in pieces: they gather in the buffer (appending is amortised
        # linear), else the search runs on the bytes received, with no copy.
        view: bytes | bytearray = data
        if buffer:
            buffer += data
            view = buffer
        while True:
            # Resume where the last search stopped, less the 3 bytes a terminator split
            # across reads may have begun with: each byte is looked at about once, however
            # small the reads (h11's receive buffer does the same).
            start = max(self._searched - 3, 0)
            end = view.find(b"\r\n\r\n", start)
            self.scanned += (end + 4 if end >= 0 else len(view)) - start
            if end > MAX_HEAD or (end < 0 and len(view) > MAX_HEAD):
                raise ParseError("response head too long")
            if end < 0:
                if view is not buffer:
                    buffer += view
                self._searched = len(buffer)
                return b""
            head = parse_head(bytes(view[:end]), self._method)
            rest = bytes(view[end + 4 :])
            buffer.clear()
            self._searched = 0
            if head.status == 101 and self._upgrade:
                # RFC 9110 15.2.2: the answer ends here, and the connection now speaks the
                # protocol switched to; the caller takes it over whole.
                self.head, self.done, self.upgraded = head, True, True
                return rest
            if head.status < 200:
                if head.status == 101:  # no Upgrade was asked for, so none may be accepted
                    raise ParseError("unexpected 101 Switching Protocols")
                if not head.keep_alive:
                    # HTTP/1.0 has no interim answers, and one that closes the connection ends
                    # the exchange for llhttp: what follows is no longer read as the answer.
                    raise ParseError("an interim answer from HTTP/1.0 or with Connection: close")
                self._interim += 1
                if self._interim > MAX_INTERIM:
                    raise ParseError("too many interim answers")
                view = rest  # an interim answer: the real one follows
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
