"""The upstream client's answer parser side by side with llhttp (httptools) and h11.

Each reader is fed the same bytes and reports the first final (>= 200) answer it reads, and
whether it read a second one after it: our parser must only accept what both libraries
accept with the same status, fields and body, and only keep the connection where both find
the next answer where it starts.
"""

from __future__ import annotations

import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import h11
import httptools

from proxy.client.parser import ResponseParser
from proxy.client.wire import Framing, ParseError

# The answer that follows a reusable one: both libraries must read it as the second message.
NEXT = b"HTTP/1.1 204 No Content\r\nX-Next: yes\r\n\r\n"
NEXT_FIELDS = [(b"x-next", b"yes")]


def normal(name: bytes, value: bytes) -> tuple[bytes, bytes]:
    """A field as compared: h11 lower-cases names, and Transfer-Encoding's value too."""
    name = name.lower()
    return name, value.lower() if name == b"transfer-encoding" else value


@dataclass
class Message:
    """One answer as a reader saw it: names lower-cased, values without surrounding OWS."""

    status: int = 0
    fields: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    complete: bool = False


@dataclass
class Ours:
    message: Message | None  # None: refused
    reusable: bool = False
    framing: Framing | None = None


def ours(data: bytes, method: str, cuts: list[int]) -> Ours:
    """Our parser, fed ``data`` cut at ``cuts``, then told of the connection's end if the
    answer is not complete by then (as the connection does)."""
    parser = ResponseParser(method)
    body = b""
    start = 0
    try:
        for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
            body += b"".join(parser.feed(data[start:cut]))
            start = max(start, cut)
        done_before_eof = parser.done
        if not parser.done:
            parser.eof()
    except ParseError:
        return Ours(None)
    head = parser.head
    assert head is not None
    fields = [
        normal(name.encode("ascii"), value.encode("utf-8", "surrogateescape"))
        for name, value in head.headers.items()
    ]
    reusable = done_before_eof and parser.clean and head.keep_alive
    return Ours(Message(head.status, fields, body, True), reusable, head.framing)


class _Recorder:
    def __init__(self, parser: httptools.HttpResponseParser | None = None) -> None:
        self.parser = parser
        self.messages: list[Message] = []

    def on_message_begin(self) -> None:
        self.messages.append(Message())

    def on_header(self, name: bytes, value: bytes) -> None:
        message = self.messages[-1]
        if not message.status:  # fields after the body are trailers: not compared
            message.fields.append(normal(name, value.rstrip(b" \t")))

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        self.messages[-1].status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.messages[-1].body += body

    def on_message_complete(self) -> None:
        self.messages[-1].complete = True


def llhttp(data: bytes) -> tuple[list[Message], bool]:
    """The final answers llhttp read, and whether it refused what followed them."""
    recorder = _Recorder()
    parser = httptools.HttpResponseParser(recorder)
    recorder.parser = parser
    try:
        parser.feed_data(data)
    except (httptools.HttpParserError, httptools.HttpParserUpgrade):
        return _final(recorder.messages), True
    return _final(recorder.messages), False


def _final(messages: list[Message]) -> list[Message]:
    return [m for m in messages if m.status >= 200 or not m.status]


def _request(method: str) -> h11.Request:
    headers = [("Host", "upstream")] + ([("Content-Length", "0")] if method == "POST" else [])
    return h11.Request(method=method, target="/", headers=headers)


def h11_read(data: bytes, method: str, eof: bool) -> tuple[list[Message], bool]:
    """The final answers h11 read (sending the next request after a reusable one), and
    whether it refused something."""
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=1 << 20)
    conn.send(_request(method))
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    if eof:
        conn.receive_data(b"")
    messages: list[Message] = []
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
                return messages, False
            if event is h11.PAUSED:
                if conn.their_state is not h11.DONE or conn.our_state is not h11.DONE:
                    return messages, False
                conn.start_next_cycle()
                conn.send(_request(method))
                conn.send(h11.EndOfMessage())
            elif isinstance(event, h11.Response):
                fields = [normal(bytes(n), bytes(v)) for n, v in event.headers]
                messages.append(Message(event.status_code, fields))
            elif isinstance(event, h11.Data):
                messages[-1].body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                messages[-1].complete = True
    except (h11.RemoteProtocolError, h11.LocalProtocolError):
        return messages, True


