"""The user workload: sequential small calls to a TLS upstream behind a 20 ms round trip."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from .common import HERE, ROOT, TLS_NAME, BenchError, say
from .context import Context
from .cpus import machine_cpu_seconds, own_cpu_seconds
from .launches import Launch, nginx_launch, proxy_launch, start
from .processes import free_port, post_status, tail
from .workload_calls import Way, calls_env, ways

RTT_MS = 20  # the emulated round trip: the relay delays each direction by half
ANSWER = "bench@example.com"  # in every answer of the nginx upstream
WARM_UP_CALLS = 3


@dataclass
class WorkloadRow:
    """One way of making the calls, over the rounds: wall time of all the calls."""

    key: str
    label: str
    seconds: list[float] = field(default_factory=list)
    other_cpu: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return float(statistics.median(self.seconds))


def start_servers(ctx: Context) -> tuple[str, int]:
    """The nginx upstream's TLS port and the delaying relay in front of it (both on the load
    CPU), remoteit-proxy in front of the relay (on the proxy CPU, default log level): the
    upstream's origin as the relay serves it, https://localhost:PORT, and the proxy's port."""
    assert ctx.tls is not None
    plain, tls_port = free_port(), free_port()
    launch = nginx_launch(ctx, "workload-upstream", "upstream.conf", plain, plain, tls_port)
    start(ctx, launch, plain, ctx.load_cpu)
    if post_status(tls_port, ctx.tls) != 200:
        raise BenchError("the workload's upstream does not answer 200 over https")
    relay = free_port()
    argv = [sys.executable, str(HERE / "delay_relay.py"), "--listen", f"127.0.0.1:{relay}"]
    argv += ["--upstream", f"127.0.0.1:{tls_port}", "--delay-ms", str(RTT_MS / 2)]
    log = ctx.workdir / "relay.log"
    start(ctx, Launch("delay relay", argv, dict(ctx.env), log), relay, ctx.load_cpu)
    port = free_port()
    launch = proxy_launch(ctx, "remoteit-workload", port, relay, https=True, log_level=None)
    start(ctx, launch, port, ctx.proxy_cpu)
    if post_status(port) != 200:
        raise BenchError(f"remoteit-proxy through the relay does not answer 200:{tail(launch.log)}")
    return f"https://{TLS_NAME}:{relay}", port


def run_way(ctx: Context, way: Way, calls: int) -> tuple[float, float]:
    """Run one way's calls on the load CPU (as wrk runs); its wall time, and the CPUs' worth
    of time other programs took meanwhile. Every call must have been answered."""
    argv = way.argv
    if ctx.load_cpu is not None and ctx.tools.taskset is not None:
        argv = [ctx.tools.taskset, "-c", str(ctx.load_cpu), *argv]
    machine, own, started = machine_cpu_seconds(), own_cpu_seconds(ctx.procs), time.perf_counter()
    done = subprocess.run(
        argv, capture_output=True, env=calls_env(ctx), cwd=ROOT, timeout=60 + 10 * calls
    )
    elapsed = time.perf_counter() - started
    others = machine_cpu_seconds() - machine - (own_cpu_seconds(ctx.procs) - own)
    answered = done.stdout.decode(errors="replace").count(ANSWER)
    if done.returncode != 0 or answered != calls:
        error = done.stderr.decode(errors="replace").strip()[-500:]
        raise BenchError(
            f"{way.label}: {answered}/{calls} answered, exit {done.returncode}: {error}"
        )
    return elapsed, max(0.0, others) / elapsed


def measure_workload(ctx: Context, rounds: int, calls: int) -> dict[str, Any]:
    """Every way, warmed up, then ``rounds`` rounds of ``calls`` calls, taking turns."""
    started = list(ctx.procs.running)
    try:
        origin, proxy = start_servers(ctx)
        rows = [WorkloadRow(w.key, w.label) for w in ways(ctx, origin, proxy, calls)]
        for way in ways(ctx, origin, proxy, WARM_UP_CALLS):
            say(f"workload: {way.label}, warm-up, {WARM_UP_CALLS} calls")
            run_way(ctx, way, WARM_UP_CALLS)
        for round_ in range(1, rounds + 1):
            for row, way in zip(rows, ways(ctx, origin, proxy, calls), strict=True):
                seconds, other = run_way(ctx, way, calls)
                say(f"workload round {round_}/{rounds}: {way.label}, {seconds:.2f} s")
                row.seconds.append(seconds)
                row.other_cpu.append(round(other, 3))
    finally:
        for proc in [p for p in ctx.procs.running if p not in started]:
            ctx.procs.stop(proc)
    vendor, floor = rows[0].median, rows[-1].median
    return {
        "calls": calls,
        "rounds": rounds,
        "rtt_ms": RTT_MS,
        "rows": [
            {
                "setup": row.key,
                "label": row.label,
                "wall_s": row.median,
                "per_call_ms": row.median / calls * 1000,
                "vs_vendor": row.median / vendor,
                "vs_floor": row.median / floor,
                "rounds_s": [round(s, 4) for s in row.seconds],
                "other_cpu_max": max(row.other_cpu),
            }
            for row in rows
        ],
    }


def workload_table(workload: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The user-workload table's headers and rows, for report.table."""
    rows = []
    for row in workload["rows"]:
        spread = (max(row["rounds_s"]) - min(row["rounds_s"])) / 2 / row["wall_s"]
        rows.append(
            [
                row["label"],
                f"{row['wall_s']:.2f}",
                f"{row['per_call_ms']:.1f}",
                f"±{spread:.0%}" if len(row["rounds_s"]) > 1 else "-",
                f"{row['vs_vendor']:.2f}x",
                f"{row['vs_floor']:.2f}x",
                f"{row['other_cpu_max']:.2f}",
            ]
        )
    return ["way", "wall s", "ms/call", "spread", "vs vendor", "vs floor", "other CPU"], rows


def workload_notes(workload: dict[str, Any]) -> list[str]:
    """What the table's figures and rows are."""
    rtt, rounds = workload["rtt_ms"], workload["rounds"]
    return [
        f"  wall time of all the calls, median of {rounds} round(s), the ways taking turns;",
        "  vs vendor, vs floor = wall time over the vendor's recipe's, over the floor's (below",
        "  1.00x: faster). The relay (delay_relay.py) holds each direction",
        f"  {rtt // 2} ms and a new connection's first bytes one round trip (the TCP handshake);",
        "  it and the upstream run on one CPU, the proxy on the other, the clients on the",
        "  upstream's (as wrk does).",
        "  vendor's recipe: vendor_recipe.sh per call (bash, date, openssl dgst -hmac, curl);",
        "  sign + curl: remoteit-proxy sign | curl -H @- per call; curl via proxy: curl per call",
        "  to remoteit-proxy (default log level INFO, keeping its TLS connection to the relay);",
        "  session via proxy: one Python process, one kept-alive http.client connection to the",
        "  proxy; floor: the same, direct to the relay over TLS (no proxy, no signing).",
    ]
