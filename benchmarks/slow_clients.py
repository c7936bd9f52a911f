"""Slow clients against the real proxy process: how long a trickled head is held, what a
connection flood does to the proxy's descriptors and to /-/health, the memory each held
connection costs, and the throughput of ordinary requests (the hot path).

All on loopback; every loop is bounded and every process started here is stopped at the end.
``--source DIR`` runs the proxy from another copy of the code (e.g. an older checkout).

    python benchmarks/slow_clients.py head [--every 1] [--hold 30]
    python benchmarks/slow_clients.py flood [--nofile 4096] [--connections 6000]
    python benchmarks/slow_clients.py memory [--connections 500] [--wait 75]
    python benchmarks/slow_clients.py throughput [--duration 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web
from proxyproc import rss_kib, write_credentials

ANSWER = b'{"data":{"login":{"email":"bench@example.com"}}}'
LARGE = 256 * 1024 * 1024  # a download no held client ever finishes


async def start_upstream() -> tuple[web.AppRunner, str]:
    async def graphql(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=ANSWER, content_type="application/json")

    async def download(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = LARGE
        await response.prepare(request)
        block = b"y" * 65536
        with contextlib.suppress(ConnectionError):
            for _ in range(LARGE // len(block)):
                await response.write(block)
        return response

    app = web.Application()
    app.router.add_route("*", "/graphql/v1", graphql)
    app.router.add_route("*", "/upload", graphql)
    app.router.add_get("/download", download)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def proxy(
    args: argparse.Namespace, upstream: str, *extra: str, nofile: int | None = None
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str, list[str]]]:
    """The proxy process (from ``--source`` if given); its URL and the lines it logs."""
    folder = Path(tempfile.mkdtemp(prefix="slow-clients-"))
    credentials = write_credentials(folder)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("R3_", "REMOTEIT_PROXY_"))}
    env["HOME"] = str(folder)
    cwd = None
    if args.source:
        env["PYTHONPATH"] = str(Path(args.source).resolve())
        cwd = args.source  # ``-m proxy`` finds the package in the working directory first

    def limit() -> None:
        if nofile is not None:  # the hard limit too: the proxy raises its soft limit to it
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    with socket.socket() as probe:  # a free port: the start-up line is not logged at warning
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    argv = [sys.executable, "-m", "proxy", "--listen", url.removeprefix("http://")]
    argv += ["--upstream", upstream, "--credentials", str(credentials)]
    argv += ["--log-level", args.log_level, *args.proxy_arg]
    process = await asyncio.create_subprocess_exec(
        *argv, *extra, env=env, cwd=cwd, stderr=subprocess.PIPE, preexec_fn=limit
    )
    assert process.stderr is not None
    lines: list[str] = []
    for _ in range(150):
        await asyncio.sleep(0.1)
        if (await get(url, "/-/ready", 1)).startswith("HTTP/1.1 200"):
            break
        if process.returncode is not None:
            raise SystemExit("the proxy did not start:\n" + (await process.stderr.read()).decode())
    else:
        raise SystemExit("the proxy did not start in 15 s")

    async def collect() -> None:
        assert process.stderr is not None
        while line := await process.stderr.readline():
            lines.append(line.decode())

    reader = asyncio.create_task(collect())
    try:
        yield process, url, lines
    finally:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 15)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()
        reader.cancel()


def address(url: str) -> tuple[str, int]:
    host, _, port = url.removeprefix("http://").rpartition(":")
    return host, int(port)


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def get(url: str, target: str, timeout: float = 3.0) -> str:
    """One request on a new connection: the status line, or what went wrong."""
    host, port = address(url)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        return f"no connection ({type(exc).__name__})"
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = await asyncio.wait_for(reader.read(200), timeout)
        return data.split(b"\r\n", 1)[0].decode() if data else "empty reply (closed)"
    except asyncio.TimeoutError:
        return f"no answer in {timeout:g} s"
    except OSError as exc:
        return f"connection error ({type(exc).__name__})"
    finally:
        writer.close()


async def head(args: argparse.Namespace) -> None:
    """A request head trickled one byte every ``--every`` seconds, watched up to ``--hold``."""
    runner, upstream = await start_upstream()
    async with proxy(args, upstream) as (_, url, _):
        reader, writer = await asyncio.open_connection(*address(url))
        started = time.monotonic()
        writer.write(b"GET /graphql/v1 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        received = b""
        closed = False
        while time.monotonic() - started < args.hold and not closed:
            with contextlib.suppress(asyncio.TimeoutError):
                chunk = await asyncio.wait_for(reader.read(4096), args.every)
                received += chunk
                closed = not chunk
            if not closed:
                with contextlib.suppress(ConnectionError):
                    writer.write(b"a")
        held = time.monotonic() - started
        writer.close()
        status = received.split(b"\r\n", 1)[0].decode() or "nothing"
        if closed:
            print(f"trickled head: closed after {held:.1f} s; the proxy sent: {status}")
        else:
            print(f"trickled head: still open after {held:.1f} s (stopped watching)")
    await runner.cleanup()


async def flood(args: argparse.Namespace) -> None:
    """``--connections`` idle connections against a proxy whose descriptor limit is
    ``--nofile``; then /-/health and an ordinary request, while they are held."""
    runner, upstream = await start_upstream()
    async with proxy(args, upstream, nofile=args.nofile) as (process, url, lines):
        base = open_descriptors(process.pid)
        host, port = address(url)
        held: list[socket.socket] = []
        loop = asyncio.get_running_loop()

        async def one() -> None:
            sock = socket.socket()
            sock.setblocking(False)
            try:
                await asyncio.wait_for(loop.sock_connect(sock, (host, port)), 2)
            except (OSError, asyncio.TimeoutError):
                sock.close()
            else:
                held.append(sock)

        started = time.monotonic()
        for batch in range(0, args.connections, 500):
            count = min(500, args.connections - batch)
            await asyncio.gather(*(one() for _ in range(count)))
        await asyncio.sleep(1.0)
        opened = time.monotonic() - started
        accepted = open_descriptors(process.pid) - base
        health = await get(url, "/-/health")
        ordinary = await get(url, "/graphql/v1")
        print(f"limit {args.nofile} descriptors; {len(held)} of {args.connections} connected")
        print(f"  in {opened:.1f} s; the proxy holds {accepted} more descriptors than idle")
        print(f"  /-/health: {health}")
        print(f"  GET /graphql/v1: {ordinary}")
        metrics = await get_body(url, "/-/metrics")
        for name in ("open_connections", "max_connections", "connections_refused_total"):
            found = re.search(rf"^remoteit_proxy_{name} (\S+)", metrics, re.M)
            if found:
                print(f"  remoteit_proxy_{name} {found.group(1)}")
        for sock in held:
            sock.close()
        await asyncio.sleep(1.5)
        logged = [line.rstrip() for line in lines if re.search(r"WARNING|ERROR", line)]
        print(f"  log lines at WARNING or above: {len(logged)}")
        for line in logged[:4]:
            print(f"    {line[:160]}")
    await runner.cleanup()


async def get_body(url: str, target: str) -> str:
    host, port = address(url)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 3)
        writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = await asyncio.wait_for(reader.read(), 3)
        writer.close()
        return data.decode("latin-1")
    except (OSError, asyncio.TimeoutError):
        return ""


async def memory(args: argparse.Namespace) -> None:
    """``--connections`` clients that never read a large answer, and as many whose request
    body stalls: the proxy's RSS per held connection, and how many it still holds later."""
    runner, upstream = await start_upstream()
    async with proxy(args, upstream) as (process, url, _):
        host, port = address(url)
        await asyncio.sleep(0.5)
        base_rss, base_fds = rss_kib(process.pid), open_descriptors(process.pid)
        loop = asyncio.get_running_loop()
        held: list[socket.socket] = []

        async def one(request: bytes) -> None:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await loop.sock_connect(sock, (host, port))
            await loop.sock_sendall(sock, request)
            held.append(sock)

        reading = b"GET /download HTTP/1.1\r\nHost: x\r\n\r\n"
        body = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"z" * 1000
        kinds = {"reading": [reading], "body": [body], "both": [reading, body]}[args.kind]
        for request in kinds:
            for batch in range(0, args.connections, 250):
                count = min(250, args.connections - batch)
                await asyncio.gather(*(one(request) for _ in range(count)))
        await asyncio.sleep(5)
        rss, fds = rss_kib(process.pid), open_descriptors(process.pid)
        n = len(kinds) * args.connections
        names = {"reading": "never-reading", "body": "stalled-body", "both": "both kinds of"}
        print(f"{args.connections} {names[args.kind]} clients")
        print(f"  RSS idle {base_rss / 1024:.1f} MiB, held {rss / 1024:.1f} MiB: ")
        print(f"  {(rss - base_rss) / n:.0f} KiB per held connection; {fds - base_fds} descriptors")
        started = time.monotonic()
        while time.monotonic() - started < args.wait:
            await asyncio.sleep(5)
            now_fds = open_descriptors(process.pid) - base_fds
            held_rss = rss_kib(process.pid) / 1024
            after = 5 + time.monotonic() - started
            print(f"  after {after:.0f} s: {now_fds} descriptors held, RSS {held_rss:.1f} MiB")
            if now_fds <= 0:
                break
        for sock in held:
            sock.close()
    await runner.cleanup()


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk_run(url: str, connections: int, duration: int) -> tuple[float, int]:
    """Requests a second and requests done, from wrk."""
    lua = Path(tempfile.mkdtemp()) / "post.lua"
    lua.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        'wrk.body = \'{"query":"{ login { email } }"}\'\n'
    )
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "-s", str(lua),
         f"{url}/graphql/v1"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"wrk saw {errors.group(1)} failed answers:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    done = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return rate, done


