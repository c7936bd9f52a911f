"""Settings: the option table; command line > environment > config file > defaults."""

from __future__ import annotations

import configparser
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from .addresses import Listen, Upstream, parse_listen, parse_upstream
from .credentials import DEFAULT_PROFILE, default_credentials_path
from .errors import ConfigError
from .signing import DEFAULT_SIGNED_HEADERS
from .values import (
    parse_bool,
    parse_log_format,
    parse_log_level,
    parse_mode,
    parse_path,
    parse_scheme,
    parse_seconds,
    parse_sign_headers,
    parse_size,
    parse_text,
    parse_token,
    parse_workers,
)

__all__ = ["OPTIONS", "Option", "Settings", "parse_listen", "parse_upstream", "resolve"]

ENV_PREFIX = "REMOTEIT_PROXY_"
CONFIG_SECTION = "proxy"


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
    log_format: str = "text"
    clock_skew_threshold: float = 5.0
    no_clock_correction: bool = False
    scheme: str = "cavage"
    sign_headers: tuple[str, ...] = DEFAULT_SIGNED_HEADERS
    sign_content_digest: bool = False
    max_buffered_body: int = 10 * 1024 * 1024
    workers: int = 1
    config: Path | None = None

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
)
CONFIG_OPTION = Option("config", None, "INI file with a [proxy] section", parse_path, "FILE")


def read_config_file(path: Path) -> dict[str, str]:
    """Read the ``[proxy]`` section of a config file; unknown keys are errors, not ignored."""
    parser = configparser.RawConfigParser(interpolation=None, default_section="\x00")
    try:
        with path.open(encoding="utf-8-sig") as file:
            parser.read_file(file, source=str(path))
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} does not exist; check --config or REMOTEIT_PROXY_CONFIG"
        ) from None
    except configparser.Error as exc:
        raise ConfigError(f"config file {path}: {_ini_problem(exc)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise ConfigError(f"config file {path} cannot be read ({reason})") from None
    if any("\x00" in name for name in parser.sections()):
        raise ConfigError(f"config file {path} has a NUL character; it is not a text file")
    if not parser.has_section(CONFIG_SECTION):
        raise ConfigError(
            f"config file {path} has no [{CONFIG_SECTION}] section; put the settings under a "
            f"[{CONFIG_SECTION}] line (see config.example.ini)"
        )
    values = dict(parser.items(CONFIG_SECTION))
    known = {option.key for option in OPTIONS}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown setting {', '.join(unknown)} in [{CONFIG_SECTION}]; "
            f"known settings: {', '.join(sorted(known))}"
        )
    return values


def _ini_problem(exc: configparser.Error) -> str:
    """What is wrong with an INI file, in words (never the line itself, nor a class name)."""
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return (
            f"line {exc.lineno} comes before any section header; put the settings under a "
            f"[{CONFIG_SECTION}] line at the top"
        )
    if isinstance(exc, configparser.DuplicateSectionError):
        return f"section [{exc.section}] appears twice (line {exc.lineno}); keep only one"
    if isinstance(exc, configparser.DuplicateOptionError):
        return (
            f"setting {exc.option} appears twice in [{exc.section}] (line {exc.lineno}); "
            "keep only one"
        )
    if isinstance(exc, configparser.ParsingError):
        lines = ", ".join(str(lineno) for lineno, _ in exc.errors[:5])
        return f"line {lines} is neither 'key = value' nor '[section]'; fix or remove it"
    return "it cannot be read as an INI file; check its syntax"


def _read_token_file(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"--token-file: cannot read {path} ({reason})") from None
    if not token:
        raise ConfigError(f"--token-file: {path} is empty; write the token into it")
    return parse_token(token, f"--token-file {path}")


def _check_exposure(values: Mapping[str, Any]) -> None:
    listen: Listen = values["listen"]
    if listen.is_loopback or values["token"] is not None or values["allow_unauthenticated"]:
        return
    raise ConfigError(
        f"refusing to listen on {listen} without a token: anyone who can reach that address "
        "could use your Remote.It account through this proxy. Set a token that clients must "
        "send (--token, REMOTEIT_PROXY_TOKEN or --token-file), or, on a network you trust, "
        "pass --allow-unauthenticated"
    )


def resolve(cli: Mapping[str, str], environ: Mapping[str, str], serving: bool = True) -> Settings:
    """Resolve every option: command line > environment > config file > defaults.

    ``cli`` maps option names (``log-level``) to the strings given on the command line.
    ``serving`` False skips the listener's exposure check (``check`` and ``sign`` listen nowhere).
    """
    config_path: Path | None = None
    if "config" in cli:
        config_path = Path(cli["config"]).expanduser()
    elif environ.get(CONFIG_OPTION.env):
        config_path = Path(environ[CONFIG_OPTION.env]).expanduser()
    from_file = read_config_file(config_path) if config_path is not None else {}

    values: dict[str, Any] = {}
    for option in OPTIONS:
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
        values["token"] = _read_token_file(values["token_file"])
    if values["sign_content_digest"] and values["scheme"] != "rfc9421":
        raise ConfigError("--sign-content-digest needs --scheme rfc9421 (cavage signs no digest)")
    if serving:
        _check_exposure(values)
    return Settings(config=config_path, **values)
