"""The rows of the comparison: the upstream, then every proxy in front of it, started."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from .common import PATH, BenchError
from .context import Context
from .launches import Launch, floor_launch, nginx_launch, proxy_launch, start
from .processes import free_port, post_status, tail


@dataclass(frozen=True)
class Setup:
    """One row of the comparison: a name, a label and the server wrk talks to."""

    key: str
    label: str
    port: int
    proc: subprocess.Popen[bytes]
    upstream: str = "http"  # how the setup reaches the upstream: its table
    baseline: bool = False  # the upstream direct: what the others' added latency is over
    scheme: str = "http"  # how wrk talks to it

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{PATH}"


def start_setups(ctx: Context) -> list[Setup]:
    """Start the upstream (a), then the proxies (b) to (f) in front of it (remoteit-proxy twice:
    at --log-level warning and at the default INFO); with certificates, also (c) and (d) in
    front of its https port, measured against it direct."""
    upstream = free_port()
    tls_upstream = None if ctx.tls is None else free_port()
    launch = nginx_launch(ctx, "upstream", "upstream.conf", upstream, upstream, tls_upstream)
    proc = start(ctx, launch, upstream, ctx.load_cpu)
    setups = [Setup("direct", "upstream direct", upstream, proc, baseline=True)]
    plans: list[tuple[str, str, Callable[[int], Launch]]] = [
        ("nginx", "nginx proxy", lambda p: nginx_launch(ctx, "proxy", "proxy.conf", p, upstream))
    ]
    if ctx.tools.njs_module is not None:
        plans.append(
            ("njs", "nginx + njs", lambda p: nginx_launch(ctx, "njs", "njs.conf", p, upstream))
        )
    plans.append(
        ("remoteit", "remoteit-proxy", lambda p: proxy_launch(ctx, "remoteit", p, upstream))
    )
    # What README users run: no --log-level, so INFO and an access line per request.
    plans.append(
        (
            "remoteit-info",
            "remoteit at INFO",
            lambda p: proxy_launch(ctx, "remoteit-info", p, upstream, log_level=None),
        )
    )
    # The cost of a policy: each GraphQL body read whole and parsed with graphql-core.
    plans.append(
        (
            "remoteit-ro",
            "remoteit --read-only",
            lambda p: proxy_launch(ctx, "remoteit-ro", p, upstream, "--read-only"),
        )
    )
    # The framework's own cost: the same server and client, no signing, no checks.
    plans.append(("floor", "aiohttp floor", lambda p: floor_launch(ctx, p, upstream)))
    for key, label, make in plans:
        setups.append(start_proxy(ctx, key, label, make))
    if tls_upstream is not None:
        setups += start_https_setups(ctx, proc, tls_upstream)
    return setups


def start_proxy(
    ctx: Context, key: str, label: str, make: Callable[[int], Launch], upstream: str = "http"
) -> Setup:
    """Start one proxy on a free port and check that it answers a GraphQL POST with 200."""
    port = free_port()
    launch = make(port)
    setup = Setup(key, label, port, start(ctx, launch, port, ctx.proxy_cpu), upstream)
    status = post_status(port)
    if status != 200:
        raise BenchError(f"{label} answered {status} instead of 200:{tail(launch.log)}")
    return setup


def start_https_setups(ctx: Context, proc: subprocess.Popen[bytes], port: int) -> list[Setup]:
    """The upstream's https ``port`` direct (wrk speaking TLS to it), then nginx + njs and
    remoteit-proxy proxying to it, each verifying its certificate."""
    assert ctx.tls is not None
    status = post_status(port, ctx.tls)
    if status != 200:
        raise BenchError(f"the upstream's https port answered {status} instead of 200")
    label = "upstream direct (https)"
    setups = [Setup("direct-https", label, port, proc, "https", baseline=True, scheme="https")]
    plans: list[tuple[str, str, Callable[[int], Launch]]] = []
    if ctx.tools.njs_module is not None:
        plans.append(
            (
                "njs-https",
                "nginx + njs (https)",
                lambda p: nginx_launch(ctx, "njs-https", "njs_https.conf", p, port),
            )
        )
    plans.append(
        (
            "remoteit-https",
            "remoteit-proxy (https)",
            lambda p: proxy_launch(ctx, "remoteit-https", p, port, https=True),
        )
    )
    return [*setups, *(start_proxy(ctx, *plan, upstream="https") for plan in plans)]
