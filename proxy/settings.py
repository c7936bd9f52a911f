"""Settings: the option table; command line > environment > config file > defaults."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from .addresses import Listen, Upstream, parse_listen, parse_upstream
from .configfile import ClientConfig, parse_clients, read_config, read_token_file
from .credentials import DEFAULT_PROFILE, default_credentials_path
from .errors import ConfigError
from .signing import DEFAULT_SIGNED_HEADERS
from .upstreams import NamedUpstream, parse_upstreams
from .values import (
    parse_bool,
    parse_graphql_paths,
    parse_log_format,
    parse_log_level,
    parse_mode,
    parse_path,
    parse_scheme,
    parse_seconds,
    parse_seconds_or_off,
    parse_sign_headers,
    parse_size,
    parse_text,
    parse_token,
    parse_workers,
)

__all__ = ["OPTIONS", "Option", "Settings", "parse_listen", "parse_upstream", "resolve"]

ENV_PREFIX = "REMOTEIT_PROXY_"


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
_KNOWN = frozenset(option.key for option in OPTIONS)


def read_config_file(path: Path) -> dict[str, str]:
    """The ``[proxy]`` section of a config file; unknown keys are errors, not ignored."""
    return read_config(path, _KNOWN).values


def _check_exposure(values: Mapping[str, Any], clients: tuple[ClientConfig, ...]) -> None:
    listen: Listen = values["listen"]
    if listen.is_loopback or values["token"] is not None or values["allow_unauthenticated"]:
        return
    if clients:  # every request must carry one client's token
        return
    raise ConfigError(
        f"refusing to listen on {listen} without a token: anyone who can reach that address "
        "could use your Remote.It account through this proxy. Set a token that clients must "
        "send (--token, REMOTEIT_PROXY_TOKEN or --token-file), or, on a network you trust, "
        "pass --allow-unauthenticated"
    )


def resolve(
    cli: Mapping[str, str],
    environ: Mapping[str, str],
    serving: bool = True,
    used: Collection[str] | None = None,
) -> Settings:
    """Resolve every option: command line > environment > config file > defaults.

    ``cli`` maps option names (``log-level``) to the strings given on the command line.
    ``serving`` False skips what only serving needs: the token, the client sections and the
    listener's exposure check. ``used`` names the options a command reads (None: all); the
    others keep their defaults, so that a value meant for ``serve`` cannot stop ``check``.
    """
    config_path: Path | None = None
    if "config" in cli:
        config_path = Path(cli["config"]).expanduser()
    elif environ.get(CONFIG_OPTION.env):
        config_path = Path(environ[CONFIG_OPTION.env]).expanduser()
    config = read_config(config_path, _KNOWN) if config_path is not None else None
    from_file = config.values if config is not None else {}

    values: dict[str, Any] = {}
    for option in OPTIONS:
        if used is not None and option.name not in used:
            default = option.default
            values[option.key] = None if default is None else option.parse(default, "default")
            continue
        if option.name in cli:
            raw, origin = cli[option.name], option.flag
        elif environ.get(option.env):
            raw, origin = environ[option.env], option.env
        elif option.key in from_file:
            raw, origin = from_file[option.key], f"config file {config_path} [proxy] {option.key}"
        elif option.default is not None:
            raw, origin = option.default, f"default {option.flag}"
        else:
            values[option.key] = None
            continue
        values[option.key] = option.parse(raw.strip(), origin)
    if values["credentials"] is None:
        values["credentials"] = default_credentials_path()
    if values["token_file"] is not None and serving:  # the other commands take no token
        if values["token"] is not None:
            raise ConfigError("--token and --token-file are both set; use only one of them")
        values["token"] = read_token_file(values["token_file"], "--token-file")
    if values["sign_content_digest"] and values["scheme"] != "rfc9421":
        raise ConfigError("--sign-content-digest needs --scheme rfc9421 (cavage signs no digest)")
    clients: tuple[ClientConfig, ...] = ()
    if config is not None and config_path is not None and serving:  # the clients' tokens too
        clients = parse_clients(config, config_path, environ, values["profile"], values["token"])
    if serving:
        _check_exposure(values, clients)
    upstreams: tuple[NamedUpstream, ...] = ()
    if config is not None and config_path is not None:
        upstreams = parse_upstreams(config_path, config.upstreams)
    return Settings(config=config_path, clients=clients, upstreams=upstreams, **values)