async def throughput(args: argparse.Namespace) -> None:
    """wrk (POST /graphql/v1) at 1 and 50 connections; the proxy pinned to CPU 0, wrk and
    the upstream to CPU 1; the median of ``--rounds`` runs, as requests a second and as the
    proxy's CPU time per request (steadier on a shared machine)."""
    os.sched_setaffinity(0, {1})  # the upstream, in this process
    runner, upstream = await start_upstream()
    async with proxy(args, upstream) as (process, url, _):
        os.sched_setaffinity(process.pid, {0})
        wrk_run(url, 10, 1)  # warm up
        for connections in (1, 50):
            rates, costs = [], []
            for _ in range(args.rounds):
                before = cpu_seconds(process.pid)
                rate, done = await asyncio.to_thread(wrk_run, url, connections, args.duration)
                rates.append(rate)
                costs.append((cpu_seconds(process.pid) - before) / done * 1e6)
            print(
                f"{connections:>3} connections: median {statistics.median(rates):.0f} req/s "
                f"({', '.join(f'{r:.0f}' for r in rates)}); proxy CPU per request: median "
                f"{statistics.median(costs):.0f} us ({', '.join(f'{c:.0f}' for c in costs)})"
            )
    await runner.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=["head", "flood", "memory", "throughput"])
    parser.add_argument("--source", help="run the proxy from this copy of the code")
    parser.add_argument("--proxy-arg", action="append", default=[], help="passed to the proxy")
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--every", type=float, default=1.0)
    parser.add_argument("--hold", type=float, default=30.0)
    parser.add_argument("--nofile", type=int, default=4096)
    parser.add_argument("--connections", type=int, default=0)
    parser.add_argument("--wait", type=float, default=75.0)
    parser.add_argument("--kind", choices=["reading", "body", "both"], default="both")
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not args.connections:
        args.connections = {"flood": 6000, "memory": 500}.get(args.scenario, 0)
    scenario = {"head": head, "flood": flood, "memory": memory, "throughput": throughput}
    asyncio.run(scenario[args.scenario](args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
