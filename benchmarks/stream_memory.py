"""Measure the proxy's resident memory while it streams a large upload and a large download.

Runs the real ``remoteit-proxy`` process between a local sink/source upstream and a client in
this process, all on loopback, and samples the proxy's RSS from /proc (Linux only).

    python benchmarks/stream_memory.py --size-mib 1024
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web
from proxyproc import rss_kib, start_proxy, write_credentials

CHUNK = 1024 * 1024


async def upstream_app(size: int) -> web.AppRunner:
    async def sink(request: web.Request) -> web.Response:
        total = 0
        async for chunk in request.content.iter_any():
            total += len(chunk)
        return web.json_response({"size": total})

    async def source(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = size
        await response.prepare(request)
        block = os.urandom(CHUNK)
        for _ in range(size // CHUNK):
            await response.write(block)
        return response

    app = web.Application()
    app.router.add_post("/upload", sink)
    app.router.add_get("/download", source)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


async def sample_peak(pid: int, stop: asyncio.Event) -> int:
    peak = 0
    while not stop.is_set():
        peak = max(peak, rss_kib(pid))
        await asyncio.sleep(0.02)
    return peak


async def body(size: int) -> AsyncIterator[bytes]:
    block = os.urandom(CHUNK)
    for _ in range(size // CHUNK):
        yield block


async def main(size_mib: int) -> None:
    size = size_mib * CHUNK
    runner = await upstream_app(size)
    port = runner.addresses[0][1]
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, drainer = await start_proxy(
            f"http://127.0.0.1:{port}", write_credentials(Path(tmp))
        )
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as s:
                for _ in range(3):  # warm up: first requests allocate buffers and the pool
                    async with s.post(url + "/upload", data=b"x" * CHUNK) as r:
                        await r.read()
                await asyncio.sleep(0.5)
                idle = rss_kib(proc.pid)
                results = []
                for name in ("upload", "download"):
                    stop = asyncio.Event()
                    sampler = asyncio.create_task(sample_peak(proc.pid, stop))
                    started = time.perf_counter()
                    if name == "upload":
                        async with s.post(url + "/upload", data=body(size)) as r:
                            assert (await r.json())["size"] == size
                    else:
                        received = 0
                        async with s.get(url + "/download") as r:
                            async for chunk in r.content.iter_any():
                                received += len(chunk)
                        assert received == size
                    elapsed = time.perf_counter() - started
                    stop.set()
                    results.append((name, await sampler, elapsed))
        finally:
            proc.terminate()
            await proc.wait()
            drainer.cancel()
    await runner.cleanup()
    print(f"proxy RSS idle: {idle / 1024:.1f} MiB ({size_mib} MiB each way)")
    for name, peak, elapsed in results:
        print(
            f"{name:8}: peak RSS {peak / 1024:.1f} MiB "
            f"(+{(peak - idle) / 1024:.1f} MiB over idle), {size_mib / elapsed:.0f} MiB/s"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    asyncio.run(main(parser.parse_args().size_mib))
