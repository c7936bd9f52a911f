"""What every step of the benchmark needs, in one object."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .processes import Processes
from .tls import Tls
from .tools import Tools


@dataclass
class Context:
    """What every step needs: tools, processes, CPUs, the temporary directory and the key."""

    tools: Tools
    procs: Processes
    workdir: Path
    proxy_cpu: int | None
    load_cpu: int | None
    credentials: Path
    secret_b64: str
    env: dict[str, str]  # for children: no R3_*, REMOTEIT_PROXY_* or *_PROXY variables
    tls: Tls | None = None  # the https upstream's certificates; None: no https rows
