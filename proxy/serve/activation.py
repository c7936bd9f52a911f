"""Socket activation: the listening sockets systemd opened and passed (sd_listen_fds(3))."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass

from ..config.settings import Settings
from ..errors import ListenError

# The first descriptor passed: 0-2 are stdin, stdout and stderr (SD_LISTEN_FDS_START).
FIRST_FD = 3
_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


@dataclass(frozen=True)
class Activated:
    """One socket passed by the service manager, and the name its ``.socket`` unit gave it."""

    sock: socket.socket
    name: str

    @property
    def address(self) -> str:
        """As the start-up line shows it: ``http://HOST:PORT`` or ``unix:PATH``."""
        local = self.sock.getsockname()
        if self.sock.family == socket.AF_UNIX:
            return f"unix:{local if isinstance(local, str) else local.decode(errors='replace')}"
        host, port = local[0], local[1]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    @property
    def loopback(self) -> bool:
        """Whether only this machine can reach it (a unix socket, or a loopback address)."""
        if self.sock.family == socket.AF_UNIX:
            return True
        return ipaddress.ip_address(self.sock.getsockname()[0].partition("%")[0]).is_loopback


def activated(environ: MutableMapping[str, str]) -> list[Activated]:
    """The sockets passed to this process, or [] when none were (the variables are for this
    process only: they are taken out of ``environ``, so no command the proxy runs sees them).
    """
    pid, count, names = (environ.pop(name, "") for name in _VARIABLES)
    if not count or pid != str(os.getpid()):
        return []
    if not count.isascii() or not count.isdigit():
        raise ListenError(f"LISTEN_FDS={count!r} is not a number of sockets")
    labels = names.split(":") if names else []
    found = []
    for index in range(int(count)):
        fd = FIRST_FD + index
        name = labels[index] if index < len(labels) else f"fd {fd}"
        try:
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            raise ListenError(f"socket activation: descriptor {fd} ({name}): {exc}") from None
        os.set_inheritable(fd, False)  # never passed on to a command the proxy runs
        accepting = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        if sock.type != socket.SOCK_STREAM or not accepting:
            sock.detach()
            raise ListenError(
                f"socket activation: {name} is not a listening stream socket; give the "
                ".socket unit ListenStream= lines only"
            )
        found.append(Activated(sock, name))
    return found


def check_exposure(settings: Settings, sockets: Sequence[Activated]) -> None:
    """The rule --listen follows, for the sockets systemd opened: one that others can reach
    needs clients to present a token, or --allow-unauthenticated."""
    if settings.token is not None or settings.clients or settings.allow_unauthenticated:
        return
    for passed in sockets:
        if not passed.loopback:
            raise ListenError(
                f"refusing to serve on {passed.address} (socket activation, {passed.name}) "
                "without a token: anyone who can reach it could use your Remote.It account. "
                "Set a token (--token-file), listen on a loopback address or a unix socket in "
                "the .socket unit, or pass --allow-unauthenticated"
            )
