"""Named upstreams: the ``[upstream.NAME]`` sections, each reached through its own mount."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from .addresses import Upstream, parse_upstream
from .values import parse_bool, parse_path, parse_scheme

UPSTREAM_PREFIX = "upstream."
UPSTREAM_KEYS = frozenset({"url", "mount", "scheme", "ca_bundle", "insecure_skip_verify"})
# Every named upstream is reached here, whatever its mount: the proxy's own namespace, which
# no API path uses.
TO_PREFIX = "/-/to/"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
_MOUNT = re.compile(r"(/[A-Za-z0-9._~!$&'()*+,;=:@-]+)+")
# WebSocket URLs name the same origins as http(s) ones (RFC 6455 section 3).
_WS_SCHEMES = {"ws://": "http://", "wss://": "https://"}


@dataclass(frozen=True)
class NamedUpstream:
    """One ``[upstream.NAME]`` section: where it is, where clients reach it, how it is signed
    (None: as the default upstream) and its TLS settings."""

    name: str
    upstream: Upstream
    mounts: tuple[str, ...]
    scheme: str | None = None
    ca_bundle: Path | None = None
    insecure_skip_verify: bool = False


def parse_named(path: Path, name: str, section: Mapping[str, str]) -> NamedUpstream:
    """One section, checked; errors name the file, the section and the key."""
    where = f"config file {path} [{UPSTREAM_PREFIX}{name}]"
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"config file {path}: [{UPSTREAM_PREFIX}{name}] is not a valid name; use letters, "
            "digits, '-' and '_'"
        )
    url = section.get("url", "").strip()
    if not url:
        raise ConfigError(f"{where} has no url; add one, e.g. url = wss://ws.remote.it")
    for ws, http in _WS_SCHEMES.items():
        if url.lower().startswith(ws):
            url = http + url[len(ws) :]
    upstream = parse_upstream(url, f"{where} url")
    mounts = [TO_PREFIX + name]
    mount = section.get("mount", "").strip().rstrip("/")
    if mount:
        if not _MOUNT.fullmatch(mount) or mount.startswith("/-/") or "/." in mount:
            raise ConfigError(
                f"{where} mount: {mount[:60]!r} is not a path such as /events (no '.' or '..' "
                "segments, nothing under /-/, which is the proxy's own)"
            )
        mounts.append(mount)
    scheme = section.get("scheme", "").strip()
    ca_bundle = section.get("ca_bundle", "").strip()
    return NamedUpstream(
        name,
        upstream,
        tuple(mounts),
        parse_scheme(scheme, f"{where} scheme") if scheme else None,
        parse_path(ca_bundle, f"{where} ca_bundle") if ca_bundle else None,
        parse_bool(
            section.get("insecure_skip_verify", "false").strip(), f"{where} insecure_skip_verify"
        ),
    )


def parse_upstreams(
    path: Path, sections: Mapping[str, Mapping[str, str]]
) -> tuple[NamedUpstream, ...]:
    """Every section; two mounts may not overlap (one at or below the other)."""
    named = tuple(parse_named(path, name, section) for name, section in sections.items())
    seen: dict[str, str] = {}
    for one in named:
        for mount in one.mounts:
            for other, owner in seen.items():
                if _overlap(mount, other):
                    raise ConfigError(
                        f"config file {path}: the mount {mount} of [{UPSTREAM_PREFIX}{one.name}] "
                        f"overlaps {other} of [{UPSTREAM_PREFIX}{owner}]; give each its own path"
                    )
            seen[mount.lower()] = one.name
    return named


def _overlap(one: str, other: str) -> bool:
    one, other = one.lower(), other.lower()
    return one == other or one.startswith(other + "/") or other.startswith(one + "/")


def route(raw_path: str, mount: str) -> str | None:
    """The target below ``mount`` (``/`` for the mount itself), or None if not under it.
    Compared as sent, case-sensitively: a path is the upstream's to read, not ours."""
    if not raw_path.startswith(mount):
        return None
    rest = raw_path[len(mount) :]
    if not rest:
        return "/"
    if rest[0] == "/":
        return rest
    if rest[0] == "?":
        return "/" + rest
    return None
