"""What every module shares: the benchmark's folders, the request it sends, errors, progress."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent  # benchmarks/
ROOT = HERE.parent
TLS_NAME = "localhost"  # the https upstream's name, as proxies reach and verify it

PATH = "/graphql/v1"
BODY = '{"query":"{ login { email } }"}'
KEY_ID = "BENCHKEY0123456789ABCDEF"
CONNECTIONS = (1, 50)


class BenchError(Exception):
    """A step of the benchmark failed; the message says which and why."""


def say(message: str) -> None:
    """Progress goes to stderr, so that stdout holds only the report."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)
