"""Retries: safe requests sent again after 429, 503 or a failed connection; never the others."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from email.utils import formatdate, parsedate_to_datetime
from typing import Any

import pytest
from aiohttp import web
from conftest import ProxyClient, ProxyFactory
from fake_upstream import FakeUpstream, Received
from hypothesis import given
from hypothesis import strategies as st
from test_proxy import closed_port

from proxy.policy.retry import BACKOFF_CAP, backoff, retry_after

QUERY = json.dumps({"query": "query Devices { devices { total } }"}).encode()
MUTATION = json.dumps({"query": 'mutation { deleteAccessKey(key: "K") }'}).encode()
THROTTLED = {"errors": [{"message": "Your API usage has been throttled"}]}


class Script:
    """Answers in turn from a list of (status, headers); 200 with the echo once it runs out.
    Records when each request arrived, by the upstream's clock."""

    def __init__(self, *answers: tuple[int, dict[str, str]]) -> None:
        self.answers = list(answers)
        self.arrived: list[float] = []

    async def __call__(self, request: web.Request, received: Received) -> web.StreamResponse:
        self.arrived.append(time.time())
        if not self.answers:
            return web.json_response({"data": {"devices": {"total": 3}}})
        status, headers = self.answers.pop(0)
        return web.json_response(THROTTLED, status=status, headers=headers)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="proxy")
    return caplog


def access(logs: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in logs.records if r.name == "proxy.access"]


async def post(
    client: ProxyClient, body: Any = QUERY, path: str = "/graphql/v1"
) -> tuple[int, bytes, Any]:
    async with client.post(path, data=body, headers={"Content-Type": "application/json"}) as r:
        return r.status, await r.read(), r.headers


def assert_signed_fresh(upstream: FakeUpstream, script: Script) -> None:
    """Every attempt verified on its own, and dated when it was sent, not when first signed."""
    assert len(upstream.received) == len(script.arrived)
    for received, arrived in zip(upstream.received, script.arrived, strict=True):
        assert received.verified, received.reason
        date = parsedate_to_datetime(received.header("Date") or "").timestamp()
        assert arrived - 1.5 <= date <= arrived + 0.5, (date, arrived)


async def test_a_query_is_retried_after_429_and_503_and_answered(
    make_proxy: ProxyFactory, upstream: FakeUpstream, logs: pytest.LogCaptureFixture
) -> None:
    upstream.respond = script = Script((429, {"Retry-After": "1"}), (503, {}))
    client = await make_proxy()
    started = time.monotonic()
    status, body, _ = await post(client)
    assert (status, json.loads(body)) == (200, {"data": {"devices": {"total": 3}}})
    assert len(upstream.received) == 3
    assert_signed_fresh(upstream, script)
    # Retry-After: 1 was honoured, then a backoff of 0.25-0.5 s.
    assert script.arrived[1] - script.arrived[0] >= 0.95
    assert 0.2 <= script.arrived[2] - script.arrived[1] <= 1.5
    assert time.monotonic() - started < 5
    dates = [r.header("Date") for r in upstream.received]
    assert dates[0] != dates[1], "the retry was not signed again with a new Date"
    assert "attempts=3" in access(logs)[-1] and " 200 " in access(logs)[-1]
    assert await client.metric("remoteit_proxy_upstream_retries_total", reason="throttled") == 1
    assert await client.metric("remoteit_proxy_upstream_retries_total", reason="unavailable") == 1
    assert_no_connection_held(client)


def assert_no_connection_held(client: ProxyClient) -> None:
    """Every answer not passed on was released: no upstream connection is left in use."""
    pool = client.service.state.pool
    assert pool is not None and pool.in_use == 0


