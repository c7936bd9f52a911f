"""Local limits: each client's rate (token bucket) and the cap on requests at the upstream."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from conftest import ProxyClient, ProxyFactory
from fake_upstream import FakeUpstream, Received
from hypothesis import given
from hypothesis import strategies as st

from proxy.config.resolve import resolve
from proxy.errors import ConfigError
from proxy.policy.bucket import Rate, TokenBucket

QUERY = json.dumps({"query": "{ login { email } }"}).encode()


async def send(client: ProxyClient, token: str | None = None) -> tuple[int, Any, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with client.post("/graphql/v1", data=QUERY, headers=headers) as response:
        return response.status, await response.json(content_type=None), response.headers


async def test_a_client_over_its_burst_gets_429_and_nothing_goes_upstream(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    client = await make_proxy(rate_limit="1/s", burst="3")
    results = [await send(client) for _ in range(5)]
    assert [status for status, _, _ in results] == [200, 200, 200, 429, 429]
    status, body, headers = results[3]
    assert body["error"]["code"] == "rate_limited"
    assert "1/s" in body["error"]["message"] and "burst 3" in body["error"]["message"]
    assert headers["Retry-After"] == "1"
    assert len(upstream.received) == 3
    assert await client.metric("remoteit_proxy_rate_limited_total", client="-", limit="rate") == 2


async def test_the_bucket_refills_at_the_rate(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    client = await make_proxy(rate_limit="10/s", burst="1")
    assert [(await send(client))[0] for _ in range(2)] == [200, 429]
    await asyncio.sleep(0.15)  # a token every 0.1 s
    assert (await send(client))[0] == 200
    assert len(upstream.received) == 2


async def test_each_client_has_its_own_bucket(
    make_proxy: ProxyFactory, upstream: FakeUpstream, tmp_path: Path
) -> None:
    (tmp_path / "a.token").write_text("token-of-a-0001\n")
    (tmp_path / "b.token").write_text("token-of-b-0002\n")
    config = tmp_path / "proxy.ini"
    config.write_text(
        f"[proxy]\nrate_limit = 100/s\n"
        f"[client.a]\ntoken_file = {tmp_path / 'a.token'}\nrate_limit = 2/min\nburst = 2\n"
        f"[client.b]\ntoken_file = {tmp_path / 'b.token'}\n"
    )
    client = await make_proxy(config=str(config))
    a = [(await send(client, "token-of-a-0001"))[0] for _ in range(3)]
    b = [(await send(client, "token-of-b-0002"))[0] for _ in range(5)]
    assert (a, b) == ([200, 200, 429], [200] * 5)  # b has the proxy's 100/s
    status, body, headers = await send(client, "token-of-a-0001")
    assert status == 429 and 25 <= int(headers["Retry-After"]) <= 30  # a token every 30 s
    assert await client.metric("remoteit_proxy_rate_limited_total", client="a") == 2
    assert await client.metric("remoteit_proxy_rate_limited_total", client="b") == 0


class Held:
    """An upstream answer held until released, to keep requests in flight."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.arrived = 0

    async def __call__(self, request: web.Request, received: Received) -> web.StreamResponse:
        self.arrived += 1
        await self.release.wait()
        return web.json_response({"data": {}})


