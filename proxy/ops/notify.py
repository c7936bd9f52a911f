"""Service manager notifications (sd_notify): ready, reloading, stopping and watchdog pings."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import MutableMapping

log = logging.getLogger("proxy.notify")

NOTIFY_SOCKET = "NOTIFY_SOCKET"
WATCHDOG_USEC = "WATCHDOG_USEC"
WATCHDOG_PID = "WATCHDOG_PID"


class Notifier:
    """Tells systemd (``Type=notify``) how the service is doing: one datagram of
    ``NAME=value`` lines to the socket in ``$NOTIFY_SOCKET`` (sd_notify(3); a name starting
    with ``@`` is in the abstract namespace). Without that variable every call does nothing.

    The variables are taken out of ``environ`` when read, as sd_notify does when asked to:
    commands the proxy runs (a ``credential_process``) must not speak for the service.
    """

    def __init__(self, environ: MutableMapping[str, str]) -> None:
        path = environ.pop(NOTIFY_SOCKET, "")
        usec = environ.pop(WATCHDOG_USEC, "")
        pid = environ.pop(WATCHDOG_PID, "")
        self._address: str | None = None
        if path.startswith("@"):
            self._address = "\0" + path[1:]
        elif path.startswith("/"):
            self._address = path
        self.watchdog: float | None = None  # seconds between pings: half the manager's limit
        if usec.isascii() and usec.isdigit() and int(usec) > 0 and pid in ("", str(os.getpid())):
            self.watchdog = int(usec) / 2 / 1_000_000
        self._failed = False

    @property
    def active(self) -> bool:
        """Whether a service manager listens."""
        return self._address is not None

    def ready(self, status: str) -> None:
        """Every listener is open (or a reload is done): requests are taken."""
        self._send("READY=1", f"STATUS={status}")

    def reloading(self) -> None:
        """A reload begins; ``ready`` says when it is done (MONOTONIC_USEC dates it, as
        ``Type=notify-reload`` requires)."""
        if self._address is None:
            return  # (and no CLOCK_MONOTONIC to read where there is no systemd: Windows)
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading")

    def stopping(self) -> None:
        """Shutdown begins: requests in flight finish, no new ones are taken."""
        self._send("STOPPING=1", "STATUS=stopping: finishing requests in flight")

    def ping(self) -> None:
        """The watchdog's keep-alive: the event loop still turns."""
        self._send("WATCHDOG=1")

    def _send(self, *fields: str) -> None:
        if self._address is None:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto("\n".join(fields).encode(), self._address)
        except OSError as exc:
            if not self._failed:  # once: a manager that went away would flood the log
                self._failed = True
                log.warning("cannot notify the service manager at %s: %s", self._address, exc)
