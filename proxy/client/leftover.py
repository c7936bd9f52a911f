"""An answer left unread in the kernel when a failed write closed the upstream connection."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import cast

# More than a socket's receive buffer holds by default (Linux grows it to 6 MiB): all that can
# have come before the reset, and a bound should the peer somehow keep sending.
MAX_LEFTOVER = 16 * 1024 * 1024
_READ = 256 * 1024
# What the socket's transport calls the TLS layer with, passed on untouched.
_PASSED = (
    "get_buffer",
    "buffer_updated",
    "data_received",
    "eof_received",
    "pause_writing",
    "resume_writing",
)


def rescue(protocol: asyncio.BaseProtocol, transport: asyncio.BaseTransport | None) -> None:
    """Feed ``protocol`` what the kernel still holds for ``transport``, which is closing.

    An upstream may answer before it reads the whole request body (a 413, say) and close at
    once, which resets the connection as the body is left unread (RFC 9112 section 9.6); a
    client is to watch for such an answer as it sends (section 9.5). The answer came before
    the reset, but when a write fails first, the event loop closes the transport unread.
    Called from ``connection_lost``, before the loop closes the socket (asyncio's and uvloop's
    transports both close it after). A TLS transport is left alone: its socket holds records,
    read by the TLS layer's rescuer (``guard``).
    """
    if transport is None or transport.get_extra_info("ssl_object") is not None:
        return
    handle = transport.get_extra_info("socket")
    try:
        sock = socket.socket(fileno=handle.fileno())  # borrowed: detached, never closed here
    except (AttributeError, OSError, ValueError):  # no socket, or one closed already
        return
    taken = 0
    try:
        with contextlib.suppress(OSError):  # nothing more (EAGAIN), or the reset itself
            sock.setblocking(False)  # it is already: a read must never wait
            while taken < MAX_LEFTOVER and (data := sock.recv(_READ)):
                taken += len(data)
                _feed(protocol, data)
    finally:
        sock.detach()


def _feed(protocol: asyncio.BaseProtocol, data: bytes) -> None:
    """Hand ``data`` to ``protocol`` the way a transport does."""
    if isinstance(protocol, asyncio.Protocol):
        protocol.data_received(data)
        return
    buffered = cast(asyncio.BufferedProtocol, protocol)  # uvloop's TLS layer is one, unsaid
    view = memoryview(data)
    while view:
        buffer = memoryview(buffered.get_buffer(len(view)))
        size = min(len(buffer), len(view))
        buffer[:size] = view[:size]
        buffered.buffer_updated(size)
        view = view[size:]


class _Rescuer:
    """Stands between a TLS connection's socket and the TLS layer; see ``guard``."""

    def __init__(self, transport: asyncio.BaseTransport, tls: asyncio.BaseProtocol) -> None:
        self._transport = transport
        self._tls = tls
        # Straight to the TLS layer, no call in between: reading costs what it did.
        for name in _PASSED:
            if hasattr(tls, name):
                setattr(self, name, getattr(tls, name))

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:  # a failed write, perhaps, with an answer unread behind it
            rescue(self._tls, self._transport)
        self._tls.connection_lost(exc)


class _BufferedRescuer(_Rescuer, asyncio.BufferedProtocol):
    pass


class _CopyingRescuer(_Rescuer, asyncio.Protocol):
    pass


def guard(transport: asyncio.BaseTransport) -> None:
    """Once TLS runs over ``transport`` (a socket's), have the TLS layer read what the socket
    still holds when a failed write closes it. The TLS layer tells the connection that it is
    lost only later, once the socket is closed: too late for ``rescue``. So the rescuer
    stands in as the socket's protocol, and hands the records on before the loss."""
    tls = transport.get_protocol()
    kind = _CopyingRescuer if isinstance(tls, asyncio.Protocol) else _BufferedRescuer
    transport.set_protocol(kind(transport, tls))
