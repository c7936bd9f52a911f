"""Settings: everything the proxy needs to run, resolved and validated, as one frozen value."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from ..policy.bucket import Rate
from ..signing import DEFAULT_SIGNED_HEADERS
from .addresses import Listen, Upstream
from .file import ClientConfig
from .upstreams import NamedUpstream


@dataclass(frozen=True)
class Settings:
    """Everything the proxy needs to run, resolved and validated."""

    listen: Listen
    upstream: Upstream
    credentials: Path
    profile: str
    log_level: str
    connect_timeout: float
    read_timeout: float
    header_timeout: float = 10.0
    client_timeout: float = 60.0
    max_connections: int | None = None  # None: from the descriptor limit at start
    retries: int = 2
    retry_budget: float = 20.0
    rate_limit: Rate | None = None  # the single client's (--rate-limit), its burst applied
    burst: int | None = None
    max_upstream_concurrency: int | None = None
    queue_timeout: float = 10.0
    coalesce_queries: bool = False
    admin_endpoints: bool = False
    token: str | None = field(default=None, repr=False)
    token_file: Path | None = None
    allow_unauthenticated: bool = False
    socket_mode: int = 0o600
    ca_bundle: Path | None = None
    insecure_skip_verify: bool = False
    shutdown_timeout: float = 10.0
    websocket_idle_timeout: float | None = None
    log_format: str = "text"
    clock_skew_threshold: float = 5.0
    no_clock_correction: bool = False
    scheme: str = "cavage"
    sign_headers: tuple[str, ...] = DEFAULT_SIGNED_HEADERS
    sign_content_digest: bool = False
    max_buffered_body: int = 10 * 1024 * 1024
    workers: int = 1
    read_only: bool = False
    graphql_paths: tuple[str, ...] = ("/graphql/v1", "/graphql/beta")
    config: Path | None = None
    clients: tuple[ClientConfig, ...] = ()
    upstreams: tuple[NamedUpstream, ...] = ()  # the [upstream.NAME] sections

    @cached_property  # read several times per request: decided once
    def signs_length(self) -> bool:
        """True when the exact body length is signed (draft-cavage ``content-length``)."""
        return self.scheme == "cavage" and "content-length" in self.sign_headers


def settings_for(settings: Settings, named: NamedUpstream) -> Settings:
    """The proxy's settings as a request to ``named`` uses them: its origin, scheme and TLS."""
    scheme = named.scheme or settings.scheme
    return dataclasses.replace(
        settings,
        upstream=named.upstream,
        scheme=scheme,
        sign_content_digest=settings.sign_content_digest and scheme == "rfc9421",
        ca_bundle=named.ca_bundle or settings.ca_bundle,
        insecure_skip_verify=named.insecure_skip_verify,
    )
