"""Limits on clients: deadlines, the cap on connections, and warnings when a limit is hit.

The cap counts connections as they open and close (never per request). Over it, a few more are
kept, the newest first, for requests to the proxy's own endpoints; serve/deadlines.py keeps each
connection's deadlines.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from collections.abc import Iterable
from email.utils import formatdate
from typing import Any, Protocol

from ..config.settings import Settings
from ..ops.metrics import Metrics
from .responses import error_response

log = logging.getLogger("proxy.limits")

# Connections over the cap kept until their head shows a request for /-/ (a health check sends
# its head at once); past this many, the oldest is closed.
RESERVE = 16
# Descriptors the process needs besides its connections: listeners, the event loop, log and
# credential files, a credential_process's pipes.
OWN_DESCRIPTORS = 32
WITHOUT_RLIMIT = 4096  # the default cap where there is no descriptor limit (Windows)
LOG_EVERY = 60.0  # seconds between two warnings of one kind: a flood writes a line a minute
ACCEPT_FAILED = "socket.accept() out of system resource"  # asyncio's report


def default_max_connections() -> int:
    """Half the descriptor limit (a client connection may hold an upstream one too), less what
    the process itself and the reserve need."""
    try:
        import resource
    except ImportError:
        return WITHOUT_RLIMIT
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(1, (soft - OWN_DESCRIPTORS - RESERVE) // 2)


class Connection(Protocol):
    """A client connection as the cap sees it (serve/deadlines.py's handler)."""

    reserved: bool  # over the cap

    def force_close(self) -> None: ...


class Limits:
    """One server's deadlines and cap on connections, and the warnings when a limit is hit."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.header_timeout = settings.header_timeout
        self.client_timeout = settings.client_timeout
        self.check_every = settings.client_timeout / 4
        self.max_connections = settings.max_connections or default_max_connections()
        self.metrics = metrics
        metrics.max_connections = self.max_connections
        self.served = 0  # open connections within the cap
        self.reserve: dict[Connection, None] = {}  # over the cap, oldest first
        self._next_warning: dict[str, float] = {}
        self._unreported: dict[str, int] = {}
        answer = error_response(
            408,
            "header_timeout",
            f"the request head did not arrive in full within {self.header_timeout:g}s",
        )
        self._timeout_body: bytes = answer.body  # type: ignore[assignment]
        self._timeout_type = answer.headers["Content-Type"]

    def opened(self, handler: Connection) -> bool:
        """Count a new connection; True when it is over the cap (kept for /-/ requests only)."""
        self.metrics.open_connections += 1
        if self.served < self.max_connections:
            self.served += 1
            return False
        handler.reserved = True
        self.reserve[handler] = None
        self.warn(
            "cap",
            "%d client connections are open, the most --max-connections allows: new ones are "
            "closed unserved, except requests for /-/ (%d refused so far)",
            self.served,
            self.metrics.connections_refused,
        )
        if len(self.reserve) > RESERVE:
            oldest = next(iter(self.reserve))
            del self.reserve[oldest]
            oldest.force_close()
            self.refused()
        return True

    def closed(self, handler: Connection) -> None:
        self.metrics.open_connections -= 1
        if handler.reserved:
            self.reserve.pop(handler, None)
        else:
            self.served -= 1

    def refused(self) -> None:
        """A connection over the cap closed unserved."""
        self.metrics.connections_refused += 1

    def timeout_answer(self) -> bytes:
        """The 408 written, then the connection closed, when a request head is too slow."""
        head = (
            "HTTP/1.1 408 Request Timeout\r\n"
            f"Content-Type: {self._timeout_type}\r\n"
            f"Content-Length: {len(self._timeout_body)}\r\n"
            f"Date: {formatdate(usegmt=True)}\r\n"
            "Connection: close\r\n\r\n"
        )
        return head.encode() + self._timeout_body

    def out_of_descriptors(self, exc: OSError) -> None:
        self.metrics.descriptor_limit_hits += 1
        self.warn(
            "descriptors",
            "out of file descriptors (%s) with %d client connections open: connections wait "
            "until some close; lower --max-connections or raise the limit (ulimit -n)",
            exc.strerror,
            self.metrics.open_connections,
        )

    def warn(self, kind: str, message: str, *args: object) -> None:
        """Log a warning now, then at most once a minute with the count since the last one."""
        count = self._unreported[kind] = self._unreported.get(kind, 0) + 1
        now = time.monotonic()
        if now < self._next_warning.get(kind, 0.0):
            return
        self._next_warning[kind] = now + LOG_EVERY
        self._unreported[kind] = 0
        log.warning(message + " (%d times since the last such line)", *args, count)


class DescriptorWatch:
    """The event loop's report that a listener could not accept for lack of descriptors, as a
    warning and a metric (asyncio logs one error with a stack per failed accept instead)."""

    def __init__(
        self, limits: Limits, loop: asyncio.AbstractEventLoop, listeners: Iterable[int]
    ) -> None:
        self._limits, self._loop, self._listeners = limits, loop, set(listeners)
        self._previous = loop.get_exception_handler()
        loop.set_exception_handler(self)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc, sock = context.get("exception"), context.get("socket")
        if (
            context.get("message") == ACCEPT_FAILED
            and isinstance(exc, OSError)
            and exc.errno in (errno.EMFILE, errno.ENFILE)
            and sock is not None
            and sock.fileno() in self._listeners
        ):
            self._limits.out_of_descriptors(exc)
        elif self._previous is not None:
            self._previous(loop, context)
        else:
            loop.default_exception_handler(context)

    def remove(self) -> None:
        if self._loop.get_exception_handler() is self:
            self._loop.set_exception_handler(self._previous)
