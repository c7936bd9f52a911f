"""Option values: each parser takes the text and where it came from, returns the value."""

from __future__ import annotations

import math
import re
from pathlib import Path

from ..errors import ConfigError
from ..ops.logs import LOG_FORMATS
from ..policy.bucket import Rate
from ..signing import REQUIRED_SIGNED_HEADERS, SIGNABLE_HEADERS

LOG_LEVELS = ("debug", "info", "warning", "error")
SCHEMES = ("cavage", "rfc9421")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
_TOKEN = re.compile(r"[\x21-\x7e]+")
_DIGITS = re.compile(r"[0-9]+")  # str.isdigit takes "²", which int() refuses


def parse_seconds(value: str, origin: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise ConfigError(f"{origin}: {value!r} is not a positive number of seconds")
    return seconds


def parse_seconds_or_off(value: str, origin: str) -> float | None:
    """A positive number of seconds, or ``off`` (also 0) for no limit."""
    if value.lower() in ("off", "0", "none"):
        return None
    try:
        return parse_seconds(value, origin)
    except ConfigError:
        raise ConfigError(
            f"{origin}: {value!r} is not a positive number of seconds, or off"
        ) from None


def parse_count_or_auto(value: str, origin: str) -> int | None:
    """A whole number from 1 up, or ``auto`` (None): the caller works the number out."""
    if value.lower() == "auto":
        return None
    if not _DIGITS.fullmatch(value) or int(value) < 1:
        raise ConfigError(f"{origin}: {value!r} is not a number from 1 up, or auto")
    return int(value)


def parse_count_or_off(value: str, origin: str) -> int | None:
    """A whole number from 1 up, or ``off`` (also 0): no limit."""
    if value.lower() in ("off", "0", "none"):
        return None
    if not _DIGITS.fullmatch(value):
        raise ConfigError(f"{origin}: {value!r} is not a number from 1 up, or off")
    return int(value)


def parse_retries(value: str, origin: str) -> int:
    """A number of retries from 0 (none) to 10."""
    if not _DIGITS.fullmatch(value) or int(value) > 10:
        raise ConfigError(f"{origin}: {value!r} is not a number of retries from 0 (off) to 10")
    return int(value)


_PER = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0}
_PER |= {"h": 3600.0, "hour": 3600.0}
_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*/\s*([a-z]+)")


def parse_rate(value: str, origin: str) -> Rate | None:
    """``10/s``, ``600/min``, ``100/h``, or ``off``; the burst is one second's worth (at least
    one request) unless ``burst`` says otherwise."""
    if value.lower() in ("off", "none"):
        return None
    match = _RATE.fullmatch(value.strip().lower())
    count = float(match.group(1)) if match else 0.0
    if match is None or match.group(2) not in _PER or count <= 0:
        raise ConfigError(
            f"{origin}: {value!r} is not a rate such as 10/s, 600/min or 100/h, or off"
        )
    per_second = count / _PER[match.group(2)]
    return Rate(per_second, max(1, math.ceil(per_second)), value.strip())


def with_burst(rate: Rate | None, burst: int | None, origin: str) -> Rate | None:
    """The rate with its burst set (``burst`` None: the rate's own default)."""
    if burst is None:
        return rate
    if rate is None:
        raise ConfigError(f"{origin}: a burst needs a rate limit (rate_limit, --rate-limit)")
    return Rate(rate.per_second, burst, rate.text)


def parse_log_level(value: str, origin: str) -> str:
    if value.lower() not in LOG_LEVELS:
        raise ConfigError(f"{origin}: {value!r} is not one of {', '.join(LOG_LEVELS)}")
    return value.lower()


def parse_log_format(value: str, origin: str) -> str:
    if value.lower() not in LOG_FORMATS:
        raise ConfigError(f"{origin}: {value!r} is not one of {', '.join(LOG_FORMATS)}")
    return value.lower()


def parse_scheme(value: str, origin: str) -> str:
    if value.lower() not in SCHEMES:
        raise ConfigError(f"{origin}: {value!r} is not one of {', '.join(SCHEMES)}")
    return value.lower()


def parse_sign_headers(value: str, origin: str) -> tuple[str, ...]:
    names = tuple(value.lower().split())
    unknown = [name for name in names if name not in SIGNABLE_HEADERS]
    missing = [name for name in REQUIRED_SIGNED_HEADERS if name not in names]
    if unknown or missing or len(set(names)) != len(names):
        raise ConfigError(
            f"{origin}: {value!r} is not a header list to sign: use some of "
            f"{' '.join(SIGNABLE_HEADERS)}, each once, including "
            f"{' '.join(REQUIRED_SIGNED_HEADERS)}"
        )
    return names


def parse_size(value: str, origin: str) -> int:
    match = re.fullmatch(r"(\d+)\s*(|k|kib|m|mib|g|gib)", value.lower())
    if match is None:
        raise ConfigError(f"{origin}: {value!r} is not a size such as 10MiB or 1048576")
    unit = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[match.group(2)[:1]]
    return int(match.group(1)) * unit


def parse_text(value: str, origin: str) -> str:
    if not value:
        raise ConfigError(f"{origin}: may not be empty")
    return value


def parse_path(value: str, origin: str) -> Path:
    return Path(parse_text(value, origin)).expanduser()


def parse_bool(value: str, origin: str) -> bool:
    if value.lower() not in _TRUE + _FALSE:
        raise ConfigError(f"{origin}: {value!r} is not true or false")
    return value.lower() in _TRUE


def parse_mode(value: str, origin: str) -> int:
    try:
        mode = int(value.removeprefix("0o"), 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777:
        raise ConfigError(f"{origin}: {value!r} is not an octal file mode such as 0600 or 0660")
    return mode


def parse_token(value: str, origin: str) -> str:
    # Never echo the value: it is a secret.
    if not _TOKEN.fullmatch(value):
        raise ConfigError(f"{origin}: the token must be printable ASCII without spaces")
    return value


def parse_workers(value: str, origin: str) -> int:
    if not _DIGITS.fullmatch(value) or not 1 <= int(value) <= 64:
        raise ConfigError(f"{origin}: {value!r} is not a number of processes from 1 to 64")
    return int(value)


def parse_graphql_paths(value: str, origin: str) -> tuple[str, ...]:
    paths = tuple(value.split())
    if not paths or any(not p.startswith("/") or "?" in p for p in paths):
        raise ConfigError(
            f"{origin}: {value!r} is not a list of paths such as /graphql/v1 /graphql/beta"
        )
    # Compared case-folded and without a trailing slash (gate.graphql_path): normalized once.
    return tuple(p.lower().rstrip("/") for p in paths)
