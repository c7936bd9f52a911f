"""The access line written in batches: the same text as a log record's, in order, never lost."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from fake_upstream import FakeUpstream
from hypothesis import given, settings
from hypothesis import strategies as st
from test_faults import command

from proxy.ops.logs import log_access, setup_logging
from proxy.ops.sink import DELAY, PIECE, Sink


@dataclass(frozen=True)
class Operation:
    """A GraphQL operation as the access line shows it."""

    type: str
    name: str | None
    fields: tuple[str, ...]


class Counting(io.StringIO):
    """A stream that counts the writes it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


async def test_lines_wait_a_moment_and_go_out_in_one_write() -> None:
    stream = Counting()
    sink = Sink(stream)  # type: ignore[arg-type]
    for n in range(10):
        sink.write(f"line {n}\n")
    assert stream.writes == []  # queued
    await asyncio.sleep(DELAY * 4)
    assert stream.writes == ["".join(f"line {n}\n" for n in range(10))]


def test_without_an_event_loop_a_line_is_written_at_once() -> None:
    stream = Counting()
    Sink(stream).write("now\n")  # type: ignore[arg-type]
    assert stream.writes == ["now\n"]


async def test_a_full_buffer_goes_out_in_pieces_of_whole_lines() -> None:
    stream = Counting()
    sink = Sink(stream)  # type: ignore[arg-type]
    lines = [f"{n:05d} " + "é" * (n % 300) + "\n" for n in range(400)]
    for line in lines:
        sink.write(line)
    sink.flush()
    assert "".join(stream.writes) == "".join(lines)
    for piece in stream.writes:
        assert len(piece.encode()) <= PIECE and piece.endswith("\n")
    assert len(stream.writes) < len(lines) / 5


@contextmanager
def stderr(log_level: str, log_format: str) -> Iterator[io.StringIO]:
    """setup_logging writing to a stream of the test's; the logging set-up as it was, after.
    (In the test's body: pytest puts its own capture back in sys.stderr before each call.)"""
    stream, real = io.StringIO(), sys.stderr
    root = logging.getLogger()
    saved = root.handlers[:], root.level, logging.getLogger("proxy").level
    sys.stderr = stream
    try:
        setup_logging(log_level, log_format)
        yield stream
    finally:
        sys.stderr = real
        root.handlers[:], root.level = saved[0], saved[1]
        logging.getLogger("proxy").setLevel(saved[2])


FIELDS = st.fixed_dictionaries(
    {
        "method": st.sampled_from(["GET", "POST", "DELETE"]),
        "path": st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=30),
        "status": st.integers(100, 599),
        "bytes_in": st.integers(0, 10**9),
        "bytes_out": st.integers(0, 10**9),
        "seconds": st.floats(0, 100),
        "upstream_seconds": st.none() | st.floats(0, 100),
        "request_id": st.text("0123456789abcdef-", min_size=1, max_size=32),
        "code": st.none() | st.sampled_from(["rate_limited", "bad_gateway"]),
        "client": st.none() | st.sampled_from(["ci", "dashboard"]),
        "profile": st.none() | st.sampled_from(["DEFAULT", "prod"]),
        "operations": st.none()
        | st.lists(
            st.builds(
                Operation,
                type=st.sampled_from(["query", "mutation"]),
                name=st.none() | st.sampled_from(["Login", "Devices"]),
                fields=st.lists(st.sampled_from(["login", "devices"]), max_size=2).map(tuple),
            ),
            max_size=2,
        ),
        "rule": st.none() | st.sampled_from(["read-only"]),
        "attempts": st.integers(1, 3),
        "coalesced": st.none() | st.just("abc"),
        "hint": st.sampled_from(["", "the secret does not belong to this key id"]),
    }
)
STAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")


def twice(stream: io.StringIO, fields: dict[str, object]) -> tuple[str, str]:
    """The access line as the proxy writes it, then as a log record formatted by the handler
    (a second handler on the root logger turns the proxy's own writing off)."""
    start = len(stream.getvalue())
    log_access(**fields)  # type: ignore[arg-type]
    written = stream.getvalue()[start:]
    extra = logging.NullHandler()
    logging.getLogger().addHandler(extra)
    try:
        start = len(stream.getvalue())
        log_access(**fields)  # type: ignore[arg-type]
        formatted = stream.getvalue()[start:]
    finally:
        logging.getLogger().removeHandler(extra)
    return written, formatted


@settings(max_examples=60, deadline=None)
@given(fields=FIELDS)
def test_the_text_line_is_the_records_text(fields: dict[str, object]) -> None:
    with stderr("info", "text") as stream:
        written, formatted = twice(stream, fields)
    assert STAMP.match(written) and STAMP.match(formatted), (written, formatted)
    assert STAMP.sub("", written, count=1) == STAMP.sub("", formatted, count=1)
    assert written.count("\n") == 1 and " INFO proxy.access: " in written


@settings(max_examples=60, deadline=None)
@given(fields=FIELDS)
def test_the_json_line_is_the_records_json(fields: dict[str, object]) -> None:
    with stderr("info", "json") as stream:
        written, formatted = (json.loads(line) for line in twice(stream, fields))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", written.pop("time"))
    formatted.pop("time")
    assert written == formatted and written["logger"] == "proxy.access"


def test_the_level_set_is_honoured() -> None:
    fields = {"method": "GET", "path": "/", "status": 200, "bytes_in": 0, "bytes_out": 0}
    fields |= {"seconds": 0.1, "upstream_seconds": None, "request_id": "x"}
    with stderr("warning", "text") as stream:
        log_access(**fields)  # type: ignore[arg-type]
        assert stream.getvalue() == ""
        log_access(**fields | {"level": logging.WARNING})  # type: ignore[arg-type]
        assert " WARNING proxy.access: " in stream.getvalue()


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_every_line_is_whole_in_order_and_written_before_the_process_ends(
    upstream: FakeUpstream, credentials_file: Path, tmp_path: Path, workers: str
) -> None:
    args = ("--listen", "127.0.0.1:0", "--upstream", upstream.url, "--workers", workers)
    async with command(*args, "--credentials", str(credentials_file), home=tmp_path) as proxy:
        connector = aiohttp.TCPConnector(force_close=workers != "1")  # spread over workers

        async def one(n: int) -> None:
            url = f"{proxy.url}/graphql/v1?n={n}"
            async with session.post(url, data=b"{}") as response:
                assert response.status == 200
                await response.read()

        async with aiohttp.ClientSession(connector=connector) as session:
            for start in range(0, 300, 30):
                await asyncio.gather(*(one(n) for n in range(start, start + 30)))
        # At once: the last lines are still waiting to be written when the signal comes.
        proxy.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proxy.process.wait(), 15) == 0
    text = "".join(proxy.lines)
    access = [line for line in text.splitlines() if " proxy.access: " in line]
    assert len(access) == 300, text[-3000:]
    shape = re.compile(
        r"\S+ \S+ INFO proxy\.access: POST /graphql/v1 200 in=2 out=\d+ "
        r".* id=[0-9a-f]+ profile=DEFAULT"
    )
    assert all(shape.fullmatch(line) for line in access), access[:3]
    stopped = [n for n, line in enumerate(text.splitlines()) if line.endswith(": stopped")]
    assert len(stopped) == int(workers)
    assert max(n for n, line in enumerate(text.splitlines()) if " proxy.access: " in line) < max(
        stopped
    )