@dataclass
class Verdict:
    """How the three readers took one input."""

    ours: Ours
    llhttp: list[Message]
    h11: list[Message]
    problems: list[str]

    @property
    def both_accept(self) -> bool:
        return bool(self.llhttp and self.h11)


def compare(data: bytes, method: str, cuts: list[int]) -> Verdict:
    """Feed the three readers; list what breaks the rule (empty when our parser is safe)."""
    mine = ours(data, method, cuts)
    close_framed = mine.framing is Framing.CLOSE
    # After a reusable answer comes another one; a close-framed body runs to the end.
    tail = b"" if close_framed else NEXT
    ll, _ = llhttp(data + tail)
    hh, _ = h11_read(data + tail, method, eof=close_framed)
    problems: list[str] = []
    if mine.message is not None:
        for name, theirs in (("llhttp", ll), ("h11", hh)):
            if not theirs:
                problems.append(f"{name} refuses an answer we accept")
                continue
            first = theirs[0]
            if (first.status, first.fields, first.body) != (
                mine.message.status,
                mine.message.fields,
                mine.message.body,
            ):
                problems.append(f"{name} reads another answer: {first} vs ours {mine.message}")
            elif not first.complete and not (close_framed and name == "llhttp"):
                # (httptools cannot tell llhttp of the connection's end)
                problems.append(f"{name} does not find the answer's end")
            if mine.reusable and (
                len(theirs) < 2 or (theirs[1].status, theirs[1].fields) != (204, NEXT_FIELDS)
            ):
                problems.append(f"{name} does not find the next answer where we would")
    return Verdict(mine, ll, hh, problems)


# --- a longer campaign: random mutations of well-formed answers, for as long as asked ---------

SEEDS = [
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nX: 1\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\nServer: api\r\n\r\n",
    b'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\n',
    b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end",
    b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    b"HTTP/1.1 404 Not Found\r\nContent-Length: 1\r\n\r\nx",
]
TOKENS = [
    b" ",
    b"\t",
    b"\x00",
    b"\x0b",
    b"\x7f",
    b"\x80",
    b"\xc2\xa0",
    b"\xc2\x85",
    b"\xff",
    b",",
    b";",
    b"=",
    b'"',
    b":",
    b"\r",
    b"\n",
    b"\r\n",
    b"+",
    b"-",
    b"0",
    b"a",
    b"F",
]


def mutate(rng: random.Random, data: bytes) -> bytes:
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(data) + 1)
        change = rng.randrange(4)
        token = rng.choice(TOKENS)
        if change == 0:
            data = data[:at] + token + data[at + 1 :]
        elif change == 1:
            data = data[:at] + token + data[at:]
        elif change == 2:
            data = data[:at] + data[at + rng.randint(1, 3) :]
        else:  # a piece of the answer repeated (a field twice, a chunk twice)
            end = min(len(data), at + rng.randint(1, 24))
            data = data[:end] + data[at:end] + data[end:]
    return data


def campaign(seconds: float, seed: int) -> Counter[str]:
    rng = random.Random(seed)
    counts: Counter[str] = Counter()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(1000):
            data = mutate(rng, rng.choice(SEEDS))
            cuts = [rng.randrange(len(data) + 1) for _ in range(rng.randrange(4))]
            verdict = compare(data, rng.choice(("GET", "POST")), cuts)
            if verdict.problems:
                raise SystemExit(f"disagreement on {data!r}: {verdict.problems}")
            counts["inputs"] += 1
            if verdict.ours.message is None:
                counts["refused"] += 1
                counts["refused, both libraries accept"] += verdict.both_accept
            else:
                counts["accepted, reused" if verdict.ours.reusable else "accepted, closed"] += 1
    return counts


if __name__ == "__main__":
    # python tests/differential.py [SECONDS] [SEED]: prints the counts; exits 1 on a disagreement
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    found = campaign(
        float(sys.argv[1]) if len(sys.argv) > 1 else 60.0,
        int(sys.argv[2]) if len(sys.argv) > 2 else 0,
    )
    print(dict(sorted(found.items())))
