"""Opening connections to the origin: name lookup, TCP, TLS, or an outbound proxy's tunnel.

Every failure becomes an UpstreamError that says what to check.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from dataclasses import dataclass, field
from itertools import zip_longest
from typing import cast

from ..errors import UpstreamTimeout, UpstreamTLSError, UpstreamUnreachable
from .connection import Connection
from .leftover import guard
from .wire import request_head

DNS_TTL = 60.0


@dataclass(frozen=True)
class Origin:
    """The one server a pool talks to."""

    scheme: str  # http or https
    host: str  # a name or an address, lower-case, IPv6 without brackets
    port: int
    url: str  # scheme://authority, for absolute-form targets through a forward proxy
    name: str  # how messages name it (the URL as configured)


@dataclass(frozen=True)
class OutboundProxy:
    """An HTTP(S)_PROXY to reach the upstream through."""

    host: str
    port: int
    variable: str  # the environment variable it came from, for messages
    authorization: str | None = field(default=None, repr=False)


class Dialer:
    """Opens new connections to the upstream, the same way each time."""

    def __init__(
        self,
        upstream: Origin,
        *,
        tls: ssl.SSLContext | None,
        proxy: OutboundProxy | None,
        connect_timeout: float,
        read_timeout: float,
    ) -> None:
        self.upstream = upstream
        self._where = upstream.name
        self._tls = tls if upstream.scheme == "https" else None
        self.proxy = proxy
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._addresses: tuple[float, list[str]] | None = None

    async def connect(self) -> Connection:
        """A new connection, ready for a request, within ``--connect-timeout``."""
        loop = asyncio.get_running_loop()
        conn = Connection(loop, self._read_timeout, self._where)
        try:
            await asyncio.wait_for(self._open(loop, conn), self._connect_timeout)
        except asyncio.TimeoutError:
            conn.close()
            raise UpstreamTimeout(
                f"the upstream {self._where} could not be reached within "
                f"{self._connect_timeout:g} s (--connect-timeout)",
            ) from None
        except BaseException:
            conn.close()
            raise
        return conn

    async def _open(self, loop: asyncio.AbstractEventLoop, conn: Connection) -> None:
        proxy, upstream = self.proxy, self.upstream
        host, port = (proxy.host, proxy.port) if proxy else (upstream.host, upstream.port)
        try:
            addresses = await self._resolve(loop, host, port)
            await self._first_that_answers(loop, conn, addresses, port)
            if proxy is not None and self._tls is not None:
                await self._tunnel(loop, conn, proxy, self._tls)
        except asyncio.TimeoutError:
            raise  # an OSError too on Python 3.11+: --connect-timeout's, answered as such
        except ssl.SSLError:
            raise UpstreamTLSError(
                f"the TLS certificate of {self._where} could not be verified; if a proxy on "
                "your network inspects TLS, pass its CA with --ca-bundle",
            ) from None
        except OSError as exc:
            reason = exc.strerror or "the connection failed"
            where = (
                f"the outbound proxy ({proxy.variable})" if proxy else f"the upstream {self._where}"
            )
            raise UpstreamUnreachable(f"{where} could not be reached ({reason})") from None

    async def _first_that_answers(
        self, loop: asyncio.AbstractEventLoop, conn: Connection, addresses: list[str], port: int
    ) -> None:
        """Connect to the addresses in turn, each with its share of what is left of
        ``--connect-timeout``, so that one that never answers (a broken IPv6 route) does not
        use it all up (RFC 8305 in spirit: uvloop has no happy eyeballs of its own)."""
        tls = self._tls if self.proxy is None else None
        deadline = loop.time() + self._connect_timeout
        error: BaseException = OSError("no address")
        for index, address in enumerate(addresses):
            share = (deadline - loop.time()) / (len(addresses) - index)
            try:
                await asyncio.wait_for(self._connect(loop, conn, address, port, tls), share)
                return
            except ssl.SSLError:
                raise
            except (OSError, asyncio.TimeoutError) as exc:
                error = exc
        raise error

    async def _connect(
        self,
        loop: asyncio.AbstractEventLoop,
        conn: Connection,
        address: str,
        port: int,
        tls: ssl.SSLContext | None,
    ) -> None:
        await loop.create_connection(lambda: conn, address, port)
        if tls is not None:
            await self._start_tls(loop, conn, tls)

    async def _start_tls(
        self, loop: asyncio.AbstractEventLoop, conn: Connection, tls: ssl.SSLContext
    ) -> None:
        """TLS over the connection, with a rescuer under it (``leftover.guard``): the TLS
        layer is started over a connection of our own rather than by ``create_connection``,
        so that the socket's transport is known."""
        socket_transport = conn.transport
        assert socket_transport is not None
        transport = await loop.start_tls(
            socket_transport, conn, tls, server_hostname=self.upstream.host
        )
        guard(socket_transport)
        conn.transport = cast(asyncio.Transport, transport)

    async def _tunnel(
        self,
        loop: asyncio.AbstractEventLoop,
        conn: Connection,
        proxy: OutboundProxy,
        tls: ssl.SSLContext,
    ) -> None:
        """CONNECT through the proxy (RFC 9110 section 9.3.6), then TLS with the upstream."""
        upstream = self.upstream
        host = f"[{upstream.host}]" if ":" in upstream.host else upstream.host
        target = f"{host}:{upstream.port}"
        lines = [f"Host: {target}".encode()]
        if proxy.authorization:
            lines.append(f"Proxy-Authorization: {proxy.authorization}".encode())
        conn.begin("CONNECT")
        conn.write(request_head("CONNECT", target, lines))
        head = await conn.response()  # bounded by --connect-timeout, not --read-timeout
        if not 200 <= head.status < 300:
            hint = ": check the proxy's user and password" if head.status == 407 else ""
            raise UpstreamUnreachable(
                f"the outbound proxy ({proxy.variable}) refused the tunnel to {target} "
                f"({head.status}){hint}",
            )
        await self._start_tls(loop, conn, tls)

    async def _resolve(self, loop: asyncio.AbstractEventLoop, host: str, port: int) -> list[str]:
        """The host's addresses, looked up at most once a minute (new connections come in
        bursts, and each would otherwise ask the resolver)."""
        try:
            ipaddress.ip_address(host)
            return [host]
        except ValueError:
            pass
        cached = self._addresses
        if cached is not None and cached[0] > loop.time():
            return cached[1]
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        # Families taken in turn, the resolver's preferred one first (RFC 8305 section 4).
        by_family: dict[int, list[str]] = {}
        for family, *_, sockaddr in infos:
            found = by_family.setdefault(family, [])
            if str(sockaddr[0]) not in found:
                found.append(str(sockaddr[0]))
        addresses = [a for group in zip_longest(*by_family.values()) for a in group if a]
        self._addresses = (loop.time() + DNS_TTL, addresses)
        return addresses
