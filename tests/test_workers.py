"""--workers N that stays up: a worker that dies is started again, unless it cannot start."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from fake_upstream import FakeUpstream
from prometheus_client.parser import text_string_to_metric_families
from test_faults import Command, command

from proxy.serve.supervisor import BACKOFF, EARLY, EXIT_CONFIG, GIVE_UP, after_death


async def fresh(method: str, url: str) -> tuple[int, bytes]:
    """One request on a new connection: the kernel spreads new connections over the workers."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.request(method, url, data=b"{}" if method == "POST" else None) as response,
    ):
        return response.status, await response.read()


async def worker_pids(url: str, tries: int = 60) -> set[int]:
    return {json.loads((await fresh("GET", url + "/-/health"))[1])["pid"] for _ in range(tries)}


@asynccontextmanager
async def two_workers(
    upstream: FakeUpstream, credentials_file: Path, home: Path
) -> AsyncIterator[Command]:
    args = ("--listen", "127.0.0.1:0", "--upstream", upstream.url, "--workers", "2")
    async with command(*args, "--credentials", str(credentials_file), home=home) as proxy:
        yield proxy


async def test_a_worker_killed_is_replaced_and_the_service_keeps_answering(
    upstream: FakeUpstream, credentials_file: Path, tmp_path: Path
) -> None:
    async with two_workers(upstream, credentials_file, tmp_path) as proxy:
        before = await worker_pids(proxy.url)
        assert len(before) == 2
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        # A connection the victim had taken dies with it (reset, or never answered): that
        # much SIGKILL costs. The service answers on, and has two workers again soon.
        after: set[int] = set()
        deadline = time.monotonic() + 10
        while not (len(after) == 2 and victim not in after) and time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                after = await asyncio.wait_for(worker_pids(proxy.url, tries=10), 3)
        assert len(after) == 2 and victim not in after, after
        for _ in range(20):
            assert (await fresh("POST", proxy.url + "/graphql/v1"))[0] == 200
        restarted = [line for line in proxy.lines if f"(pid {victim}) exited with -9" in line]
        assert restarted and "starting it again in 0.5 s" in restarted[0]
        proxy.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proxy.process.wait(), 15) == 0


@pytest.mark.parametrize(
    ("code", "lived", "early", "expected"),
    [
        (-9, 3600.0, 0, (1, BACKOFF[0])),  # killed after an hour: started again soon
        (1, 1.0, 1, (2, BACKOFF[1])),  # died early twice: a longer pause
        (1, 1.0, GIVE_UP - 2, (GIVE_UP - 1, BACKOFF[min(GIVE_UP - 1, len(BACKOFF)) - 1])),
        (1, 1.0, GIVE_UP - 1, (GIVE_UP, None)),  # keeps dying at start: stop
        (1, EARLY + 1, GIVE_UP - 1, (1, BACKOFF[0])),  # it had run a while: the count restarts
        (EXIT_CONFIG, 3600.0, 0, (1, None)),  # a configuration error: no restart mends it
    ],
)
def test_when_a_dead_worker_is_started_again(
    code: int, lived: float, early: int, expected: tuple[int, float | None]
) -> None:
    assert after_death(code, lived, early) == expected


async def test_one_scrape_adds_up_every_worker(
    upstream: FakeUpstream, credentials_file: Path, tmp_path: Path
) -> None:
    async with two_workers(upstream, credentials_file, tmp_path) as proxy:
        assert len(await worker_pids(proxy.url)) == 2
        for _ in range(30):
            assert (await fresh("POST", proxy.url + "/graphql/v1"))[0] == 200
        await asyncio.sleep(1.5)  # each worker publishes its numbers about once a second
        for _ in range(4):  # whichever worker answers, the total is the service's
            text = (await fresh("GET", proxy.url + "/-/metrics"))[1].decode()
            totals = [
                sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name == "remoteit_proxy_requests_total"
                and sample.labels == {"method": "POST", "status": "200"}
            ]
            assert totals == [30.0], text
        proxy.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proxy.process.wait(), 15) == 0


async def test_workers_stop_when_their_parent_is_killed(
    upstream: FakeUpstream, credentials_file: Path, tmp_path: Path
) -> None:
    async with two_workers(upstream, credentials_file, tmp_path) as proxy:
        workers = await worker_pids(proxy.url)
        proxy.process.kill()  # the parent, with no chance to stop them
        await proxy.process.wait()
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert not any(_alive(pid) for pid in workers), "orphan workers serve on"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) counts as gone.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    return True
