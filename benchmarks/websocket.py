"""WebSocket relay: throughput, round-trip latency and memory, through the proxy and direct.

A local echo server, the real ``remoteit-proxy`` process in front of it, and a client here, all
on loopback; the same measures are taken direct to the server in the same run, so the figures
are ratios to it (Linux only, for the RSS).

    python benchmarks/websocket.py --size-mib 256 --messages 2000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import WSMsgType, web
from proxyproc import rss_kib, start_proxy, write_credentials

CHUNK = 1024 * 1024


async def echo_server() -> web.AppRunner:
    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        async for message in ws:
            if message.type is WSMsgType.BINARY:
                await ws.send_bytes(message.data)
        return ws

    app = web.Application()
    app.router.add_get("/v1", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


async def measure(url: str, size: int, messages: int, pid: int | None) -> dict[str, float]:
    """MiB/s echoing ``size`` bytes in 1 MiB messages (sent and read at once), the p50 round
    trip of a small message, and the proxy's peak RSS meanwhile."""
    block, peak = os.urandom(CHUNK), 0
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, max_msg_size=0) as ws,
    ):

        async def send() -> None:
            for _ in range(size // CHUNK):
                await ws.send_bytes(block)

        started = time.perf_counter()
        sending = asyncio.create_task(send())
        received = 0
        while received < size:
            received += len((await ws.receive()).data)
            if pid is not None:
                peak = max(peak, rss_kib(pid))
        await sending
        mib_s = size / CHUNK / (time.perf_counter() - started)
        rounds = []
        for _ in range(messages):
            sent = time.perf_counter()
            await ws.send_bytes(b"{}")
            await ws.receive()
            rounds.append(time.perf_counter() - sent)
    return {"mib_s": mib_s, "p50_us": statistics.median(rounds) * 1e6, "peak_kib": peak}


async def main(size_mib: int, messages: int) -> None:
    runner = await echo_server()
    port = runner.addresses[0][1]
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, drainer = await start_proxy(
            f"http://127.0.0.1:{port}", write_credentials(Path(tmp))
        )
        try:
            proxied_url = url.replace("http://", "ws://") + "/v1"
            await measure(proxied_url, 8 * CHUNK, 100, None)  # warm up
            idle = rss_kib(proc.pid)
            direct = await measure(f"ws://127.0.0.1:{port}/v1", size_mib * CHUNK, messages, None)
            proxied = await measure(proxied_url, size_mib * CHUNK, messages, proc.pid)
        finally:
            proc.terminate()
            await proc.wait()
            drainer.cancel()
    await runner.cleanup()
    print(f"{size_mib} MiB echoed in 1 MiB messages, then {messages} round trips of 2 bytes")
    print(
        f"throughput: direct {direct['mib_s']:.0f} MiB/s, through the proxy "
        f"{proxied['mib_s']:.0f} MiB/s ({proxied['mib_s'] / direct['mib_s']:.2f}x)"
    )
    print(
        f"round trip p50: direct {direct['p50_us']:.0f} us, through the proxy "
        f"{proxied['p50_us']:.0f} us (+{proxied['p50_us'] - direct['p50_us']:.0f} us)"
    )
    print(
        f"proxy RSS: idle {idle / 1024:.1f} MiB, peak while relaying "
        f"{proxied['peak_kib'] / 1024:.1f} MiB (+{(proxied['peak_kib'] - idle) / 1024:.1f} MiB)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--messages", type=int, default=2000)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.size_mib, arguments.messages))
