"""Time from process start to the first answered request, for remoteit-proxy and nginx + njs."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from .common import BenchError, say
from .context import Context
from .launches import Launch, nginx_launch, proxy_launch
from .processes import free_port, post_status, tail


def first_answer_seconds(ctx: Context, launch: Launch, port: int, timeout: float = 30.0) -> float:
    """Seconds from spawning the server to its first 200 for a GraphQL POST."""
    started = time.perf_counter()
    proc = ctx.procs.start(
        launch.argv, log=launch.log, env=launch.env, cpu=ctx.proxy_cpu, cwd=launch.cwd
    )
    try:
        while True:
            if post_status(port) == 200:
                return time.perf_counter() - started
            if proc.poll() is not None:
                raise BenchError(f"{launch.what} exited with {proc.returncode}:{tail(launch.log)}")
            if time.perf_counter() - started > timeout:
                raise BenchError(f"{launch.what} did not answer within {timeout:g} s")
            time.sleep(0.002)
    finally:
        ctx.procs.stop(proc)


def measure_startup(ctx: Context, upstream: int, starts: int) -> dict[str, Any]:
    """Median time to the first answer over ``starts`` starts, through the nginx upstream."""
    plans: list[tuple[str, Callable[[int, int], Launch]]] = [
        ("remoteit-proxy", lambda i, p: proxy_launch(ctx, f"remoteit-start-{i}", p, upstream))
    ]
    if ctx.tools.njs_module is not None:
        plans.append(
            (
                "nginx + njs",
                lambda i, p: nginx_launch(ctx, f"njs-start-{i}", "njs.conf", p, upstream),
            )
        )
    results: dict[str, Any] = {}
    for label, make in plans:
        times = []
        for i in range(starts):
            port = free_port()
            times.append(first_answer_seconds(ctx, make(i, port), port))
        results[label] = {"median_s": statistics.median(times), "all_s": times}
        say(f"{label}: first answer after {statistics.median(times):.3f} s (median of {starts})")
    return results
