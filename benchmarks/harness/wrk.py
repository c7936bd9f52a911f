"""The load: wrk runs, their samples, the measurements over rounds and their ratios."""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .common import CONNECTIONS, BenchError, say
from .context import Context
from .cpus import machine_cpu_seconds, own_cpu_seconds
from .setups import Setup

WARM_UP_CONNECTIONS = 50
OTHER_CPU_WARNING = 0.1  # CPUs' worth of time other programs may use during a run

WRK_SCRIPT = """\
-- A small GraphQL POST, as a client of the Remote.It API sends it.
wrk.method = "POST"
wrk.body = '{"query":"{ login { email } }"}'
wrk.headers["Content-Type"] = "application/json"

-- One machine-readable line at the end; latencies in microseconds.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "max_us": %d, "connect_errors": %d, "read_errors": %d, ' ..
    '"write_errors": %d, "timeouts": %d, "non_2xx": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.timeout, e.status))
end
"""


@dataclass
class Sample:
    """One wrk run."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    socket_errors: int
    non_2xx: int
    other_cpu: float  # CPUs' worth of time other programs used meanwhile (a lower bound)


@dataclass
class Measurement:
    """One setup at one connection count, over several rounds; figures are medians."""

    setup: str
    label: str
    connections: int
    upstream: str = "http"  # how the setup reaches the upstream: http or https
    baseline: bool = False  # the upstream direct
    samples: list[Sample] = field(default_factory=list)

    def median(self, name: str) -> float:
        return float(statistics.median(getattr(sample, name) for sample in self.samples))

    @property
    def rps(self) -> float:
        return self.median("rps")

    @property
    def p50_ms(self) -> float:
        return self.median("p50_ms")

    @property
    def p99_ms(self) -> float:
        return self.median("p99_ms")

    @property
    def errors(self) -> int:
        return sum(sample.socket_errors + sample.non_2xx for sample in self.samples)

    @property
    def other_cpu(self) -> float:
        return max(sample.other_cpu for sample in self.samples)

    @property
    def spread(self) -> float:
        """Half the range of requests/s over the rounds, as a fraction of the median."""
        values = [sample.rps for sample in self.samples]
        return (max(values) - min(values)) / 2 / self.rps if self.rps else 0.0

    def as_json(
        self, added_p50_ms: float | None, reference: str | None, ratios: dict[str, float | None]
    ) -> dict[str, Any]:
        return {
            "setup": self.setup,
            "label": self.label,
            "upstream": self.upstream,
            "connections": self.connections,
            "rps": self.rps,
            "p50_ms": self.p50_ms,
            "p90_ms": self.median("p90_ms"),
            "p99_ms": self.p99_ms,
            "added_p50_ms": added_p50_ms,
            "reference": reference,
            "vs_reference": ratios,
            "errors": self.errors,
            "other_cpu_max": self.other_cpu,
            "rounds": [asdict(sample) for sample in self.samples],
        }


def run_wrk(ctx: Context, url: str, connections: int, seconds: int) -> Sample:
    """One wrk run (one thread, on the upstream's CPU), read from the script's WRK_RESULT."""
    script = ctx.workdir / "graphql.lua"
    if not script.exists():
        script.write_text(WRK_SCRIPT)
    argv = [ctx.tools.wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    argv += ["--timeout", "5s", "-s", str(script), url]
    if ctx.load_cpu is not None and ctx.tools.taskset is not None:
        argv = [ctx.tools.taskset, "-c", str(ctx.load_cpu), *argv]
    machine, own, started = machine_cpu_seconds(), own_cpu_seconds(ctx.procs), time.monotonic()
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=seconds + 60, env=ctx.env, check=False
    )
    others = machine_cpu_seconds() - machine - (own_cpu_seconds(ctx.procs) - own)
    other_cpu = max(0.0, others) / (time.monotonic() - started)
    match = re.search(r"^WRK_RESULT (\{.*\})$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or match is None:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    raw: dict[str, int] = json.loads(match.group(1))
    elapsed = raw["duration_us"] / 1e6
    errors = ("connect_errors", "read_errors", "write_errors", "timeouts")
    return Sample(
        requests=raw["requests"],
        seconds=round(elapsed, 3),
        rps=raw["requests"] / elapsed if elapsed else 0.0,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        socket_errors=sum(raw[name] for name in errors),
        non_2xx=raw["non_2xx"],
        other_cpu=round(other_cpu, 3),
    )


def measure(
    ctx: Context, setups: Sequence[Setup], seconds: int, warm_up: int, rounds: int
) -> list[Measurement]:
    """Warm every setup up, then ``rounds`` rounds, the setups taking turns within each."""
    found = {
        (s.key, c): Measurement(s.key, s.label, c, s.upstream, s.baseline)
        for c in CONNECTIONS
        for s in setups
    }
    for setup in setups:
        say(f"{setup.label}: warm-up, {warm_up} s at {WARM_UP_CONNECTIONS} connections")
        run_wrk(ctx, setup.url, WARM_UP_CONNECTIONS, warm_up)
    for round_ in range(1, rounds + 1):
        for connections in CONNECTIONS:
            for setup in setups:
                say(f"round {round_}/{rounds}: {setup.label}, {connections} connection(s)")
                sample = run_wrk(ctx, setup.url, connections, seconds)
                if sample.other_cpu > OTHER_CPU_WARNING:
                    say(f"WARNING: other programs used {sample.other_cpu:.2f} CPU meanwhile")
                if sample.requests == 0 or sample.socket_errors or sample.non_2xx:
                    say(
                        f"WARNING {setup.label}: {sample.requests} requests, "
                        f"{sample.socket_errors} socket errors, {sample.non_2xx} non-2xx answers"
                    )
                found[(setup.key, connections)].samples.append(sample)
    return list(found.values())


def added_p50(measurements: Sequence[Measurement]) -> dict[tuple[str, int], float | None]:
    """p50 latency each setup adds over the upstream alone (over https for the https rows), at
    the same connection count."""
    direct = {(m.upstream, m.connections): m.p50_ms for m in measurements if m.baseline}
    return {
        (m.setup, m.connections): None
        if m.baseline or (m.upstream, m.connections) not in direct
        else m.p50_ms - direct[(m.upstream, m.connections)]
        for m in measurements
    }


# The setup the others' figures are ratios to, by upstream: the first one measured.
REFERENCES = {"http": ("njs", "nginx"), "https": ("njs-https",)}


def reference_for(measurements: Sequence[Measurement], upstream: str) -> str | None:
    """nginx + njs (over http, the plain nginx proxy when njs is unavailable); None if absent."""
    measured = {m.setup for m in measurements}
    return next((key for key in REFERENCES[upstream] if key in measured), None)


def ratios(
    measurements: Sequence[Measurement], added: Mapping[tuple[str, int], float | None]
) -> dict[tuple[str, int], dict[str, float | None]]:
    """Each setup's req/s, p50, p99 and added p50 over its reference's, at the same
    connection count; None where there is no reference or no figure."""
    by_key = {(m.setup, m.connections): m for m in measurements}

    def over(value: float | None, reference: float | None) -> float | None:
        return None if value is None or not reference else value / reference

    found: dict[tuple[str, int], dict[str, float | None]] = {}
    for m in measurements:
        key = (m.setup, m.connections)
        ref = by_key.get((reference_for(measurements, m.upstream) or "", m.connections))
        if ref is None:
            found[key] = dict.fromkeys(("rps", "p50_ms", "p99_ms", "added_p50_ms"))
            continue
        found[key] = {
            "rps": over(m.rps, ref.rps),
            "p50_ms": over(m.p50_ms, ref.p50_ms),
            "p99_ms": over(m.p99_ms, ref.p99_ms),
            "added_p50_ms": over(added[key], added[(ref.setup, ref.connections)]),
        }
    return found


def info_vs_warning(measurements: Sequence[Measurement]) -> dict[str, float | None]:
    """remoteit-proxy's req/s at the default log level INFO over --log-level warning's, by
    connection count."""
    rps = {(m.setup, m.connections): m.rps for m in measurements}
    found: dict[str, float | None] = {}
    for connections in CONNECTIONS:
        info, warning = rps.get(("remoteit-info", connections)), rps.get(("remoteit", connections))
        found[str(connections)] = info / warning if info is not None and warning else None
    return found
