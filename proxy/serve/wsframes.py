"""WebSocket frame boundaries (RFC 6455 section 5.2), followed only to know where a close fits."""

from __future__ import annotations

# RFC 6455 section 7.4.1: 1001 "going away", as a server going down sends.
GOING_AWAY = 1001


class FrameCursor:
    """Follows one direction's frames over the bytes relayed, never changing them: at a
    boundary between two frames a control frame such as a close may be sent in between
    (section 5.4 allows one even amid a fragmented message)."""

    __slots__ = ("_header", "_left", "frames")

    def __init__(self) -> None:
        self._header = bytearray()  # a frame header read so far (2 to 14 bytes)
        self._left = 0  # payload bytes of the current frame still to come
        self.frames = 0  # whole frame headers seen

    @property
    def at_boundary(self) -> bool:
        return not self._left and not self._header

    def feed(self, data: bytes) -> None:
        """Take the next relayed bytes."""
        position, size = 0, len(data)
        header = self._header
        while position < size:
            if self._left:
                step = min(self._left, size - position)
                self._left -= step
                position += step
                continue
            header.append(data[position])
            position += 1
            need = _header_size(header)
            if len(header) == need:
                self._left = _payload_size(header)
                self.frames += 1
                header.clear()


def _header_size(header: bytearray) -> int:
    """The whole header's size once its second byte is known (14 at most)."""
    if len(header) < 2:
        return 2
    short = header[1] & 0x7F
    extended = 2 if short == 126 else 8 if short == 127 else 0
    return 2 + extended + (4 if header[1] & 0x80 else 0)


def _payload_size(header: bytearray) -> int:
    short = header[1] & 0x7F
    if short == 126:
        return int.from_bytes(header[2:4], "big")
    if short == 127:
        return int.from_bytes(header[2:10], "big")
    return short


def close_frame(code: int, mask: bytes | None = None) -> bytes:
    """A close frame with ``code`` (section 5.5.1); ``mask``: the 4-byte key a client's frames
    must carry (section 5.3), None for a frame to the client."""
    payload = code.to_bytes(2, "big")
    if mask is None:
        return bytes((0x88, len(payload))) + payload
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return bytes((0x88, 0x80 | len(payload))) + mask + masked
