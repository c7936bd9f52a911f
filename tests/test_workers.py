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
from conftest import KEY_ID, SECRET, write_credentials
from fake_upstream import FakeUpstream
from prometheus_client.parser import text_string_to_metric_families
from test_credential_process import Command as KeyCommand
from test_credential_process import key_json, process_file
from test_faults import Command, command
from test_reload import KEY_B, KEY_C, NEW, OLD, SECRET_B, logged, write_config
from test_rotation import credentials_text, key_of, wait_for

from proxy.serve.supervisor import after_death


async def fresh(method: str, url: str, token: str | None = None) -> tuple[int, bytes]:
    """One request on a new connection: the kernel spreads new connections over the workers."""
    connector = aiohttp.TCPConnector(force_close=True)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = b"{}" if method == "POST" else None
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.request(method, url, data=data, headers=headers) as response,
    ):
        return response.status, await response.read()


async def worker_pids(url: str, tries: int = 60) -> set[int]:
    return set(await keys_by_pid(url, tries))


async def keys_by_pid(url: str, tries: int = 60) -> dict[int, str]:
    """Each worker that answered: its pid, and the last 4 characters of client a's key id
    (of the single client's without client sections)."""
    found = {}
    for _ in range(tries):
        health = json.loads((await fresh("GET", url + "/-/health"))[1])
        found[health["pid"]] = health.get("clients", {"a": health})["a"]["key_id"][-4:]
    return found


async def replaced(url: str, victim: int) -> set[int]:
    """The workers once another has taken the place of ``victim`` (killed)."""
    # A connection the victim had taken dies with it (reset, or never answered): that much
    # SIGKILL costs. The service answers on, and has two workers again soon.
    after: set[int] = set()
    deadline = time.monotonic() + 10
    while not (len(after) == 2 and victim not in after) and time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
            after = await asyncio.wait_for(worker_pids(url, tries=10), 3)
    assert len(after) == 2 and victim not in after, after
    return after


async def every_worker(url: str, key: str, timeout: float = 10) -> dict[int, str]:
    """Wait until both workers sign with the key whose id ends in ``key``."""
    deadline = time.monotonic() + timeout
    while True:
        keys = await keys_by_pid(url, 20)
        if len(keys) == 2 and set(keys.values()) == {key}:
            return keys
        assert time.monotonic() < deadline, keys
        await asyncio.sleep(0.1)


@asynccontextmanager
async def two_workers(
    upstream: FakeUpstream, credentials_file: Path, home: Path
) -> AsyncIterator[Command]:
    args = ("--listen", "127.0.0.1:0", "--upstream", upstream.url, "--workers", "2")
    async with command(*args, "--credentials", str(credentials_file), home=home) as proxy:
        await both_listen(proxy)
        yield proxy


async def both_listen(proxy: Command) -> None:
    """Until both workers answer: the first start-up line says only that one listens (on a
    busy machine the other may take a while longer)."""
    deadline = time.monotonic() + 10
    while len(await worker_pids(proxy.url, 20)) < 2:
        assert time.monotonic() < deadline, proxy.lines


async def test_a_worker_killed_is_replaced_and_the_service_keeps_answering(
    upstream: FakeUpstream, credentials_file: Path, tmp_path: Path
) -> None:
    async with two_workers(upstream, credentials_file, tmp_path) as proxy:
        before = await worker_pids(proxy.url)
        assert len(before) == 2
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        await replaced(proxy.url, victim)
        for _ in range(20):
            assert (await fresh("POST", proxy.url + "/graphql/v1"))[0] == 200
        restarted = [line for line in proxy.lines if f"(pid {victim}) exited with -9" in line]
        assert restarted and "starting it again in 0.5 s" in restarted[0]
        proxy.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proxy.process.wait(), 15) == 0


