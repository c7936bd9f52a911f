"""The cost of each per-request check added for throttling, limits and coalescing, one by one.

Each check runs against a realistic request (a small GraphQL POST, as scripts send) many
times over; the figure is the median of several timings, in nanoseconds a call. These are the
steps a request pays for with the default settings (retries on, everything else off) and with
each option on. End to end, ``benchmarks/ab.py`` measures the whole proxy.

    python benchmarks/checks.py [--number 200000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import tempfile
import time
import timeit
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path
from typing import Any

from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from proxy.config.resolve import resolve
from proxy.ops.clock import ClockSkew
from proxy.ops.metrics import Metrics
from proxy.serve import attempts, coalesce
from proxy.serve.admit import admit
from proxy.serve.clients import Clients, load_profiles
from proxy.serve.outgoing import Outgoing
from proxy.serve.replay import keep_whole
from proxy.serve.state import Exchange, ProxyState

QUERY = b'{"query":"{ login { email } }"}'


def state_for(folder: Path, **options: str) -> ProxyState:
    credentials = folder / "credentials"
    secret = base64.b64encode(b"s" * 32).decode()
    credentials.write_text(
        f"[DEFAULT]\nR3_ACCESS_KEY_ID=BENCHKEY0000000000AB\nR3_SECRET_ACCESS_KEY={secret}\n"
    )
    credentials.chmod(0o600)
    given = {"credentials": str(credentials), **options}
    settings = resolve(given, {})
    clients = Clients(settings, load_profiles(settings, {}), {})
    skew = ClockSkew(settings.clock_skew_threshold)
    metrics = Metrics(lambda: {}, lambda: 0)
    return ProxyState(settings, clients, skew, metrics)


class FakeAnswer:
    """What ``landed`` reads of an answer: its head."""

    def __init__(self) -> None:
        headers = CIMultiDict({"Date": formatdate(time.time(), usegmt=True)})
        self.head = type("Head", (), {"status": 200, "headers": headers})()


def timed(call: Callable[[], Any], number: int, repeat: int) -> float:
    return statistics.median(timeit.repeat(call, number=number, repeat=repeat)) / number * 1e9


async def main_async(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="checks-"))
    default = state_for(folder)
    limited = state_for(folder, **{"rate-limit": "1000000/s", "max-upstream-concurrency": "100"})
    coalescing = state_for(folder, **{"coalesce-queries": "true"})
    headers = CIMultiDict({"Content-Type": "application/json", "Content-Length": str(len(QUERY))})
    request = make_mocked_request("POST", "/graphql/v1", headers=headers)
    exchange = Exchange("0123456789abcdef")
    exchange.client = default.clients.default
    out = Outgoing("/graphql/v1", [b"X-Request-Id: 0123456789abcdef"], QUERY, len(QUERY), None,
                   "application/json")  # fmt: skip
    attempt = attempts.begin(default, exchange, default.settings, out, "POST", False)
    answer: Any = FakeAnswer()
    client = limited.clients.default
    assert client is not None
    throttle = limited.throttle

    async def place() -> None:
        await throttle.enter(client)
        throttle.leave()

    loop = asyncio.get_running_loop()
    rows = [
        ("admit, the whole step (shutting down? is its new first line)",
         lambda: admit(request, default)),
        ("read whole for a retry? (keep_whole)", lambda: keep_whole(request, default, False)),
        ("the upstream request kept to sign again (Outgoing)",
         lambda: Outgoing("/graphql/v1", [], QUERY, len(QUERY), None, "application/json")),
        ("sign an attempt (begin: the signature, which was always made, included)",
         lambda: attempts.begin(default, exchange, default.settings, out, "POST", False)),
        ("note the answer (landed; the clock is sampled once a second, not here)",
         lambda: attempts.landed(default, exchange, attempt, answer)),
        ("--rate-limit: the client's token bucket", lambda: throttle.over_rate(client)),
        ("--coalesce-queries: the request's key",
         lambda: coalesce.key_of(request, coalescing, exchange, coalescing.settings, out)),
    ]  # fmt: skip
    for name, call in rows:
        print(f"{timed(call, args.number, args.repeat):8.0f} ns  {name}")
    runs = []
    for _ in range(args.repeat):
        started = loop.time()
        for _ in range(args.number // 10):
            await place()
        runs.append((loop.time() - started) / (args.number // 10) * 1e9)
    print(
        f"{statistics.median(runs):8.0f} ns  --max-upstream-concurrency: take a place, give it back"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=7)
    asyncio.run(main_async(parser.parse_args()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
