"""The file endpoints: 100 MiB multipart uploads and downloads stream through, signed."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from fake_upstream import FakeUpstream, Received
from test_faults import command
from test_websocket import memory_kib

MIB = 1024 * 1024
SIZE = 100 * MIB
BOUNDARY = "----remoteit-proxy-test-7MA4YWxkTrZu0gW"
PIECE = hashlib.sha256(b"piece").digest() * (MIB // 32)  # 1 MiB, not all alike


def multipart_parts() -> tuple[bytes, bytes]:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head, f"\r\n--{BOUNDARY}--\r\n".encode()


async def multipart_body() -> AsyncIterator[bytes]:
    head, tail = multipart_parts()
    yield head
    for _ in range(SIZE // MIB):
        yield PIECE
    yield tail


def expected_upload() -> tuple[str, int]:
    head, tail = multipart_parts()
    digest = hashlib.sha256(head)
    for _ in range(SIZE // MIB):
        digest.update(PIECE)
    digest.update(tail)
    return digest.hexdigest(), len(head) + SIZE + len(tail)


async def download(request: web.Request, received: Received) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    response.content_length = SIZE
    await response.prepare(request)
    for _ in range(SIZE // MIB):
        await response.write(PIECE)
    await response.write_eof()
    return response


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
@pytest.mark.parametrize("framing", ["chunked", "length"])
async def test_a_100_mib_multipart_upload_streams_signed_with_its_content_type(
    upstream: FakeUpstream, credentials_file: Path, tmp_path: Path, framing: str
) -> None:
    content_type = f"multipart/form-data; boundary={BOUNDARY}"
    sha256, size = expected_upload()
    headers = {"Content-Type": content_type}
    if framing == "length":
        headers["Content-Length"] = str(size)
    args = ("--listen", "127.0.0.1:0", "--upstream", upstream.url)
    async with (
        command(*args, "--credentials", str(credentials_file), home=tmp_path) as proxy,
        aiohttp.ClientSession() as session,
    ):
        before = memory_kib(proxy.process.pid, "VmRSS")
        target = proxy.url + "/graphql/v1/file/upload"
        async with session.post(target, data=multipart_body(), headers=headers) as response:
            assert response.status == 200, await response.text()
            answer = await response.json()
        peak = memory_kib(proxy.process.pid, "VmHWM")
    received = upstream.last()  # signed, the Content-Type (boundary and all) covered
    assert received.header("Content-Type") == content_type
    assert (answer["sha256"], answer["size"]) == (sha256, size)
    assert (received.header("Content-Length") is not None) == (framing == "length")
    print(f"upload ({framing}): proxy RSS {before / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB")
    assert (peak - before) / 1024 < 24, f"the proxy grew by {(peak - before) / 1024:.1f} MiB"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
async def test_a_100_mib_download_streams(
    upstream: FakeUpstream, credentials_file: Path, tmp_path: Path
) -> None:
    upstream.respond = download
    args = ("--listen", "127.0.0.1:0", "--upstream", upstream.url)
    async with (
        command(*args, "--credentials", str(credentials_file), home=tmp_path) as proxy,
        aiohttp.ClientSession() as session,
    ):
        before = memory_kib(proxy.process.pid, "VmRSS")
        digest, size = hashlib.sha256(), 0
        async with session.get(proxy.url + "/graphql/v1/file/download/abc123") as response:
            assert response.status == 200
            assert response.headers["Content-Length"] == str(SIZE)
            async for chunk in response.content.iter_chunked(MIB):
                digest.update(chunk)
                size += len(chunk)
        peak = memory_kib(proxy.process.pid, "VmHWM")
    expected = hashlib.sha256()
    for _ in range(SIZE // MIB):
        expected.update(PIECE)
    assert (size, digest.hexdigest()) == (SIZE, expected.hexdigest())
    assert upstream.last().raw_path == "/graphql/v1/file/download/abc123"
    print(f"download: proxy RSS {before / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB")
    assert (peak - before) / 1024 < 24, f"the proxy grew by {(peak - before) / 1024:.1f} MiB"
