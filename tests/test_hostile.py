"""Hostile and broken local clients: request lines and targets the proxy must not forward."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import KEY_ID, ProxyClient, ProxyFactory
from fake_upstream import FakeUpstream
from test_cli import base_env, proxy_process
from test_rotation import key_of, wait_for

from proxy.errors import CredentialsError
from proxy.keys.credentials import load_credentials


async def exchange(proxy: ProxyClient, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
    writer.write(request)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


def status_and_code(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)["error"]["code"] if body else ""


@pytest.mark.parametrize(
    "target",
    ["/graphql/v1#x", "/..#x", "/apv/v27/device?x=1#frag", "/%2e%2e#/x"],
)
async def test_a_fragment_in_the_target_is_refused(
    proxy: ProxyClient, upstream: FakeUpstream, target: str
) -> None:
    # RFC 9112 section 3.2: a request target carries no fragment. aiohttp strips one only
    # after the '..' check looked at the path, so '/..#x' could leave a mount.
    request = f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    status, code = status_and_code(await exchange(proxy, request))
    assert (status, code) == (400, "bad_request_target")
    assert upstream.received == []


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("GET /graphql/v1 HTTP/2.0", (505, "http_version_not_supported")),
        ("GET /graphql/v1 HTTP/0.9", (505, "http_version_not_supported")),
        ("GET /graphql/v1 HTTP/1.2", (400, "bad_request")),
        ("GET /graphql/v1 HTTP/3.0", (400, "bad_request")),
    ],
)
async def test_request_lines_of_other_http_versions_are_refused(
    proxy: ProxyClient, upstream: FakeUpstream, line: str, expected: tuple[int, str]
) -> None:
    answer = await exchange(proxy, f"{line}\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert status_and_code(answer) == expected, answer[:300]
    assert upstream.received == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes (POSIX)")
@pytest.mark.parametrize("command", ["check", "serve"])
async def test_a_fifo_at_the_credentials_path_is_refused_not_waited_on(
    tmp_path: Path, command: str
) -> None:
    # Opening a FIFO for reading waits for a writer: forever, here.
    fifo = tmp_path / "credentials"
    os.mkfifo(fifo)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxy",
        command,
        "--credentials",
        str(fifo),
        env=base_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(process.communicate(), 10)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 2
    assert f"credentials file {fifo} is not a regular file" in err.decode()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes (POSIX)")
async def test_a_credentials_file_replaced_by_a_fifo_is_reported_and_the_proxy_stops_in_time(
    upstream: FakeUpstream, credentials_file: Path, tmp_path: Path
) -> None:
    args = ("--listen", "127.0.0.1:0", "--upstream", upstream.url)
    env = base_env(tmp_path) | {"REMOTEIT_PROXY_CREDENTIALS": str(credentials_file)}
    async with proxy_process(*args, env=env) as running:
        credentials_file.unlink()
        os.mkfifo(credentials_file)
        await wait_for(lambda: any("is not a regular file" in line for line in running.lines))
        reader, writer = await asyncio.open_connection(*running.url[7:].split(":"))
        writer.write(b"GET /graphql/v1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert b" 200 " in await asyncio.wait_for(reader.readline(), 5)
        writer.close()
    # proxy_process sent SIGTERM and saw exit 0 within its 10 s: no thread stuck on the FIFO.


async def test_a_credentials_file_read_half_written_is_not_used(
    make_proxy: ProxyFactory, upstream: FakeUpstream, credentials_file: Path
) -> None:
    # A file rewritten in place by a writer that stalls: the new secret cut short is still
    # valid base64 and long enough, and stays so for a while. The API refuses it: the proxy
    # must keep the old key until the file holds the whole new one.
    new_key, new_secret = "HALFWRITTENKEY000001", os.urandom(32)
    upstream.keys[new_key] = new_secret
    encoded = base64.b64encode(new_secret).decode()
    client = await make_proxy(reload_interval=0.05)
    with credentials_file.open("r+") as file:
        file.truncate(0)
        file.write(f"[DEFAULT]\nR3_ACCESS_KEY_ID={new_key}\nR3_SECRET_ACCESS_KEY={encoded[:24]}")
        file.flush()
        statuses = []
        for _ in range(20):  # a second of requests while the file stays half written
            async with client.get("/graphql/v1") as response:
                statuses.append(response.status)
            await asyncio.sleep(0.05)
        meanwhile = list(upstream.received)
        file.write(encoded[24:] + "\n")
    assert statuses == [200] * 20
    # What was forwarded went out with the old key; the cut-short key was only tried (and
    # refused) by the proxy's own check.
    forwarded = [r for r in meanwhile if r.raw_path == "/graphql/v1" and r.method == "GET"]
    assert len(forwarded) == 20
    assert {key_of(r.header("Authorization")) for r in forwarded} == {KEY_ID}
    assert any(not r.verified and r.method == "POST" for r in meanwhile)
    await wait_for(lambda: client.service.watcher.current.access_key_id == new_key)
    async with client.get("/graphql/v1") as response:
        assert response.status == 200
    assert key_of(upstream.last().header("Authorization")) == new_key


async def test_a_secret_too_short_to_be_real_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "credentials"
    path.write_text(f"[DEFAULT]\nR3_ACCESS_KEY_ID={KEY_ID}\nR3_SECRET_ACCESS_KEY=c2V\n")
    path.chmod(0o600)
    with pytest.raises(CredentialsError) as caught:
        load_credentials(path, "DEFAULT", {})
    assert "is too short to be a secret access key (2 bytes" in str(caught.value)
