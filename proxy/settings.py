"""Settings: the option table; command line > environment > config file > defaults."""

from __future__ import annotations

import configparser
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .credentials import DEFAULT_PROFILE, default_credentials_path
from .errors import ConfigError

ENV_PREFIX = "REMOTEIT_PROXY_"
CONFIG_SECTION = "proxy"
DEFAULT_PORTS = {"http": 80, "https": 443}
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class Listen:
    """A TCP address to listen on."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Upstream:
    """The one origin (plus optional path prefix) every request is forwarded to."""

    scheme: str
    host: str
    port: int
    prefix: str

    @property
    def authority(self) -> str:
        """Host as sent and signed: lower-case, with the port unless it is the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if DEFAULT_PORTS[self.scheme] == self.port else f"{host}:{self.port}"

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.authority}"

    def __str__(self) -> str:
        return self.origin + self.prefix


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
    config: Path | None = None


@dataclass(frozen=True)
class Option:
    """One setting: its long option, environment variable and config key derive from ``name``."""

    name: str
    default: str | None
    help: str
    metavar: str = "VALUE"

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
    Option("listen", "127.0.0.1:8181", "address to listen on, HOST:PORT or [IPv6]:PORT", "ADDR"),
    Option("upstream", "https://api.remote.it", "API origin (and path prefix)", "URL"),
    Option("credentials", None, "credentials file (default ~/.remoteit/credentials)", "PATH"),
    Option("profile", DEFAULT_PROFILE, "profile (section) of the credentials file", "NAME"),
    Option("log-level", "info", "debug, info, warning or error", "LEVEL"),
    Option("connect-timeout", "10", "seconds to wait for the upstream connection", "SECONDS"),
    Option("read-timeout", "60", "seconds to wait for each read from the upstream", "SECONDS"),
)
CONFIG_OPTION = Option("config", None, "INI file with a [proxy] section of settings", "FILE")


def parse_listen(value: str, origin: str) -> Listen:
    """Parse ``HOST:PORT`` or ``[IPV6]:PORT``."""
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})", value) or re.fullmatch(
        r"([A-Za-z0-9.-]+):(\d{1,5})", value
    )
    if match is None or int(match.group(2)) > 65535:
        raise ConfigError(
            f"{origin}: {value!r} is not an address to listen on; "
            "use HOST:PORT, e.g. 127.0.0.1:8181 or [::1]:8181"
        )
    return Listen(match.group(1), int(match.group(2)))


_HOSTNAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.?")


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return _HOSTNAME.fullmatch(host) is not None


def parse_upstream(value: str, origin: str) -> Upstream:
    """Parse an ``http(s)://host[:port][/prefix]`` URL, rejecting anything else."""
    hint = "use an http(s) URL such as https://api.remote.it"
    # Echo the value only without any user:password part, which may hold a secret.
    shown = repr(re.sub(r"//[^/@]*@", "//***@", value))
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ConfigError(f"{origin}: {shown} is not a valid URL; {hint}") from None
    host = (parts.hostname or "").lower()
    if parts.scheme not in DEFAULT_PORTS or not _valid_host(host) or port == 0:
        raise ConfigError(f"{origin}: {shown} is not an http or https URL with a host; {hint}")
    if "@" in parts.netloc or "?" in value or "#" in value:
        raise ConfigError(
            f"{origin}: {shown} may not contain a user, a query or a fragment; {hint}"
        )
    return Upstream(
        scheme=parts.scheme,
        host=host,
        port=port if port is not None else DEFAULT_PORTS[parts.scheme],
        prefix=parts.path.rstrip("/"),
    )


def _parse_seconds(value: str, origin: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise ConfigError(f"{origin}: {value!r} is not a positive number of seconds")
    return seconds


def _parse_log_level(value: str, origin: str) -> str:
    if value.lower() not in LOG_LEVELS:
        raise ConfigError(f"{origin}: {value!r} is not one of {', '.join(LOG_LEVELS)}")
    return value.lower()


def _parse_text(value: str, origin: str) -> str:
    if not value:
        raise ConfigError(f"{origin}: may not be empty")
    return value


PARSERS: Mapping[str, Callable[[str, str], Any]] = {
    "listen": parse_listen,
    "upstream": parse_upstream,
    "credentials": lambda value, origin: Path(_parse_text(value, origin)).expanduser(),
    "profile": _parse_text,
    "log-level": _parse_log_level,
    "connect-timeout": _parse_seconds,
    "read-timeout": _parse_seconds,
}


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
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else type(exc).__name__
        raise ConfigError(f"config file {path} cannot be read ({reason})") from None
    if any("\x00" in name for name in parser.sections()):
        raise ConfigError(f"config file {path} has a NUL character; it is not a text file")
    if not parser.has_section(CONFIG_SECTION):
        raise ConfigError(f"config file {path} has no [{CONFIG_SECTION}] section")
    values = dict(parser.items(CONFIG_SECTION))
    known = {option.key for option in OPTIONS}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown setting {', '.join(unknown)} in [{CONFIG_SECTION}]; "
            f"known settings: {', '.join(sorted(known))}"
        )
    return values


def resolve(cli: Mapping[str, str], environ: Mapping[str, str]) -> Settings:
    """Resolve every option: command line > environment > config file > defaults.

    ``cli`` maps option names (``log-level``) to the strings given on the command line.
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
        values[option.key] = PARSERS[option.name](raw.strip(), origin)
    if values["credentials"] is None:
        values["credentials"] = default_credentials_path()
    return Settings(config=config_path, **values)
