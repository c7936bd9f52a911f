"""Coalescing: identical GraphQL queries in flight share one answer (--coalesce-queries)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from aiohttp import web
from conftest import ProxyClient, ProxyFactory
from fake_upstream import FakeUpstream, Received

QUERY = json.dumps({"query": "query { devices { total } }"}).encode()


class Slow:
    """Answers each request after ``delay`` seconds: long enough for the others to arrive."""

    def __init__(self, delay: float = 0.5, size: int = 0, fail: bool = False) -> None:
        self.delay, self.size, self.fail = delay, size, fail
        self.count = 0

    async def __call__(self, request: web.Request, received: Received) -> web.StreamResponse:
        self.count += 1
        number = self.count
        await asyncio.sleep(self.delay)
        if self.fail and request.transport is not None:
            request.transport.abort()
        return web.json_response(
            {"data": {"devices": {"total": number}}, "pad": "x" * self.size},
            headers={"X-Upstream": "yes"},
        )


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="proxy")
    return caplog


async def ask(
    client: ProxyClient, body: bytes = QUERY, request_id: str | None = None, **headers: str
) -> tuple[int, Any, Any]:
    headers["Content-Type"] = "application/json"
    if request_id:
        headers["X-Request-Id"] = request_id
    async with client.post("/graphql/v1", data=body, headers=headers) as response:
        return response.status, await response.read(), response.headers


@pytest.mark.parametrize("on", [True, False])
async def test_twenty_identical_queries_reach_the_upstream_once(
    make_proxy: ProxyFactory, upstream: FakeUpstream, logs: pytest.LogCaptureFixture, on: bool
) -> None:
    upstream.respond = slow = Slow()
    client = await make_proxy(coalesce_queries=str(on).lower())
    ids = [f"req-{n:02d}" for n in range(20)]
    results = await asyncio.gather(*(ask(client, request_id=i) for i in ids))
    assert [status for status, _, _ in results] == [200] * 20
    assert len(upstream.received) == (1 if on else 20)
    assert all(r.verified for r in upstream.received)
    bodies = {body for _, body, _ in results}
    assert len(bodies) == (1 if on else 20)  # one answer, shared: the same bytes for all
    # Each client still gets its own request id, in its answer and its access line.
    assert [headers["X-Request-Id"] for _, _, headers in results] == ids
    assert all(headers["X-Upstream"] == "yes" for _, _, headers in results)
    lines = [r.getMessage() for r in logs.records if r.name == "proxy.access"]
    assert sorted(line.split(" id=")[1].split()[0] for line in lines) == ids
    assert sum(" coalesced=req-" in line for line in lines) == (19 if on else 0)
    assert await client.metric("remoteit_proxy_coalesced_total") == (19 if on else 0)
    assert slow.count == len(upstream.received)


async def test_only_identical_queries_share(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    upstream.respond = Slow()
    client = await make_proxy(coalesce_queries="true")
    other = json.dumps({"query": "query { devices { total } }", "variables": {}}).encode()
    mutation = json.dumps({"query": "mutation { createAccessKey { key } }"}).encode()
    await asyncio.gather(
        ask(client),
        ask(client),  # the only one answered with another's answer
        ask(client, other),  # other body bytes
        ask(client, **{"X-R3-User": "someone@example.com"}),  # acting as another user
        ask(client, mutation),  # never shared
        ask(client, mutation),
    )
    assert len(upstream.received) == 5
    assert await client.metric("remoteit_proxy_coalesced_total") == 1


async def test_a_query_asked_after_the_answer_is_asked_again(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    upstream.respond = Slow(delay=0.0)
    client = await make_proxy(coalesce_queries="true")
    first, second = await ask(client), await ask(client)
    assert json.loads(first[1])["data"] != json.loads(second[1])["data"]
    assert len(upstream.received) == 2


async def test_a_failure_is_shared_as_it_would_have_been_seen(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    upstream.respond = Slow(fail=True)
    client = await make_proxy(coalesce_queries="true", retries="0")
    results = await asyncio.gather(*(ask(client) for _ in range(5)))
    assert len(upstream.received) == 1
    assert {status for status, _, _ in results} == {502}
    codes = {json.loads(body)["error"]["code"] for _, body, _ in results}
    assert codes == {"upstream_error"}


async def test_a_large_answer_is_not_shared_but_still_answered(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    upstream.respond = Slow(size=2 * 1024 * 1024)  # over the 1 MiB shared at most
    client = await make_proxy(coalesce_queries="true")
    results = await asyncio.gather(*(ask(client) for _ in range(3)))
    assert [status for status, _, _ in results] == [200] * 3
    assert all(len(body) > 2 * 1024 * 1024 for _, body, _ in results)
    # Each answer is streamed to its own client, and says so as it begins: whoever waited
    # asks again then, and in the end every request has reached the upstream.
    assert len(upstream.received) == 3


async def test_any_forwarded_header_that_differs_keeps_requests_apart(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    upstream.respond = Slow()
    client = await make_proxy(coalesce_queries="true")
    await asyncio.gather(
        ask(client, **{"Accept-Encoding": "gzip"}),
        ask(client, **{"Accept-Encoding": "identity"}),
        ask(client, **{"X_R3_User": "someone@example.com"}),  # the CGI spelling, forwarded
        ask(client, **{"Accept-Language": "de"}),
    )
    assert len(upstream.received) == 4
    assert await client.metric("remoteit_proxy_coalesced_total") == 0


async def test_waiting_queries_take_no_place_under_the_concurrency_cap(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    upstream.respond = Slow()
    client = await make_proxy(
        coalesce_queries="true", max_upstream_concurrency="1", queue_timeout="0.2"
    )
    results = await asyncio.gather(*(ask(client) for _ in range(5)))
    assert [status for status, _, _ in results] == [200] * 5
    assert len(upstream.received) == 1


async def test_the_answer_is_shared_even_when_the_first_client_left(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    upstream.respond = Slow()
    client = await make_proxy(coalesce_queries="true")
    leaving = asyncio.create_task(asyncio.wait_for(ask(client), 0.2))
    await asyncio.sleep(0.05)
    results = await asyncio.gather(*(ask(client) for _ in range(4)))
    with pytest.raises(asyncio.TimeoutError):
        await leaving
    assert [status for status, _, _ in results] == [200] * 4
    assert len(upstream.received) == 1
