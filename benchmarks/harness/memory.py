"""remoteit-proxy's resident memory, from the concurrency.py and stream_memory.py helpers."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from .common import HERE, ROOT, BenchError, say
from .context import Context


def run_helper(ctx: Context, script: str, args: Sequence[str], timeout: float) -> str:
    """Run one of the other benchmarks/ scripts in its own process group; its stdout."""
    argv = [sys.executable, str(HERE / script), *args]
    say("running: " + " ".join(argv[1:]))
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ctx.env,
        cwd=ROOT,
        start_new_session=True,  # so that its proxy and upstream can be stopped with it
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=5)
                break
        raise
    if not out.strip():
        raise BenchError(f"{script} printed nothing (status {proc.returncode}): {err[-2000:]}")
    return out


def _number(pattern: str, text: str, script: str) -> re.Match[str]:
    match = re.search(pattern, text)
    if match is None:
        raise BenchError(f"unexpected output from {script}:\n{text}")
    return match


def measure_memory(ctx: Context, stream_mib: int) -> dict[str, Any]:
    """remoteit-proxy's RSS idle, under 1,000 connections and streaming, via the helpers."""
    out = run_helper(ctx, "concurrency.py", ["--connections", "1000"], timeout=300)
    ok = _number(r"succeeded: (\d+)/(\d+), wall time ([\d.]+) s", out, "concurrency.py")
    rss = _number(r"proxy RSS: idle ([\d.]+) MiB, peak ([\d.]+) MiB", out, "concurrency.py")
    memory: dict[str, Any] = {
        "idle_mib": float(rss.group(1)),
        "connections": int(ok.group(2)),
        "connections_ok": int(ok.group(1)),
        "connections_wall_s": float(ok.group(3)),
        "connections_peak_mib": float(rss.group(2)),
    }
    out = run_helper(ctx, "stream_memory.py", ["--size-mib", str(stream_mib)], timeout=1800)
    idle = _number(r"proxy RSS idle: ([\d.]+) MiB", out, "stream_memory.py")
    memory["stream_mib"] = stream_mib
    memory["stream_idle_mib"] = float(idle.group(1))
    for way in ("upload", "download"):
        match = _number(
            rf"{way}\s*: peak RSS ([\d.]+) MiB \(\+(-?[\d.]+) MiB over idle\), (\d+) MiB/s",
            out,
            "stream_memory.py",
        )
        memory[f"{way}_peak_mib"] = float(match.group(1))
        memory[f"{way}_mib_per_s"] = int(match.group(3))
    return memory
