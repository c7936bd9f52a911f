"""Two proxies side by side, at the same time on the same CPU: the CPU each spends a request.

A machine that speeds up or slows down between runs (a shared or virtual one) moves both
alike, so the ratio of their costs is steadier than two runs one after the other. Each round,
both proxies (pinned to CPU 0) get their own ``wrk -t1 -cN`` at once (wrk and the upstream on
CPU 1); the cost is the proxy's CPU time (``/proc/PID/task/*/schedstat``) over the requests it
answered. Run an A/A control first (the same code and arguments on both sides) to see the noise.

    python benchmarks/ab.py --a-source OLD_CHECKOUT              # before / after
    python benchmarks/ab.py --b-arg=--coalesce-queries           # one option's cost
    python benchmarks/ab.py --log-level info --rounds 6          # what users run by default
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
from pathlib import Path

from slow_clients import proxy, start_upstream, wrk_run


def cpu_ns(pid: int) -> int:
    """Nanoseconds on a CPU of every thread of a process so far."""
    tasks = Path(f"/proc/{pid}/task")
    total = 0
    for task in tasks.iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a thread just ended
            total += int((task / "schedstat").read_text().split()[0])
    return total


def side(args: argparse.Namespace, which: str) -> argparse.Namespace:
    return argparse.Namespace(
        source=getattr(args, f"{which}_source"),
        log_level=args.log_level,
        proxy_arg=getattr(args, f"{which}_arg"),
    )


async def main_async(args: argparse.Namespace) -> None:
    os.sched_setaffinity(0, {1})  # the upstream, in this process
    runner, upstream = await start_upstream()
    async with (
        proxy(side(args, "a"), upstream) as (a, a_url, _),
        proxy(side(args, "b"), upstream) as (b, b_url, _),
    ):
        for process in (a, b):
            os.sched_setaffinity(process.pid, {0})
        await asyncio.gather(
            asyncio.to_thread(wrk_run, a_url, 10, 1), asyncio.to_thread(wrk_run, b_url, 10, 1)
        )
        ratios, costs = [], []
        for number in range(1, args.rounds + 1):
            before = cpu_ns(a.pid), cpu_ns(b.pid)
            (_, a_done), (_, b_done) = await asyncio.gather(
                asyncio.to_thread(wrk_run, a_url, args.connections, args.duration),
                asyncio.to_thread(wrk_run, b_url, args.connections, args.duration),
            )
            a_cost = (cpu_ns(a.pid) - before[0]) / a_done / 1000
            b_cost = (cpu_ns(b.pid) - before[1]) / b_done / 1000
            ratios.append(b_cost / a_cost)
            costs.append((a_cost, b_cost))
            print(
                f"round {number}: A {a_cost:.1f} us/request ({a_done} requests), "
                f"B {b_cost:.1f} us/request ({b_done}): B/A {b_cost / a_cost:.3f}",
                flush=True,
            )
    await runner.cleanup()
    a_median = statistics.median(c[0] for c in costs)
    b_median = statistics.median(c[1] for c in costs)
    print(
        f"median over {args.rounds} rounds: A {a_median:.1f} us, B {b_median:.1f} us, "
        f"B/A {statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for which in ("a", "b"):
        parser.add_argument(f"--{which}-source", help=f"run proxy {which.upper()} from this copy")
        parser.add_argument(
            f"--{which}-arg", action="append", default=[], help=f"passed to proxy {which.upper()}"
        )
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(main_async(parser.parse_args()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