async def test_a_rest_get_is_retried_and_a_rest_post_is_not(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    upstream.respond = Script((503, {"Retry-After": "0"}))
    client = await make_proxy()
    async with client.get("/apv/v27/device") as response:
        assert response.status == 200
    assert len(upstream.received) == 2
    upstream.respond = Script((503, {"Retry-After": "0"}))
    status, _, _ = await post(client, b"{}", "/apv/v27/device/connect")
    assert status == 503
    assert len(upstream.received) == 3


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS"])
async def test_head_and_options_are_retried(
    make_proxy: ProxyFactory, upstream: FakeUpstream, method: str
) -> None:
    upstream.respond = Script((429, {"Retry-After": "0"}))
    client = await make_proxy()
    async with client.request(method, "/apv/v27/device") as response:
        assert response.status == 200
    assert len(upstream.received) == 2


@pytest.mark.parametrize(
    ("target", "kwargs"),
    [
        # Frameworks that honour a method override would run a DELETE.
        ("/apv/v27/device/1", {"headers": {"X-HTTP-Method-Override": "DELETE"}}),
        ("/graphql/v1?query=%7Bx%7D", {"headers": {"X-HTTP-Method": "POST"}}),
        # A server may read a GET's body as the document: the query string is not all.
        ("/graphql/v1?query=%7Bx%7D", {"data": MUTATION}),
    ],
)
async def test_a_request_that_may_be_more_than_its_method_says_is_not_retried(
    make_proxy: ProxyFactory, upstream: FakeUpstream, target: str, kwargs: dict[str, Any]
) -> None:
    upstream.respond = Script((503, {"Retry-After": "0"}))
    client = await make_proxy()
    async with client.get(target, **kwargs) as response:
        assert response.status == 503
    assert len(upstream.received) == 1


@pytest.mark.parametrize("value", ["\u00b2", "soon", "1.5", "-1", ""])
async def test_a_retry_after_not_understood_falls_back_to_backoff(
    make_proxy: ProxyFactory, upstream: FakeUpstream, value: str
) -> None:
    # "\u00b2" (a superscript two) passes str.isdigit, and was a 500 that kept the connection.
    upstream.respond = Script((503, {"Retry-After": value}))
    client = await make_proxy()
    assert (await post(client))[0] == 200
    assert len(upstream.received) == 2
    assert_no_connection_held(client)


async def test_a_slow_answer_is_not_sent_again_but_a_refused_connection_is(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    async def slow(request: web.Request, received: Received) -> web.StreamResponse:
        await asyncio.sleep(1)
        return web.json_response({})

    upstream.respond = slow
    client = await make_proxy(read_timeout="0.3")
    assert (await post(client))[0] == 504  # the upstream may be busy with it: not twice
    assert len(upstream.received) == 1
    closed = await make_proxy(upstream=f"http://127.0.0.1:{closed_port()}")
    status, body, _ = await post(closed)
    assert (status, json.loads(body)["error"]["code"]) == (502, "upstream_unreachable")
    assert await closed.metric("remoteit_proxy_upstream_retries_total", reason="connection") == 2


async def test_no_retry_once_the_proxy_begins_to_stop(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    upstream.respond = Script((503, {"Retry-After": "10"}))
    client = await make_proxy(shutdown_timeout="5")
    asked = asyncio.create_task(post(client))
    while not upstream.received:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # waiting to retry
    started = time.monotonic()
    stopping = asyncio.create_task(client.service.stop())
    status, body, headers = await asked
    assert (status, headers["Retry-After"]) == (503, "10")  # the upstream's, passed on
    assert time.monotonic() - started < 1
    assert len(upstream.received) == 1
    await stopping


async def test_a_mutation_is_never_retried(
    make_proxy: ProxyFactory, upstream: FakeUpstream, logs: pytest.LogCaptureFixture
) -> None:
    upstream.respond = Script((429, {"Retry-After": "0"}), (429, {"Retry-After": "0"}))
    client = await make_proxy()
    status, body, _ = await post(client, MUTATION)
    assert (status, json.loads(body)) == (429, THROTTLED)
    assert len(upstream.received) == 1
    assert "attempts=" not in access(logs)[-1]
    # A document with a query and a mutation: what runs is what counts (operationName).
    document = "query A { a } mutation B { b }"
    upstream.respond = Script(*[(429, {"Retry-After": "0"})] * 3)
    for name, sent in (("B", 1), (None, 1), ("A", 2)):
        before = len(upstream.received)
        mixed = json.dumps({"query": document, "operationName": name}).encode()
        assert (await post(client, mixed))[0] == (429 if sent == 1 else 200)
        assert len(upstream.received) - before == sent, name


async def test_a_streamed_upload_is_never_retried(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    upstream.respond = Script((503, {"Retry-After": "0"}))
    client = await make_proxy()

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: sent chunked, streamed
        yield QUERY[:10]
        yield QUERY[10:]

    status, _, _ = await post(client, chunks())
    assert status == 503
    assert len(upstream.received) == 1


async def test_a_large_query_is_read_whole_and_retried(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    big = json.dumps({"query": "query { devices { total } }", "pad": "x" * 200_000}).encode()
    upstream.respond = Script((503, {"Retry-After": "0"}))
    client = await make_proxy()
    assert (await post(client, big))[0] == 200
    assert [r.body_size for r in upstream.received] == [len(big)] * 2


async def test_the_count_is_respected_and_the_last_429_passed_on_unchanged(
    make_proxy: ProxyFactory, upstream: FakeUpstream, logs: pytest.LogCaptureFixture
) -> None:
    last = {"Retry-After": "0", "X-Last": "yes"}
    upstream.respond = Script(*[(429, {"Retry-After": "0"})] * 3, (429, last), (429, last))
    client = await make_proxy(retries="3")
    status, body, headers = await post(client)
    assert (status, json.loads(body)) == (429, THROTTLED)
    assert (headers["Retry-After"], headers["X-Last"]) == ("0", "yes")
    assert len(upstream.received) == 4
    assert "attempts=4" in access(logs)[-1]


async def test_the_budget_is_respected(make_proxy: ProxyFactory, upstream: FakeUpstream) -> None:
    upstream.respond = Script((429, {"Retry-After": "30"}))
    client = await make_proxy()
    started = time.monotonic()
    status, _, headers = await post(client)
    assert (status, headers["Retry-After"]) == (429, "30")  # a wait past 20 s: not retried
    assert time.monotonic() - started < 1
    assert len(upstream.received) == 1
    # Two waits of 1 s fit in a budget of 2.5 s; a third would not.
    upstream.respond = Script(*[(503, {"Retry-After": "1"})] * 5)
    client = await make_proxy(retries="5", retry_budget="2.5")
    assert (await post(client))[0] == 503
    assert len(upstream.received) == 1 + 3


async def test_retry_after_as_an_http_date_is_read_against_the_answers_date(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    # The upstream's clock is an hour ahead: the date in Retry-After is its time plus 2 s.
    upstream.clock = lambda: time.time() + 3600
    upstream.max_skew = 7200
    ahead = formatdate(time.time() + 3600 + 2, usegmt=True)
    upstream.respond = script = Script((503, {"Retry-After": ahead}))
    client = await make_proxy()
    assert (await post(client))[0] == 200
    assert 0.9 <= script.arrived[1] - script.arrived[0] <= 3.5


async def test_a_connection_lost_before_any_answer_is_retried(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    calls = 0

    async def hang_up_once(request: web.Request, received: Received) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        if calls == 1 and request.transport is not None:
            request.transport.abort()  # not a byte of an answer
        return web.json_response({"data": {}})

    upstream.respond = hang_up_once
    client = await make_proxy()
    assert (await post(client))[0] == 200
    assert calls == 2
    assert await client.metric("remoteit_proxy_upstream_retries_total", reason="connection") == 1
    calls = 0
    assert (await post(client, MUTATION))[0] == 502  # a mutation: the failure is told, not retried
    assert calls == 1


async def test_retries_zero_turns_retrying_off(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    upstream.respond = Script((429, {"Retry-After": "0"}))
    client = await make_proxy(retries="0")
    assert (await post(client))[0] == 429
    assert len(upstream.received) == 1


async def test_a_client_that_leaves_during_the_wait_is_not_retried_for(
    make_proxy: ProxyFactory, upstream: FakeUpstream, logs: pytest.LogCaptureFixture
) -> None:
    upstream.respond = Script((503, {"Retry-After": "1"}))
    client = await make_proxy()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(post(client), 0.3)
    await asyncio.sleep(1.2)  # past the wait: a retry would have been sent by now
    assert len(upstream.received) == 1
    assert any(" 499 " in line for line in access(logs))


def test_retry_after_is_seconds_or_an_http_date() -> None:
    now = 1_800_000_000.0
    assert retry_after("7", now) == 7.0
    assert retry_after(" 0 ", now) == 0.0
    assert retry_after(formatdate(now + 30, usegmt=True), now) == 30.0
    assert retry_after(formatdate(now - 30, usegmt=True), now) == 0.0  # past: at once
    for odd in (None, "", "-1", "1.5", "soon", "Mon, 32 Foo 2026 99:00:00"):
        assert retry_after(odd, now) is None, odd


@given(st.integers(min_value=1, max_value=40), st.floats(min_value=0.0, max_value=1.0))
def test_backoff_grows_is_jittered_and_capped(attempt: int, fraction: float) -> None:
    wait = backoff(attempt, lambda low, high: low + (high - low) * fraction)
    delay = min(BACKOFF_CAP, 0.5 * 2 ** (attempt - 1))
    assert delay / 2 <= wait <= delay
