"""Differential tests: the upstream client's parser against llhttp and h11 (tests/differential.py).

Answers come from a grammar of valid and near-valid heads and bodies, sometimes mutated a
byte or two, fed in any split. Whenever our parser accepts an answer, llhttp and h11 must
both accept it with the same status, fields and body; whenever it would reuse the
connection, both must read the next answer from where it starts. HEAD and CONNECT are left
out: llhttp's response parser cannot be told the request's method.
"""

from __future__ import annotations

import os
from collections import Counter

from differential import TOKENS, compare
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# CI runs this many; a longer campaign: DIFFERENTIAL_EXAMPLES=1000000 pytest -n 0 -s -k campaign
EXAMPLES = int(os.environ.get("DIFFERENTIAL_EXAMPLES", "2500"))

# Bytes that tell readers apart: white space of every kind, controls, obs-text, separators,
# and the UTF-8 forms of NBSP and NEL that str.strip() would take for white space.
ODD = [*TOKENS, b"  ", b"\x01", b"\x0c", b"\xa0", b"\xe9", b"Z"]


def mostly(
    usual: st.SearchStrategy[bytes], odd: st.SearchStrategy[bytes]
) -> st.SearchStrategy[bytes]:
    """``usual`` nine times in ten: most answers must get far enough to test framing."""
    return st.integers(0, 9).flatmap(lambda i: usual if i else odd)


odd_bytes = st.lists(st.sampled_from(ODD), max_size=3).map(b"".join)
text = st.sampled_from([b"", b"OK", b"a b", b"x-y", b"caf\xc3\xa9", b"caf\xe9"])
value = mostly(text, st.tuples(odd_bytes, text, odd_bytes).map(b"".join))

status_line = mostly(
    st.sampled_from(
        [
            b"HTTP/1.1 200 OK",
            b"HTTP/1.0 200 OK",
            b"HTTP/1.1 201 Created",
            b"HTTP/1.1 404 Not Found",
            b"HTTP/1.1 200",
            b"HTTP/1.1 200 ",
            b"HTTP/1.1 204 No Content",
            b"HTTP/1.1 304 Not Modified",
        ]
    ),
    st.tuples(
        st.sampled_from(
            [
                b"HTTP/1.1",
                b"HTTP/1.0",
                b"HTTP/1.2",
                b"HTTP/2.0",
                b"http/1.1",
                b"HTTP/1.1 ",
                b" HTTP/1.1",
                b"HTTP/01.1",
            ]
        ),
        st.sampled_from([b" ", b"  ", b"\t"]),
        st.sampled_from([b"200", b"204", b"304", b"500", b"099", b"2000", b"20", b" 200", b"+20"]),
        st.sampled_from([b"", b" ", b"\t"]),
        value,
    ).map(b"".join),
)

names = st.sampled_from(
    [
        b"X-A",
        b"Server",
        b"Set-Cookie",
        b"Connection",
        b"Keep-Alive",
        b"Content-Type",
        b"X A",
        b"X\x00",
        b"\xe9",
        b"Trailer",
        b"Upgrade",
    ]
)
separators = mostly(st.just(b": "), st.sampled_from([b":", b":\t", b" :", b":  ", b"\t:"]))
line_ends = mostly(st.just(b"\r\n"), st.sampled_from([b"\n", b"\r", b" \r\n", b"\r\n "]))
field_line = st.tuples(names, separators, value, line_ends).map(b"".join)
connection = st.sampled_from(
    [
        b"Connection: close\r\n",
        b"Connection: keep-alive\r\n",
        b"Connection: Close, x\r\n",
        b"Connection: \xc2\xa0close\r\n",
    ]
)


@st.composite
def framing_fields(draw: st.DrawFn, length: int) -> bytes:
    """Content-Length and Transfer-Encoding, well-formed or not, once, twice or both."""
    lengths = mostly(
        st.just(b"%d"),
        st.sampled_from(
            [
                b"+%d",
                b" %d",
                b"%d ",
                b"0%d",
                b"%d, %d",
                b"%d,%d",
                b"-%d",
                b"0x%d",
                b"%d\xc2\xa0",
                b"\xc2\xa0 %d",
                b"%d\x0b",
                b"99999999999999999999",
                b"%d;",
            ]
        ),
    )
    codings = mostly(
        st.sampled_from([b"chunked", b"Chunked"]),
        st.sampled_from(
            [
                b" chunked",
                b"chunked ",
                b"chunked\xc2\x85",
                b"gzip, chunked",
                b"chunked, gzip",
                b"identity",
                b"chunked,",
                b"\x0bchunked",
                b"chunked\t",
            ]
        ),
    )
    counts = draw(st.sampled_from([(1, 0), (1, 0), (0, 1), (0, 1), (0, 0), (2, 0), (0, 2), (1, 1)]))
    out = b""
    for _ in range(counts[0]):
        form = draw(lengths)
        out += b"Content-Length: " + form.replace(b"%d", b"%d" % length) + b"\r\n"
    for _ in range(counts[1]):
        out += b"Transfer-Encoding: " + draw(codings) + b"\r\n"
    return out


