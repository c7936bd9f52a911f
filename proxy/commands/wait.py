"""``wait``: until a proxy answers ``/-/ready``, for scripts and init containers."""

from __future__ import annotations

import http.client
import socket
import time
from urllib.parse import urlsplit

from ..config.addresses import Listen
from ..errors import ConfigError

POLL = 0.1  # seconds between two looks: a proxy starts in a fraction of a second


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a unix socket (the standard library speaks it over TCP only)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def ready_url(url: str | None, listen: Listen) -> str:
    """The URL asked: ``--url`` (a base such as ``http://proxy:8181``, or ``unix:PATH``), or
    the one ``--listen`` names."""
    if url is None:
        return f"unix:{listen.unix}" if listen.unix is not None else f"http://{listen}"
    if url.startswith("unix:"):
        if not hasattr(socket, "AF_UNIX"):
            raise ConfigError(
                f"--url: {url!r}: this system has no unix sockets; give the proxy's "
                "http://HOST:PORT"
            )
        return url
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ConfigError(
            f"--url: {url!r} is not an http:// URL or unix:PATH of the proxy "
            "(e.g. http://127.0.0.1:8181)"
        )
    return url.rstrip("/")


def _ready(url: str, timeout: float) -> int | None:
    """The status ``/-/ready`` answers; None when nothing answers yet."""
    if url.startswith("unix:"):
        conn: http.client.HTTPConnection = _UnixConnection(url[len("unix:") :], timeout)
        path = "/-/ready"
    else:
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=timeout)
        path = (parts.path or "") + "/-/ready"
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def wait(url: str, timeout: float) -> tuple[bool, str]:
    """Look at ``/-/ready`` until it answers 200 or ``timeout`` seconds pass; whether it did,
    and a line saying how it went."""
    started = time.monotonic()
    last: int | None = None
    while True:
        left = timeout - (time.monotonic() - started)
        last = _ready(url, max(0.05, min(1.0, left)))
        if last == 200:
            return True, f"{url} is ready ({time.monotonic() - started:.1f} s)"
        if left <= POLL:
            seen = "nothing answered" if last is None else f"/-/ready answered {last}"
            return False, f"{url} is not ready after {timeout:g} s: {seen}"
        time.sleep(POLL)