@pytest.mark.parametrize(
    ("code", "lived", "early", "expected"),
    [
        (-9, 3600.0, 0, (1, 0.5)),  # killed after an hour: started again soon
        (1, 1.0, 1, (2, 1.0)),  # died early twice: a longer pause
        (1, 1.0, 2, (3, 2.0)),  # three times: longer still
        (1, 1.0, 3, (4, None)),  # keeps dying at start: stop
        (1, 11.0, 3, (1, 0.5)),  # it had run a while (over 10 s): the count restarts
        (2, 3600.0, 0, (1, None)),  # a configuration error: no restart mends it
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


@asynccontextmanager
async def two_configured(
    upstream: FakeUpstream, credentials_file: Path, config: Path, home: Path
) -> AsyncIterator[Command]:
    """Two workers reading ``config``, both listening."""
    args = ("--listen", "127.0.0.1:0", "--upstream", upstream.url, "--workers", "2")
    args += ("--credentials", str(credentials_file), "--config", str(config))
    async with command(*args, home=home) as proxy:
        await both_listen(proxy)
        yield proxy


async def statuses(url: str, token: str, tries: int = 20) -> set[int]:
    return {(await fresh("POST", url + "/graphql/v1", token))[0] for _ in range(tries)}


async def test_a_worker_started_again_has_the_latest_config_and_key(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    credentials = write_credentials(tmp_path / "credentials", credentials_text(KEY_ID, SECRET))
    upstream.keys.update({KEY_B: SECRET_B, KEY_C: SECRET_B})
    config = write_config(tmp_path, "[client.a]\ntoken_file = @a\n")
    async with two_configured(upstream, credentials, config, tmp_path) as proxy:
        # A new token and a new key, then SIGHUP: both workers take them.
        write_credentials(credentials, credentials_text(KEY_B, SECRET_B))
        (tmp_path / "a.token").write_text(NEW + "\n")
        proxy.process.send_signal(signal.SIGHUP)
        victim = min(await every_worker(proxy.url, KEY_B[-4:]))
        os.kill(victim, signal.SIGKILL)
        workers = await replaced(proxy.url, victim)
        # Every worker, the new one too: the new token only, and requests signed with the new key.
        assert await statuses(proxy.url, OLD) == {401}
        assert await statuses(proxy.url, NEW) == {200}
        assert {key_of(r.header("Authorization")) for r in upstream.received[-20:]} == {KEY_B}
        # The key rotated with no signal: the next worker started reads the file as it is.
        write_credentials(credentials, credentials_text(KEY_C, SECRET_B))
        victim = min(await every_worker(proxy.url, KEY_C[-4:]))
        os.kill(victim, signal.SIGKILL)
        assert (await replaced(proxy.url, victim)) & workers  # (the other one stayed)
        assert await statuses(proxy.url, NEW) == {200}
        assert {key_of(r.header("Authorization")) for r in upstream.received[-20:]} == {KEY_C}
        assert set((await keys_by_pid(proxy.url)).values()) == {KEY_C[-4:]}
        proxy.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proxy.process.wait(), 15) == 0


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


@asynccontextmanager
async def slow_start(
    upstream: FakeUpstream, tmp_path: Path, config: Path
) -> AsyncIterator[tuple[Command, int]]:
    """Two workers whose key comes from a credential_process; one is killed, and the one
    started in its place is held up in its start reading the key (3 s): its pid."""
    issuer = KeyCommand(tmp_path / "key-issuer")
    issuer.issues(KEY_B, SECRET_B)
    upstream.keys[KEY_B] = SECRET_B
    credentials = process_file(tmp_path, issuer.line)
    async with two_configured(upstream, credentials, config, tmp_path) as proxy:
        assert issuer.runs == 1  # the parent read the key for both
        issuer.prints(key_json(KEY_B, SECRET_B), sleep=3)
        os.kill(min(await worker_pids(proxy.url)), signal.SIGKILL)
        await wait_for(lambda: issuer.runs == 2, timeout=10)
        starting = parent_of(issuer.records()[-1]["pid"])
        try:
            yield proxy, starting
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(starting, signal.SIGKILL)  # (if it outlived its parent)


async def test_a_sighup_sent_while_a_worker_starts_reaches_it(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    config = write_config(tmp_path, "[client.a]\ntoken_file = @a\n")
    async with slow_start(upstream, tmp_path, config) as (proxy, starting):
        (tmp_path / "a.token").write_text(NEW + "\n")
        seen = len(proxy.lines)
        proxy.process.send_signal(signal.SIGHUP)  # the new worker has the old token yet
        await logged(proxy, "SIGHUP before the proxy listens", seen)
        await logged(proxy, f"(pid {starting}) listening", seen)
        deadline = time.monotonic() + 10
        while sum("config reloaded" in x for x in proxy.lines[seen:]) < 2:
            assert time.monotonic() < deadline, proxy.lines[seen:]
            await asyncio.sleep(0.05)
        assert starting in await worker_pids(proxy.url)
        assert await statuses(proxy.url, OLD) == {401}
        assert await statuses(proxy.url, NEW) == {200}
        proxy.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proxy.process.wait(), 15) == 0


async def test_a_worker_whose_parent_dies_while_it_starts_stops_too(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    config = write_config(tmp_path, "[proxy]\nlog_level = info\n")
    async with slow_start(upstream, tmp_path, config) as (proxy, starting):
        # The parent, while the new worker reads its key. (Not waited for: its stderr, which
        # wait() reads to the end, stays open as long as a worker lives.)
        proxy.process.kill()
        deadline = time.monotonic() + 10  # its key read (3 s), it listens, sees, and stops
        while _alive(starting) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert not _alive(starting), "an orphan worker serves on"


async def test_counters_go_on_across_a_restart_and_one_sighup_counts_once(
    upstream: FakeUpstream, credentials_file: Path, tmp_path: Path
) -> None:
    config = tmp_path / "proxy.ini"
    config.write_text("[proxy]\nretries = 2\n")
    async with two_configured(upstream, credentials_file, config, tmp_path) as proxy:
        for _ in range(30):
            assert (await fresh("POST", proxy.url + "/graphql/v1"))[0] == 200
        config.write_text("[proxy]\nretries = 3\n")
        seen = len(proxy.lines)
        proxy.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while sum("config reloaded" in x for x in proxy.lines[seen:]) < 2:
            assert time.monotonic() < deadline, proxy.lines[seen:]
            await asyncio.sleep(0.05)
        # (Port 0 was asked: the port the workers listen on is no change of --listen.)
        assert not any("takes effect at the next start" in x for x in proxy.lines[seen:])
        await asyncio.sleep(1.5)  # each worker publishes its numbers about once a second
        assert await totals(proxy.url) == (30.0, 1.0)
        victim = min(await worker_pids(proxy.url))
        os.kill(victim, signal.SIGKILL)
        await replaced(proxy.url, victim)
        await asyncio.sleep(1.5)
        for _ in range(4):  # whichever worker answers: the victim's counts are not lost
            assert await totals(proxy.url) == (30.0, 1.0)
        proxy.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proxy.process.wait(), 15) == 0


async def totals(url: str) -> tuple[float, float]:
    """The service's POST requests answered 200, and its successful config reloads."""
    text = (await fresh("GET", url + "/-/metrics"))[1].decode()
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    requests = [
        s.value
        for s in samples
        if s.name == "remoteit_proxy_requests_total"
        and s.labels == {"method": "POST", "status": "200"}
    ]
    reloads = [
        s.value
        for s in samples
        if s.name == "remoteit_proxy_config_reloads_total" and s.labels == {"result": "success"}
    ]
    return sum(requests), sum(reloads)