extensions = mostly(
    st.sampled_from([b"", b";a=b", b";a", b';a="x y"']),
    st.sampled_from(
        [b" ;a=b", b';a="x y"', b";a=b;c", b"; a", b";a=\x00", b";a =b", b'";a="\\"', b";\xe9"]
    ),
)
trailer_lines = st.lists(
    mostly(
        st.just(b"X: 1\r\n"), st.one_of(field_line, st.sampled_from([b"hello\r\n", b": x\r\n"]))
    ),
    max_size=2,
)


@st.composite
def chunked_body(draw: st.DrawFn) -> bytes:
    out = b""
    for piece in draw(st.lists(st.binary(min_size=1, max_size=20), max_size=3)):
        size = draw(mostly(st.sampled_from([b"%x", b"%X", b"0%x"]), st.just(b"%x "))) % len(piece)
        end = draw(mostly(st.just(b"\r\n"), st.sampled_from([b"\n", b""])))
        out += size + draw(extensions) + b"\r\n" + piece + end
    out += draw(mostly(st.sampled_from([b"0", b"00"]), st.just(b"0 "))) + draw(extensions) + b"\r\n"
    return out + b"".join(draw(trailer_lines)) + b"\r\n"


interim = mostly(
    st.sampled_from(
        [
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n",
        ]
    ),
    st.just(b"HTTP/1.1 100 Continue\r\nContent-Length:\xc2\xa0 5\r\n\r\n"),
)


@st.composite
def answers(draw: st.DrawFn) -> bytes:
    """One answer (after any interim ones), sometimes mutated, sometimes followed by bytes."""
    body = draw(st.binary(max_size=30))
    declared = draw(st.sampled_from([len(body), len(body), max(len(body) - 1, 0), len(body) + 1]))
    fields = b"".join(draw(st.lists(field_line, max_size=2)))
    if draw(st.integers(0, 3)) == 0:
        fields += draw(connection)
    framing = draw(framing_fields(declared))
    chunked = b"Transfer-Encoding" in framing and draw(st.integers(0, 9)) > 0
    data = b"".join(draw(st.lists(interim, max_size=2))) if draw(st.integers(0, 3)) == 0 else b""
    data += draw(status_line) + b"\r\n" + framing + fields + b"\r\n"
    data += draw(chunked_body()) if chunked else body
    data += draw(mostly(st.just(b""), st.sampled_from([b"x", b"\r\n", b"HTTP/1.1 200 OK\r\n"])))
    for _ in range(draw(st.integers(1, 2)) if draw(st.integers(0, 3)) == 0 else 0):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        change = draw(st.sampled_from(["replace", "insert", "delete"]))
        byte = draw(st.sampled_from(ODD))
        if change == "replace":
            data = data[:at] + byte + data[at + 1 :]
        elif change == "insert":
            data = data[:at] + byte + data[at:]
        else:
            data = data[:at] + data[at + 1 :]
    return data


def test_differential_campaign() -> None:
    counts: Counter[str] = Counter()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(answers(), st.sampled_from(["GET", "POST"]), st.lists(st.integers(0), max_size=6))
    def check(data: bytes, method: str, cuts: list[int]) -> None:
        verdict = compare(data, method, cuts)
        assert not verdict.problems, (data, verdict.problems)
        counts["inputs"] += 1
        if verdict.ours.message is None:
            counts[
                "refused, both libraries too"
                if not verdict.both_accept
                else "refused, both libraries accept"
            ] += 1
        else:
            counts["accepted, reused" if verdict.ours.reusable else "accepted, closed"] += 1

    check()
    print("\ndifferential:", dict(sorted(counts.items())))
    # The grammar must reach every outcome, or the test proves little.
    assert counts["accepted, reused"] > EXAMPLES // 40, counts
    assert counts["refused, both libraries too"] > EXAMPLES // 20, counts
