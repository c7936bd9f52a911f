"""HTTP/1.1 framing to the upstream: request heads, answer heads, bodies in any split."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.client.chunked import ChunkedDecoder
from proxy.client.parser import ResponseParser
from proxy.client.wire import Framing, ParseError, parse_head, request_head
from proxy.errors import RequestHeadError


def feed_in_pieces(parser: ResponseParser, data: bytes, cuts: list[int]) -> bytes:
    """Feed ``data`` cut at the given offsets; return the body pieces joined."""
    body = b""
    start = 0
    for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        body += b"".join(parser.feed(data[start:cut]))
        start = max(start, cut)
    return body


def chunked(pieces: list[bytes], extension: bytes = b"", trailers: bytes = b"") -> bytes:
    out = b"".join(b"%x%s\r\n%s\r\n" % (len(p), extension, p) for p in pieces if p)
    return out + b"0" + extension + b"\r\n" + trailers + b"\r\n"


# --- request heads -----------------------------------------------------------------------------


def test_request_head_is_written_as_given() -> None:
    head = request_head("POST", "/graphql/v1?a=%20b", [b"Host: api", b"X-A: 1", b"X-A: 2"])
    assert head == b"POST /graphql/v1?a=%20b HTTP/1.1\r\nHost: api\r\nX-A: 1\r\nX-A: 2\r\n\r\n"


@pytest.mark.parametrize("bad", [b"a\r\nX-Injected: 1", b"a\nb", b"a\rb", b"a\r\n"])
def test_request_head_refuses_line_breaks_in_values(bad: bytes) -> None:
    with pytest.raises(RequestHeadError):
        request_head("GET", "/", [b"X-Value: " + bad])


def test_request_head_refuses_an_empty_line() -> None:
    with pytest.raises(RequestHeadError):
        request_head("GET", "/", [b"X-A: 1", b"", b"X-B: 2"])


# --- answer heads ------------------------------------------------------------------------------


def test_head_fields_and_framing() -> None:
    head = parse_head(
        b"HTTP/1.1 201 Created\r\nContent-Length: 12\r\nSet-Cookie: a\r\nset-cookie: b", "POST"
    )
    assert (head.status, head.reason, head.framing, head.length) == (
        201,
        "Created",
        Framing.LENGTH,
        12,
    )
    assert head.headers.getall("Set-Cookie") == ["a", "b"]
    assert head.keep_alive


@pytest.mark.parametrize(
    ("raw", "method", "framing", "keep_alive"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5", "HEAD", Framing.NONE, True),
        (b"HTTP/1.1 204 No Content\r\nContent-Length: 5", "GET", Framing.NONE, True),
        (b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked", "GET", Framing.NONE, True),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked", "GET", Framing.CHUNKED, True),
        (b"HTTP/1.1 200 OK", "GET", Framing.CLOSE, False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 1", "GET", Framing.LENGTH, False),
        (b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 1", "GET",
         Framing.LENGTH, False),
        (b"HTTP/1.1 200 Connection established", "CONNECT", Framing.NONE, True),
    ],
)  # fmt: skip
def test_body_framing_follows_rfc_9112(
    raw: bytes, method: str, framing: Framing, keep_alive: bool
) -> None:
    head = parse_head(raw, method)
    assert (head.framing, head.keep_alive) == (framing, keep_alive)


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/2 200 OK",
        b"ICY 200 OK",
        b"HTTP/1.1 20 OK",
        b"HTTP/1.1 2000 OK",
        b"HTTP/1.1 abc OK",
        b"HTTP/1.1 099 Low",
        b"HTTP/1.1 200 OK\r\nName : space before the colon",
        b"HTTP/1.1 200 OK\r\nNo colon at all",
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded: continuation",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2",
        # Repeated, even with one value: llhttp refuses it (h11 takes it).
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0x10",
        b"HTTP/1.1 200 OK\r\n\xff\xfe: 1",
        "HTTP/1.1 \uff12\uff10\uff10 OK".encode(),  # full-width digits
        "HTTP/1.1 \u00b2\u2070\u2070 OK".encode(),  # superscript digits
        b"HTTP/1.1 200 O\rK",
        b"HTTP/1.1 200 O\nK",
        b"HTTP/1.1 200 OK\r\nX-A: a\x00b",
        b"HTTP/1.1 200 OK\r\nX-A: a\x1bb",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
        b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked",
    ],
)
def test_malformed_heads_are_refused(raw: bytes) -> None:
    with pytest.raises(ParseError):
        parse_head(raw, "GET")


@given(st.binary(max_size=300), st.sampled_from(["GET", "HEAD", "POST", "CONNECT"]))
def test_any_head_bytes_parse_or_raise_framing_error(raw: bytes, method: str) -> None:
    try:
        head = parse_head(raw, method)
    except ParseError:
        return
    assert 100 <= head.status <= 999


# --- the parser over whole answers -------------------------------------------------------------


@given(st.binary(max_size=2000), st.lists(st.integers(min_value=0), max_size=8))
def test_sized_body_in_any_split(body: bytes, cuts: list[int]) -> None:
    parser = ResponseParser("GET")
    data = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    assert feed_in_pieces(parser, data, cuts) == body
    assert parser.done and parser.clean
    assert parser.head is not None and parser.head.status == 200


@given(
    st.lists(st.binary(max_size=300), max_size=6),
    st.sampled_from([b"", b";name=value", b";x", b';q="a \\" b";y']),
    st.sampled_from([b"", b"Checksum: abc\r\n", b"A: 1\r\nB: 2\r\n"]),
    st.lists(st.integers(min_value=0), max_size=10),
)
def test_chunked_body_in_any_split(
    pieces: list[bytes], extension: bytes, trailers: bytes, cuts: list[int]
) -> None:
    parser = ResponseParser("GET")
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(
        pieces, extension, trailers
    )
    assert feed_in_pieces(parser, data, cuts) == b"".join(pieces)
    assert parser.done and parser.clean


@given(st.lists(st.integers(min_value=0), max_size=6))
def test_interim_answers_are_skipped(cuts: list[int]) -> None:
    parser = ResponseParser("POST")
    data = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    )
    assert feed_in_pieces(parser, data, cuts) == b"ok"
    assert parser.head is not None and parser.head.status == 200
    assert "Link" not in parser.head.headers


def test_both_framings_are_refused() -> None:
    # RFC 9112 section 6.3 lets Transfer-Encoding win (h11 does), but llhttp refuses the
    # pair: an answer that two readers could frame two ways is not passed on.
    with pytest.raises(ParseError):
        parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\nTransfer-Encoding: chunked", "GET")


def test_endless_interim_answers_are_refused() -> None:
    parser = ResponseParser("GET")
    with pytest.raises(ParseError):
        for _ in range(20):
            parser.feed(b"HTTP/1.1 103 Early Hints\r\n\r\n")


def test_interim_answers_before_a_tunnel_are_skipped() -> None:
    parser = ResponseParser("CONNECT")
    parser.feed(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 Connection established\r\n\r\n")
    assert parser.head is not None and parser.head.status == 200 and parser.done


def test_101_is_refused() -> None:
    with pytest.raises(ParseError):
        ResponseParser("GET").feed(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n")


def test_body_until_close() -> None:
    parser = ResponseParser("GET")
    assert parser.feed(b"HTTP/1.0 200 OK\r\n\r\nsome") == [b"some"]
    assert parser.feed(b" more") == [b" more"]
    assert not parser.done
    parser.eof()
    assert parser.done


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"HTTP/1.1 200 OK\r\nContent-",
        b"",
    ],
    ids=["sized", "chunked", "in-the-head", "nothing"],
)
def test_an_answer_cut_short_is_never_complete(data: bytes) -> None:
    parser = ResponseParser("GET")
    parser.feed(data)
    with pytest.raises(ParseError):
        parser.eof()
    assert not parser.done


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nEXTRA",
        b"HTTP/1.1 204 No Content\r\n\r\nEXTRA",
    ],
    ids=["sized", "chunked", "no-body"],
)
def test_bytes_after_the_answer_make_it_unclean(data: bytes) -> None:
    parser = ResponseParser("GET")
    body = b"".join(parser.feed(data))
    assert parser.done and not parser.clean
    assert b"EXTRA" not in body


def test_too_long_a_head_is_refused() -> None:
    parser = ResponseParser("GET")
    parser.feed(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(ParseError):
        for _ in range(100):
            parser.feed(b"X-Filler: " + b"a" * 1000 + b"\r\n")


@given(st.binary(max_size=400), st.lists(st.integers(min_value=0), max_size=5))
def test_any_bytes_parse_or_raise_framing_error(data: bytes, cuts: list[int]) -> None:
    parser = ResponseParser("GET")
    try:
        feed_in_pieces(parser, b"HTTP/1.1 200 OK\r\n" + data, cuts)
        parser.eof()
    except ParseError:
        return


# --- the chunked coding alone ------------------------------------------------------------------


@given(
    st.lists(st.binary(min_size=1, max_size=200), max_size=5),
    st.binary(max_size=20),
    st.integers(min_value=1, max_value=7),
)
def test_chunked_decoder_reports_what_follows_the_end(
    pieces: list[bytes], tail: bytes, step: int
) -> None:
    decoder = ChunkedDecoder()
    data = chunked(pieces) + tail
    out = b""
    for start in range(0, len(data), step):
        if decoder.done:
            break
        out += b"".join(decoder.feed(data[start : start + step]))
    assert decoder.done and out == b"".join(pieces)
    rest = data[len(chunked(pieces)) :]
    assert rest.startswith(decoder.extra)


@pytest.mark.parametrize(
    "data",
    [
        b"zz\r\n",
        b"0x5\r\nhello\r\n",
        b"+5\r\nhello\r\n",
        b" 5\r\nhello\r\n",
        b"5\r\nhelloXX",
        b"11111111111111111\r\n",
        b"5" * 5000,
        b"5;\nx\r\nhello\r\n",
        b"0\r\nX: a\rb\r\n\r\n",
        b"5 ;a=b\r\nhello\r\n",
        b"5;a =b\r\nhello\r\n",
        b"5;a\x00\r\nhello\r\n",
        b"0\r\nhello\r\n\r\n",
        b"0\r\nX : 1\r\n\r\n",
    ],
    ids=[
        "not-hex",
        "0x",
        "plus",
        "space",
        "no-crlf",
        "too-big",
        "line-too-long",
        "bare-lf",
        "trailer-cr",
        "space-before-extension",
        "space-in-extension",
        "nul-in-extension",
        "trailer-not-a-field",
        "trailer-space-before-colon",
    ],
)
def test_chunked_decoder_refuses_bad_framing(data: bytes) -> None:
    with pytest.raises(ParseError):
        ChunkedDecoder().feed(data)
