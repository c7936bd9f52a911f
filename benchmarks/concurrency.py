"""1,000 concurrent client connections through a slow upstream (1 s per answer).

Starts a local upstream and the real ``remoteit-proxy`` process, opens N connections at once,
each with one request, and meanwhile times one request to a fast path. Prints how many
succeeded, the wall time, the fast request's latency and the proxy's peak RSS (Linux).

    python benchmarks/concurrency.py --connections 1000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from proxyproc import rss_kib, start_proxy, write_credentials

UPSTREAM = """
import asyncio, sys
from aiohttp import web
async def answer(request):
    if request.path != "/fast":
        await asyncio.sleep(float(sys.argv[2]))
    return web.json_response({"ok": True})
app = web.Application()
app.router.add_route("*", "/{tail:.*}", answer)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None,
            backlog=4096)
"""


async def main(connections: int, delay: float) -> int:
    port = 20000 + os.getpid() % 20000
    upstream = await asyncio.create_subprocess_exec(
        sys.executable, "-c", UPSTREAM, str(port), str(delay)
    )
    await asyncio.sleep(1.0)
    with tempfile.TemporaryDirectory() as tmp:
        creds = write_credentials(Path(tmp))
        proxy, url, drainer = await start_proxy(f"http://127.0.0.1:{port}", creds)
        idle = rss_kib(proxy.pid)
        peak = idle
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def one(path: str) -> tuple[int, float]:
                started = time.perf_counter()
                try:
                    async with session.post(url + path, data=b'{"query":"{ x }"}') as r:
                        await r.read()
                        return r.status, time.perf_counter() - started
                except (aiohttp.ClientError, TimeoutError) as exc:
                    print("failed:", type(exc).__name__, exc, file=sys.stderr)
                    return 0, time.perf_counter() - started

            started = time.perf_counter()
            slow = [asyncio.create_task(one("/graphql/v1")) for _ in range(connections)]
            await asyncio.sleep(delay / 2)
            peak = max(peak, rss_kib(proxy.pid))
            fast_status, fast_latency = await one("/fast")
            pending_when_fast_done = sum(not t.done() for t in slow)
            while not all(t.done() for t in slow):
                peak = max(peak, rss_kib(proxy.pid))
                await asyncio.sleep(0.05)
            results = [t.result() for t in slow]
            wall = time.perf_counter() - started
        proxy.terminate()
        await proxy.wait()
        drainer.cancel()
    upstream.terminate()
    await upstream.wait()
    ok = sum(status == 200 for status, _ in results)
    latencies = sorted(latency for _, latency in results)
    print(f"{connections} concurrent connections, upstream delay {delay:g} s")
    print(
        f"succeeded: {ok}/{connections}, wall time {wall:.2f} s, "
        f"p50 {latencies[len(latencies) // 2]:.2f} s, max {latencies[-1]:.2f} s"
    )
    print(
        f"fast request meanwhile: status {fast_status}, {fast_latency * 1000:.0f} ms, "
        f"{pending_when_fast_done} slow requests still pending when it finished"
    )
    print(f"proxy RSS: idle {idle / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB")
    return 0 if ok == connections and fast_status == 200 else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--delay", type=float, default=1.0)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.connections, args.delay)))
