"""CPU time: what other programs use during a run, idle CPUs before it, and pinning."""

from __future__ import annotations

import contextlib
import os
import resource
import time
from pathlib import Path

from .common import say
from .processes import Processes, children

QUIET = 0.10  # all CPUs less busy than this before starting
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> float:
    """CPU seconds spent in user and system mode by every process on the machine since boot."""
    user, nice, system = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:4]
    return (int(user) + int(nice) + int(system)) / CLOCK_TICKS


def own_cpu_seconds(procs: Processes) -> float:
    """CPU seconds used by this script, its waited-for children (wrk) and its running servers."""
    used = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        used += usage.ru_utime + usage.ru_stime
    for proc in procs.running:
        for pid in [proc.pid, *children(proc.pid)]:
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                used += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
    return used


def cpu_busy(seconds: float = 1.0) -> float:
    """The fraction of all CPUs busy over the next ``seconds`` (Linux /proc/stat)."""

    def sample() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        return values[3] + values[4], sum(values)  # idle + iowait, all

    idle, total = sample()
    time.sleep(seconds)
    idle2, total2 = sample()
    return 1 - (idle2 - idle) / max(total2 - total, 1)


def wait_until_quiet(limit: float) -> float:
    """Wait up to ``limit`` seconds for the CPUs to be idle; the last busy fraction seen."""
    deadline = time.monotonic() + limit
    while (busy := cpu_busy()) >= QUIET and time.monotonic() < deadline:
        say(f"the CPUs are {busy:.0%} busy with other work; waiting for them to be quiet")
    if busy >= QUIET:
        say(f"WARNING: the CPUs are {busy:.0%} busy with other work: figures will be off")
    return busy


def pick_cpus(taskset: str | None) -> tuple[int | None, int | None]:
    """CPU for the proxies, CPU for wrk and the upstream: the first two this process may use."""
    allowed = sorted(os.sched_getaffinity(0))
    if taskset is None or len(allowed) < 2:
        say("WARNING: fewer than 2 CPUs or no taskset: nothing is pinned; figures will be noisy")
        return None, None
    return allowed[0], allowed[1]
