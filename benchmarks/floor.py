"""The framework floor: aiohttp's server and the proxy's upstream client, doing nothing else.

No signing, no checks, no header filtering, no metrics or logs: what any proxy built on this
framework costs per request, to compare remoteit-proxy's figures with.

    python benchmarks/floor.py --listen 127.0.0.1:8282 --upstream http://127.0.0.1:8080
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

# The checkout's client, as ``python -m proxy`` run from the repository root uses.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from proxy.client import Dialer, Origin, Pool  # noqa: E402


async def serve(host: str, port: int, upstream: str) -> None:
    parts = urlsplit(upstream)
    up_host, up_port = parts.hostname or "127.0.0.1", parts.port or 80
    authority = f"{up_host}:{up_port}"
    origin = Origin("http", up_host, up_port, f"http://{authority}", upstream)
    pool = Pool(Dialer(origin, tls=None, proxy=None, connect_timeout=5.0, read_timeout=30.0))
    host_line = f"Host: {authority}".encode()

    async def handler(request: web.BaseRequest) -> web.Response:
        body = await request.read()
        content_type = request.headers.get("Content-Type", "application/json")
        lines = [host_line, b"Content-Type: " + content_type.encode()]
        async with await pool.request(request.method, request.raw_path, lines, body) as answer:
            data = b""
            while chunk := await answer.read():
                data += chunk
            head = answer.head
            kind = head.headers.get("Content-Type", "application/octet-stream").split(";")[0]
            return web.Response(
                status=head.status, reason=head.reason, body=data, content_type=kind
            )

    runner = web.ServerRunner(web.Server(handler, access_log=None))
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    pool.close()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:8282", help="HOST:PORT to listen on")
    parser.add_argument("--upstream", required=True, help="http://HOST:PORT to forward to")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    run = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop  # the proxy runs on it when installed: so does its floor

        run = uvloop.run
    run(serve(host, int(port), args.upstream))


if __name__ == "__main__":
    main()
