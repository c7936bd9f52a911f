"""Frame boundaries followed over relayed bytes, however the bytes are split."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from proxy.serve.wsframes import GOING_AWAY, FrameCursor, close_frame


def encode(payload_size: int, masked: bool, opcode: int = 0x2) -> bytes:
    """A frame as RFC 6455 5.2 lays it out, written here independently of the cursor."""
    if payload_size < 126:
        length = bytes([payload_size | (0x80 if masked else 0)])
    elif payload_size < 1 << 16:
        length = bytes([126 | (0x80 if masked else 0)]) + payload_size.to_bytes(2, "big")
    else:
        length = bytes([127 | (0x80 if masked else 0)]) + payload_size.to_bytes(8, "big")
    return bytes([0x80 | opcode]) + length + (b"MASK" if masked else b"") + b"p" * payload_size


sizes = st.one_of(st.integers(0, 130), st.sampled_from([65535, 65536, 70000]))


@given(
    frames=st.lists(st.tuples(sizes, st.booleans()), min_size=1, max_size=8),
    cuts=st.lists(st.integers(0, 200_000), max_size=12),
)
def test_the_cursor_is_at_a_boundary_exactly_between_frames(
    frames: list[tuple[int, bool]], cuts: list[int]
) -> None:
    encoded = [encode(size, masked) for size, masked in frames]
    stream = b"".join(encoded)
    ends, total = set(), 0
    for piece in encoded:
        total += len(piece)
        ends.add(total)
    points = sorted({0, len(stream), *(cut % (len(stream) + 1) for cut in cuts)})
    cursor = FrameCursor()
    for start, end in zip(points, points[1:], strict=False):
        cursor.feed(stream[start:end])
        assert cursor.at_boundary == (end in ends or end == 0), (start, end)
    assert cursor.at_boundary and cursor.frames == len(frames)


def test_close_frames_to_the_client_and_to_the_server() -> None:
    assert close_frame(GOING_AWAY) == b"\x88\x02\x03\xe9"
    masked = close_frame(GOING_AWAY, b"\x01\x02\x03\x04")
    assert masked[:6] == b"\x88\x82\x01\x02\x03\x04"
    assert bytes(b ^ k for b, k in zip(masked[6:], b"\x01\x02", strict=True)) == b"\x03\xe9"
    cursor = FrameCursor()
    cursor.feed(masked[:3])
    assert not cursor.at_boundary
    cursor.feed(masked[3:])
    assert cursor.at_boundary and cursor.frames == 1
