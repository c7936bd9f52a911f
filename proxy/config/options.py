"""The option table: every setting's long option, environment variable, config key and default."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..keys.credentials import DEFAULT_PROFILE
from ..signing import DEFAULT_SIGNED_HEADERS
from .addresses import parse_listen, parse_upstream
from .values import (
    parse_bool,
    parse_count_or_auto,
    parse_count_or_off,
    parse_graphql_paths,
    parse_log_format,
    parse_log_level,
    parse_mode,
    parse_path,
    parse_rate,
    parse_retries,
    parse_scheme,
    parse_seconds,
    parse_seconds_or_off,
    parse_sign_headers,
    parse_size,
    parse_text,
    parse_token,
    parse_workers,
)

ENV_PREFIX = "REMOTEIT_PROXY_"


@dataclass(frozen=True)
class Option:
    """One setting: its long option, environment variable and config key derive from ``name``."""

    name: str
    default: str | None
    help: str
    parse: Callable[[str, str], Any] = field(repr=False)
    metavar: str = "VALUE"
    is_flag: bool = False

    @property
    def flag(self) -> str:
        return f"--{self.name}"

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper().replace("-", "_")

    @property
    def key(self) -> str:
        return self.name.replace("-", "_")


OPTIONS: tuple[Option, ...] = (
    Option("listen", "127.0.0.1:8181", "HOST:PORT, [IPv6]:PORT or unix:PATH", parse_listen, "ADDR"),
    Option(
        "upstream", "https://api.remote.it", "API origin and path prefix", parse_upstream, "URL"
    ),
    Option("credentials", None, "credentials file (~/.remoteit/credentials)", parse_path, "PATH"),
    Option("profile", DEFAULT_PROFILE, "profile of the credentials file", parse_text, "NAME"),
    Option("log-level", "info", "debug, info, warning or error", parse_log_level, "LEVEL"),
    Option("connect-timeout", "10", "seconds to connect to the upstream", parse_seconds, "S"),
    Option("read-timeout", "60", "seconds to wait for each upstream read", parse_seconds, "S"),
    Option(
        "header-timeout", "10", "seconds a client has to send a request head", parse_seconds, "S"
    ),
    Option(
        "client-timeout",
        "60",
        "close a client connection this long without progress",
        parse_seconds,
        "S",
    ),
    Option(
        "max-connections",
        "auto",
        "client connections open at once (auto: from the descriptor limit)",
        parse_count_or_auto,
        "N",
    ),
    Option(
        "retries",
        "2",
        "times a safe request is sent again after 429, 503 or a failed connection (0: off)",
        parse_retries,
        "N",
    ),
    Option(
        "retry-budget", "20", "seconds a request may spend waiting to retry", parse_seconds, "S"
    ),
    Option("rate-limit", "off", "requests a client may send (10/s, 600/min)", parse_rate, "RATE"),
    Option(
        "burst",
        "auto",
        "requests at once after a pause (auto: 1 s of the rate)",
        parse_count_or_auto,
        "N",
    ),
    Option(
        "max-upstream-concurrency",
        "off",
        "requests at the upstream at once; more wait (off: no cap)",
        parse_count_or_off,
        "N",
    ),
    Option(
        "queue-timeout", "10", "seconds a request waits for the concurrency cap", parse_seconds, "S"
    ),
    Option(
        "coalesce-queries",
        "false",
        "identical GraphQL queries in flight share one upstream answer",
        parse_bool,
        is_flag=True,
    ),
    Option(
        "admin-endpoints",
        "false",
        "answer POST /-/quitquitquit (shut down; with the token when one is set)",
        parse_bool,
        is_flag=True,
    ),
    Option("token", None, "clients must send Authorization: Bearer TOKEN", parse_token, "TOKEN"),
    Option("token-file", None, "read the token from this file", parse_path, "PATH"),
    Option(
        "allow-unauthenticated",
        "false",
        "allow a non-loopback address without a token",
        parse_bool,
        is_flag=True,
    ),
    Option("socket-mode", "0600", "file mode of a unix socket", parse_mode, "MODE"),
    Option("ca-bundle", None, "extra CA certificates to trust (PEM)", parse_path, "PATH"),
    Option(
        "insecure-skip-verify",
        "false",
        "do not verify the upstream's TLS certificate",
        parse_bool,
        is_flag=True,
    ),
    Option("shutdown-timeout", "10", "seconds in-flight requests get at exit", parse_seconds, "S"),
    Option(
        "websocket-idle-timeout",
        "off",
        "close a WebSocket quiet both ways this long",
        parse_seconds_or_off,
        "S",
    ),
    Option("log-format", "text", "text or json (one object per line)", parse_log_format, "FMT"),
    Option(
        "clock-skew-threshold",
        "5",
        "correct the signing time past this offset",
        parse_seconds,
        "S",
    ),
    Option(
        "no-clock-correction",
        "false",
        "never correct the signing time for clock skew",
        parse_bool,
        is_flag=True,
    ),
    Option("scheme", "cavage", "cavage or rfc9421 (HTTP Message Signatures)", parse_scheme, "S"),
    Option(
        "sign-headers",
        " ".join(DEFAULT_SIGNED_HEADERS),
        "headers signed with --scheme cavage",
        parse_sign_headers,
        "LIST",
    ),
    Option(
        "sign-content-digest",
        "false",
        "with rfc9421, add and sign Content-Digest",
        parse_bool,
        is_flag=True,
    ),
    Option("max-buffered-body", "10MiB", "largest body buffered to sign it", parse_size, "SIZE"),
    Option("workers", "1", "processes sharing the port (SO_REUSEPORT)", parse_workers, "N"),
    Option(
        "read-only",
        "false",
        "forward GraphQL queries and GET, HEAD, OPTIONS only",
        parse_bool,
        is_flag=True,
    ),
    Option(
        "graphql-paths",
        "/graphql/v1 /graphql/beta",
        "paths whose requests are GraphQL (for the policy)",
        parse_graphql_paths,
        "LIST",
    ),
)
CONFIG_OPTION = Option(
    "config", None, "INI file with a [proxy] section and [client.NAME] sections", parse_path, "FILE"
)
