"""Shared and per-request state: the proxy's settings, clients, pool and clock; an exchange."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..client import Pool
from ..config.settings import Settings
from ..config.upstreams import route
from ..ops.clock import ClockSkew
from ..ops.metrics import Metrics
from .clients import Clients
from .flights import Coalescer
from .throttle import Throttle

if TYPE_CHECKING:
    from ..keys.credentials import Credentials
    from ..policy.graphql import Operation
    from .clients import Client


@dataclass
class ProxyState:
    """What the handler needs: settings, the clients and their keys, the upstream pool, a clock."""

    settings: Settings
    clients: Clients
    skew: ClockSkew
    metrics: Metrics
    pool: Pool | None = field(default=None, repr=False)
    token: bytes | None = field(default=None, repr=False)
    draining: bool = False
    drain_deadline: float | None = None  # the loop's time when open WebSockets get a 1001
    # Open WebSockets, so that shutdown can end them (each has a going_away method).
    tunnels: set[Any] = field(default_factory=set, repr=False)
    skew_sampled: float = 0.0  # when the clock offset was last sampled
    # The /-/metrics text, when not this process's alone (--workers: every worker's added up).
    scrape: Callable[[], bytes] | None = field(default=None, repr=False)
    # Start the graceful shutdown (POST /-/quitquitquit), saying why: set by serve.
    quit: Callable[[str], None] | None = field(default=None, repr=False)
    throttle: Throttle = field(init=False, repr=False)  # the local limits
    coalescer: Coalescer = field(default_factory=Coalescer, repr=False)  # queries in flight

    # Named upstreams: (mount, their settings, their pool), the longest mount first.
    mounts: tuple[tuple[str, Settings, Pool], ...] = field(default=(), repr=False)

    def named(self, raw_path: str) -> bool:
        """Whether the path is under a named upstream's mount."""
        return any(route(raw_path, mount) is not None for mount, _, _ in self.mounts)

    def route(self, raw_path: str) -> tuple[Settings, Pool, str]:
        """Where a request goes: the settings and pool of its upstream, and its path and query
        as that upstream gets them (below a named upstream's mount, the rest)."""
        for mount, settings, pool in self.mounts:
            rest = route(raw_path, mount)
            if rest is not None:
                return settings, pool, rest
        assert self.pool is not None, "the connection pool is created at start-up"
        return self.settings, self.pool, raw_path

    def __post_init__(self) -> None:
        if self.settings.token is not None:
            self.token = self.settings.token.encode()
        self.throttle = Throttle(self.settings, self.clients, self.metrics)


@dataclass(slots=True)
class Exchange:
    """What one request's forwarding reports back for the access line and metrics."""

    request_id: str
    upstream_seconds: float | None = None
    bytes_out: int = 0
    bytes_in: int | None = None  # when not the request body's (a WebSocket's, both ways)
    signed_corrected: bool = False
    aborted: int | None = None  # the status to log when the answer broke off mid-body
    client: Client | None = None  # who asked (picked by the token)
    signed_with: Credentials | None = None  # the key the upstream request was signed with
    body: bytes | None = None  # the body, when the policy had to read it whole
    operations: tuple[Operation, ...] | None = None  # GraphQL operations, when the policy looked
    rule: str | None = None  # the policy rule that refused the request
    attempts: int = 1  # times sent upstream: more than one when retried
    coalesced: str | None = None  # the request id whose answer it shared (--coalesce-queries)

    @property
    def client_label(self) -> str:
        return self.client.label if self.client is not None else "-"
