"""Addresses: where the proxy listens and the one upstream it forwards to."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import ConfigError

DEFAULT_PORTS = {"http": 80, "https": 443}
UNIX_PREFIX = "unix:"
# The size of sun_path in struct sockaddr_un, where it is known: a path takes one byte less
# (the final NUL), and a longer one is refused at bind with no reason given.
_SUN_PATH = {"linux": ("Linux", 108), "darwin": ("macOS", 104)}


@dataclass(frozen=True)
class Listen:
    """A TCP address (host and port) or a unix socket path to listen on."""

    host: str = ""
    port: int = 0
    unix: Path | None = None

    @property
    def is_loopback(self) -> bool:
        """True for a unix socket or a loopback address: nothing off this machine can connect."""
        if self.unix is not None or self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False  # a host name might resolve to anything: assume the worst

    def __str__(self) -> str:
        if self.unix is not None:
            return f"{UNIX_PREFIX}{self.unix}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Upstream:
    """The one origin (plus optional path prefix) every request is forwarded to."""

    scheme: str
    host: str
    port: int
    prefix: str

    @cached_property  # read on every request: built once
    def authority(self) -> str:
        """Host as sent and signed: lower-case, with the port unless it is the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if DEFAULT_PORTS[self.scheme] == self.port else f"{host}:{self.port}"

    @cached_property
    def origin(self) -> str:
        return f"{self.scheme}://{self.authority}"

    def __str__(self) -> str:
        return self.origin + self.prefix


def parse_listen(value: str, origin: str) -> Listen:
    """Parse ``HOST:PORT``, ``[IPV6]:PORT`` or ``unix:PATH``."""
    if value.startswith(UNIX_PREFIX):
        path = value[len(UNIX_PREFIX) :]
        if not path:
            raise ConfigError(f"{origin}: {value!r} names no socket path; use unix:/path/to.sock")
        return Listen(unix=_socket_path(path, value, origin))
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})", value) or re.fullmatch(
        r"([A-Za-z0-9.-]+):(\d{1,5})", value
    )
    if match is None or int(match.group(2)) > 65535:
        raise ConfigError(
            f"{origin}: {value!r} is not an address to listen on; "
            "use HOST:PORT, e.g. 127.0.0.1:8181 or [::1]:8181, or unix:/path/to.sock"
        )
    return Listen(match.group(1), int(match.group(2)))


def _socket_path(path: str, value: str, origin: str) -> Path:
    """A unix socket's path, if this system has unix sockets and the path fits."""
    if not hasattr(socket, "AF_UNIX"):  # Windows
        raise ConfigError(
            f"{origin}: {value!r}: this system has no unix sockets; listen on a TCP address "
            "instead, e.g. 127.0.0.1:8181"
        )
    if "\x00" in path:  # possible in a config file; os.lstat would raise ValueError
        raise ConfigError(f"{origin}: the socket path has a NUL character; remove it")
    socket_path = Path(path).expanduser()
    system, size = _SUN_PATH.get(sys.platform, ("", 0))
    length = len(os.fsencode(socket_path))
    if size and length >= size:
        raise ConfigError(
            f"{origin}: the socket path {str(socket_path)!r} is {length} bytes; the limit here "
            f"is {size - 1} ({system}: {size} with the final NUL); choose a shorter path"
        )
    return socket_path


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
