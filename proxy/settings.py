"""Settings: the option table; command line > environment > config file > defaults."""

from __future__ import annotations

import configparser
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .addresses import Listen, Upstream, parse_listen, parse_upstream
from .credentials import DEFAULT_PROFILE, default_credentials_path
from .errors import ConfigError
from .logs import LOG_FORMATS

__all__ = ["OPTIONS", "Option", "Settings", "parse_listen", "parse_upstream", "resolve"]

ENV_PREFIX = "REMOTEIT_PROXY_"
CONFIG_SECTION = "proxy"
LOG_LEVELS = ("debug", "info", "warning", "error")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
_TOKEN = re.compile(r"[\x21-\x7e]+")


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
    config: Path | None = None


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


def _parse_log_format(value: str, origin: str) -> str:
    if value.lower() not in LOG_FORMATS:
        raise ConfigError(f"{origin}: {value!r} is not one of {', '.join(LOG_FORMATS)}")
    return value.lower()


def _parse_text(value: str, origin: str) -> str:
    if not value:
        raise ConfigError(f"{origin}: may not be empty")
    return value


def _parse_path(value: str, origin: str) -> Path:
    return Path(_parse_text(value, origin)).expanduser()


def _parse_bool(value: str, origin: str) -> bool:
    if value.lower() not in _TRUE + _FALSE:
        raise ConfigError(f"{origin}: {value!r} is not true or false")
    return value.lower() in _TRUE


def _parse_mode(value: str, origin: str) -> int:
    try:
        mode = int(value.removeprefix("0o"), 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777:
        raise ConfigError(f"{origin}: {value!r} is not an octal file mode such as 0600 or 0660")
    return mode


def _parse_token(value: str, origin: str) -> str:
    # Never echo the value: it is a secret.
    if not _TOKEN.fullmatch(value):
        raise ConfigError(f"{origin}: the token must be printable ASCII without spaces")
    return value


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
    Option("credentials", None, "credentials file (~/.remoteit/credentials)", _parse_path, "PATH"),
    Option("profile", DEFAULT_PROFILE, "profile of the credentials file", _parse_text, "NAME"),
    Option("log-level", "info", "debug, info, warning or error", _parse_log_level, "LEVEL"),
    Option("connect-timeout", "10", "seconds to connect to the upstream", _parse_seconds, "S"),
    Option("read-timeout", "60", "seconds to wait for each upstream read", _parse_seconds, "S"),
    Option("token", None, "clients must send Authorization: Bearer TOKEN", _parse_token, "TOKEN"),
    Option("token-file", None, "read the token from this file", _parse_path, "PATH"),
    Option(
        "allow-unauthenticated",
        "false",
        "allow a non-loopback address without a token",
        _parse_bool,
        is_flag=True,
    ),
    Option("socket-mode", "0600", "file mode of a unix socket", _parse_mode, "MODE"),
    Option("ca-bundle", None, "extra CA certificates to trust (PEM)", _parse_path, "PATH"),
    Option(
        "insecure-skip-verify",
        "false",
        "do not verify the upstream's TLS certificate",
        _parse_bool,
        is_flag=True,
    ),
    Option("shutdown-timeout", "10", "seconds in-flight requests get at exit", _parse_seconds, "S"),
    Option("log-format", "text", "text or json (one object per line)", _parse_log_format, "FMT"),
    Option(
        "clock-skew-threshold",
        "5",
        "correct the signing time past this offset",
        _parse_seconds,
        "S",
    ),
    Option(
        "no-clock-correction",
        "false",
        "never correct the signing time for clock skew",
        _parse_bool,
        is_flag=True,
    ),
)
CONFIG_OPTION = Option("config", None, "INI file with a [proxy] section", _parse_path, "FILE")


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


def _read_token_file(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"--token-file: cannot read {path} ({reason})") from None
    if not token:
        raise ConfigError(f"--token-file: {path} is empty; write the token into it")
    return _parse_token(token, f"--token-file {path}")


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
    if values["token_file"] is not None:
        if values["token"] is not None:
            raise ConfigError("--token and --token-file are both set; use only one of them")
        values["token"] = _read_token_file(values["token_file"])
    if serving:
        _check_exposure(values)
    return Settings(config=config_path, **values)
