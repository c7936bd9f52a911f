"""Key rotation without restart: the credentials file is watched, SIGHUP reloads at once."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
import signal
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from conftest import KEY_ID, SECRET, ProxyFactory, write_credentials
from fake_upstream import FakeUpstream
from test_cli import base_env, proxy_process


def credentials_text(key_id: str, secret: bytes) -> str:
    encoded = base64.b64encode(secret).decode()
    return f"[DEFAULT]\nR3_ACCESS_KEY_ID={key_id}\nR3_SECRET_ACCESS_KEY={encoded}\n"


def key_of(authorization: str | None) -> str:
    match = re.search(r'keyId="([^"]*)"', authorization or "")
    assert match, authorization
    return match.group(1)


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_rotation_under_continuous_load_fails_no_request(
    make_proxy: ProxyFactory,
    upstream: FakeUpstream,
    credentials_file: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="proxy")
    client = await make_proxy(reload_interval=0.2)
    statuses: list[int] = []
    running = True

    async def send_continuously() -> None:
        while running:
            async with client.post("/graphql/v1", data=b'{"query":"{ login { email } }"}') as r:
                await r.read()
                statuses.append(r.status)

    senders = [asyncio.create_task(send_continuously()) for _ in range(4)]
    current = KEY_ID
    new_keys = [(f"ROTATED{i:013d}", os.urandom(32)) for i in range(3)]
    for key_id, secret in new_keys:
        # The new key is created (active at the API) before it is written to the file...
        upstream.keys[key_id] = secret
        # ...and the file is first seen half-written: that version must be ignored.
        credentials_file.write_text(f"[DEFAULT]\nR3_ACCESS_KEY_ID={key_id}\n")
        await asyncio.sleep(0.5)
        assert key_of(upstream.received[-1].header("Authorization")) == current
        credentials_file.write_text(credentials_text(key_id, secret))
        await wait_for(lambda k=key_id: key_of(upstream.received[-1].header("Authorization")) == k)
        # Once the proxy signs with the new key, the old one is disabled at the API, after a
        # grace (as rotate waits): with four senders, a request signed with the old key just
        # before the switch may still be on its way (it was a 401 now and then, under load).
        switched = len(upstream.received)
        await wait_for(lambda s=switched: len(upstream.received) > s + 8)
        count = len(upstream.received)
        del upstream.keys[current]
        current = key_id
        await wait_for(lambda c=count: len(upstream.received) > c + 20)
    running = False
    await asyncio.gather(*senders)

    assert len(statuses) > 100
    assert set(statuses) == {200}, statuses
    rejected = [r.reason for r in upstream.received if not r.verified]
    assert rejected == []
    errors = [r.getMessage() for r in caplog.records if "not reloaded" in r.getMessage()]
    assert errors, "the half-written file should have been reported"
    assert all(str(credentials_file) in e and "R3_SECRET_ACCESS_KEY" in e for e in errors)
    reloads = [r.getMessage() for r in caplog.records if "credentials reloaded" in r.getMessage()]
    assert len(reloads) == len(new_keys)
    for key_id, secret in new_keys:
        for text in errors + reloads:
            assert key_id not in text and base64.b64encode(secret).decode() not in text


async def test_invalid_file_keeps_the_previous_key(
    make_proxy: ProxyFactory, upstream: FakeUpstream, credentials_file: Path
) -> None:
    client = await make_proxy(reload_interval=0.1)
    for garbage in (
        "",
        "\x00\x01binary",
        "[DEFAULT]\nR3_ACCESS_KEY_ID=X\nR3_SECRET_ACCESS_KEY=!!\n",
    ):
        credentials_file.write_text(garbage)
        await asyncio.sleep(0.3)
        async with client.get("/graphql/v1") as response:
            assert response.status == 200
        assert key_of(upstream.received[-1].header("Authorization")) == KEY_ID
    credentials_file.unlink()
    await asyncio.sleep(0.3)
    async with client.get("/graphql/v1") as response:
        assert response.status == 200
    assert client.service.watcher.results["error"] >= 3


async def test_sighup_reloads_at_once(upstream: FakeUpstream, tmp_path: Path) -> None:
    path = write_credentials(tmp_path / "credentials", credentials_text(KEY_ID, SECRET))
    new_key, new_secret = "SIGHUPKEY00000000001", os.urandom(len(SECRET))
    assert len(new_key) == len(KEY_ID)
    upstream.keys[new_key] = new_secret
    args = ("--listen", "127.0.0.1:0", "--upstream", upstream.url, "--credentials", str(path))
    async with (
        proxy_process(*args, env=base_env(tmp_path)) as running,
        aiohttp.ClientSession() as session,
    ):
        before = os.stat(path)
        path.write_text(credentials_text(new_key, new_secret))
        # Same size, inode and modification time: the once-a-second check cannot see the
        # change, so only SIGHUP can have made the proxy use the new key.
        assert os.stat(path).st_size == before.st_size
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        await asyncio.sleep(1.5)
        async with session.get(running.url + "/graphql/v1") as response:
            assert response.status == 200
        assert key_of(upstream.received[-1].header("Authorization")) == KEY_ID
        running.process.send_signal(signal.SIGHUP)
        await wait_for(lambda: any("credentials reloaded" in line for line in running.lines))
        async with session.get(running.url + "/graphql/v1") as response:
            assert response.status == 200
        assert key_of(upstream.received[-1].header("Authorization")) == new_key


async def test_sighup_with_nothing_changed_says_the_credentials_are_unchanged(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    path = write_credentials(tmp_path / "credentials", credentials_text(KEY_ID, SECRET))
    args = ("--listen", "127.0.0.1:0", "--upstream", upstream.url, "--credentials", str(path))
    async with proxy_process(*args, env=base_env(tmp_path)) as running:
        running.process.send_signal(signal.SIGHUP)
        await wait_for(lambda: any("credentials unchanged (SIGHUP)" in x for x in running.lines))
    said = next(line for line in running.lines if "credentials unchanged" in line)
    assert "profile DEFAULT" in said and f"key {'*' * 16}{KEY_ID[-4:]}" in said
    assert not any("credentials reloaded" in line for line in running.lines)