async def test_the_concurrency_cap_queues_and_times_out(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    upstream.respond = held = Held()
    client = await make_proxy(max_upstream_concurrency="2", queue_timeout="0.5")
    first = [asyncio.create_task(send(client)) for _ in range(2)]
    while held.arrived < 2:
        await asyncio.sleep(0.01)
    waited = asyncio.get_running_loop().time()
    status, body, headers = await send(client)  # a third: waits 0.5 s, then 429
    assert asyncio.get_running_loop().time() - waited >= 0.45
    assert (status, body["error"]["code"], headers["Retry-After"]) == (429, "rate_limited", "1")
    assert "--max-upstream-concurrency" in body["error"]["message"]
    assert held.arrived == 2
    limited = await client.metric("remoteit_proxy_rate_limited_total", limit="concurrency")
    assert limited == 1
    # A request queued when a place frees in time goes on.
    third = asyncio.create_task(send(client))
    await asyncio.sleep(0.1)
    assert await client.metric("remoteit_proxy_upstream_queued") == 1
    held.release.set()
    assert [(await task)[0] for task in (*first, third)] == [200, 200, 200]
    assert held.arrived == 3


async def test_each_worker_enforces_its_share_of_the_cap(make_proxy: ProxyFactory) -> None:
    client = await make_proxy(max_upstream_concurrency="5", workers="2")
    assert client.service.state.throttle.cap == 2


async def test_a_queued_client_that_leaves_gives_no_place_away(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    upstream.respond = held = Held()
    client = await make_proxy(max_upstream_concurrency="1", queue_timeout="0.5")
    first = asyncio.create_task(send(client))
    while held.arrived < 1:
        await asyncio.sleep(0.01)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(send(client), 0.1)  # queued, then gone
    held.release.set()
    assert (await first)[0] == 200
    await asyncio.sleep(0.6)
    # The one place is free again: requests one after another all pass.
    assert [(await send(client))[0] for _ in range(3)] == [200] * 3


async def test_a_client_section_can_turn_the_proxy_rate_off(
    make_proxy: ProxyFactory, upstream: FakeUpstream, tmp_path: Path
) -> None:
    (tmp_path / "a.token").write_text("token-of-a-0001\n")
    config = tmp_path / "proxy.ini"
    config.write_text(
        f"[proxy]\nrate_limit = 1/min\n"
        f"[client.a]\ntoken_file = {tmp_path / 'a.token'}\nrate_limit = off\n"
    )
    client = await make_proxy(config=str(config))
    assert [(await send(client, "token-of-a-0001"))[0] for _ in range(3)] == [200] * 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rate_limit = 10 per second", "rate_limit: '10 per second' is not a rate such as 10/s"),
        ("rate_limit = 0/s", "is not a rate"),
        ("burst = 5", "burst: a burst needs a rate limit"),
        ("rate_limit = 1/s\nburst = many", "burst: 'many' is not a number from 1 up"),
    ],
)
def test_a_wrong_limit_in_a_client_section_names_it(
    tmp_path: Path, text: str, expected: str
) -> None:
    (tmp_path / "a.token").write_text("token-of-a-0001\n")
    config = tmp_path / "proxy.ini"
    config.write_text(f"[client.a]\ntoken_file = {tmp_path / 'a.token'}\n{text}\n")
    with pytest.raises(ConfigError) as error:
        resolve({"config": str(config)}, {})
    assert f"config file {config} [client.a]" in str(error.value)
    assert expected in str(error.value)


def test_rates_are_read_and_shared_between_workers() -> None:
    settings = resolve({"rate-limit": "600/min", "workers": "4"}, {})
    assert settings.rate_limit == Rate(10.0, 10, "600/min")
    assert settings.rate_limit.share(4) == Rate(2.5, 2, "600/min")  # 10 at once in all
    assert settings.rate_limit.share(20) == Rate(0.5, 1, "600/min")  # each keeps one
    assert resolve({"rate-limit": "1/h"}, {}).rate_limit == Rate(1 / 3600, 1, "1/h")
    with pytest.raises(ConfigError, match="--burst: a burst needs a rate limit"):
        resolve({"burst": "3"}, {})


@given(
    st.floats(min_value=0.1, max_value=100.0),
    st.integers(min_value=1, max_value=50),
    st.lists(st.floats(min_value=0.0, max_value=2.0), min_size=1, max_size=200),
)
def test_the_bucket_never_lets_more_than_burst_plus_rate_times_time(
    per_second: float, burst: int, gaps: list[float]
) -> None:
    bucket = TokenBucket(Rate(per_second, burst, "x"), now=0.0)
    now, taken = 0.0, 0
    for gap in gaps:
        now += gap
        wait = bucket.take(now)
        if wait == 0.0:
            taken += 1
            continue
        # The wait it names is the truth: no token halfway there, one just after.
        assert bucket.take(now + wait / 2) > 0.0
        now += wait * 1.001
        assert bucket.take(now) == 0.0
        taken += 1
    assert taken <= burst + per_second * now + 1e-6
