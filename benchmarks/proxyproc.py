"""What the benchmark scripts share: a throwaway credentials file, the proxy process, its RSS."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import sys
from pathlib import Path


def rss_kib(pid: int) -> int:
    """Resident memory of a process, from /proc (Linux)."""
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1))  # type: ignore[union-attr]


def write_credentials(folder: Path) -> Path:
    """A credentials file with a random key, private to this user."""
    path = folder / "credentials"
    secret = base64.b64encode(os.urandom(32)).decode()
    path.write_text(f"[DEFAULT]\nR3_ACCESS_KEY_ID=BENCHKEY\nR3_SECRET_ACCESS_KEY={secret}\n")
    path.chmod(0o600)
    return path


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


async def start_proxy(
    upstream: str, credentials: Path
) -> tuple[asyncio.subprocess.Process, str, asyncio.Task[None]]:
    """Start ``python -m proxy`` on a free port; return it, its URL, and the task that keeps
    reading its log (a full pipe would stall it)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "--listen", "127.0.0.1:0", "--upstream", upstream,
        "--credentials", str(credentials), stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    while line := (await proc.stderr.readline()).decode():
        if match := re.search(r"listening on (http://\S+?),", line):
            return proc, match.group(1), asyncio.create_task(_drain(proc.stderr))
    raise SystemExit("the proxy did not start")
