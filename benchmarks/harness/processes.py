"""The processes the benchmark starts: children, RSS, ports, and one request to a server."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from .common import BODY, PATH, BenchError
from .tls import Tls


def children(pid: int) -> list[int]:
    """The direct children of a process (Linux /proc)."""
    found: list[int] = []
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found += [int(child) for child in path.read_text().split()]
    return found


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children (nginx: master and worker), in MiB."""
    total = 0
    for each in [pid, *children(pid)]:
        with contextlib.suppress(OSError, AttributeError):
            status = Path(f"/proc/{each}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
    return total / 1024


class Processes:
    """Every long-running process the benchmark starts, so that all are stopped at the end."""

    def __init__(self, taskset: str | None) -> None:
        self.taskset = taskset
        self.running: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        argv: Sequence[str],
        *,
        log: Path,
        env: Mapping[str, str],
        cpu: int | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` (pinned to ``cpu`` when given), its output appended to ``log``."""
        command = list(argv)
        if cpu is not None and self.taskset is not None:
            command = [self.taskset, "-c", str(cpu), *command]  # taskset execs: same pid
        with log.open("ab") as output:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=cwd,
            )
        self.running.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
        """SIGTERM (nginx: fast shutdown; remoteit-proxy: graceful), then SIGKILL if need be."""
        if proc in self.running:
            self.running.remove(proc)
        if proc.poll() is not None:
            return
        orphans = children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            for child in orphans:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
            proc.kill()
            proc.wait()

    def stop_all(self) -> None:
        for proc in reversed(list(self.running)):
            self.stop(proc)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        text = path.read_text(errors="replace").strip().splitlines()[-lines:]
        return "\n  ".join(["", *text]) if text else ""
    return ""


def wait_for_port(
    port: int, proc: subprocess.Popen[bytes], what: str, log: Path, timeout: float = 20.0
) -> None:
    """Wait until ``port`` accepts connections; fail early if the process exits."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with status {proc.returncode}:{tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        if time.monotonic() > deadline:
            raise BenchError(f"{what} does not accept connections on port {port}:{tail(log)}")
        time.sleep(0.01)


def post_status(port: int, tls: Tls | None = None) -> int | None:
    """Send one GraphQL POST to 127.0.0.1:port (over https, verified, with ``tls``); its status,
    or None if nothing answered."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    if tls is not None:
        context = ssl.create_default_context(cafile=str(tls.ca))
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=context)
    try:
        conn.request("POST", PATH, body=BODY, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()
