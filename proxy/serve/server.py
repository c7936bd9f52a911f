"""Serving: listeners (TCP, unix socket), start-up, named upstreams and graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import os
import socket
import stat
import time
from collections.abc import Callable, Mapping, Sequence

from aiohttp import web

from ..client import Pool
from ..config.addresses import Listen
from ..config.settings import Settings, settings_for
from ..errors import ListenError
from ..keys.credentials import Credentials
from ..keys.reload import CredentialsWatcher
from ..ops.clock import ClockSkew
from ..ops.metrics import Metrics
from .activation import Activated
from .app import handle
from .clients import Clients
from .limits import DescriptorWatch, Limits
from .pools import create_pool
from .protocol import ProxyServer
from .state import ProxyState
from .verify import verifier

log = logging.getLogger("proxy.server")  # the name log lines have always had
BACKLOG = 1024


def bind_unix(path: os.PathLike[str], mode: int) -> socket.socket:
    """A listening unix socket created with ``mode``; a stale socket file is replaced."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise ListenError(
                f"cannot listen on unix:{path}: it exists and is not a socket "
                "(left untouched); choose another path"
            )
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(os.fspath(path))
            except (ConnectionRefusedError, FileNotFoundError):
                os.unlink(path)  # stale, from a run that crashed
            else:
                raise ListenError(
                    f"cannot listen on unix:{path}: another process is "
                    "serving on it; stop it or choose another path"
                )
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # umask makes the socket private from the moment it exists; chmod then widens it if asked.
    old = os.umask(0o177)
    try:
        sock.bind(os.fspath(path))
    except OSError as exc:
        sock.close()
        if exc.strerror is None:  # refused by Python itself, with no errno: a path too long
            raise ListenError(
                f"cannot listen on unix:{path} ({exc}); choose a shorter path"
            ) from None
        raise ListenError(
            f"cannot listen on unix:{path} ({exc.strerror}); check the "
            "directory exists and is writable"
        ) from None
    finally:
        os.umask(old)
    os.chmod(path, mode)
    return sock


class ProxyService:
    """The running proxy: upstream pool, credential watcher and listeners."""

    def __init__(
        self,
        settings: Settings,
        credentials: Credentials | Mapping[str, Credentials],
        *,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        reload_interval: float = 1.0,
        reuse_port: bool = False,
        activated: Sequence[Activated] = (),
    ) -> None:
        environ = os.environ if environ is None else environ
        self.settings = settings
        # ``credentials``: the one profile's, or every profile's by name (load_profiles).
        profiles = (
            {settings.profile: credentials} if isinstance(credentials, Credentials) else credentials
        )
        self.clients = Clients(settings, profiles, environ)
        self.watcher = next(iter(self.clients.watchers.values()))  # the first (or only) one
        self.skew = ClockSkew(
            settings.clock_skew_threshold, correct=not settings.no_clock_correction, clock=clock
        )
        # Through self: a reloaded config brings new clients (serve/reconfigure.py).
        self.metrics = Metrics(lambda: self.clients.reload_results(), lambda: self.skew.offset)
        self.state = ProxyState(
            settings=settings, clients=self.clients, skew=self.skew, metrics=self.metrics
        )
        self.limits = Limits(settings, self.metrics)
        self._descriptors: DescriptorWatch | None = None
        self.environ = environ  # the process's: credential commands and proxies read it
        self._reload_interval = reload_interval
        self._reuse_port = reuse_port
        self.activated = tuple(activated)  # sockets systemd passed: served instead of --listen
        self._retired: list[tuple[Pool, asyncio.TimerHandle]] = []  # named upstreams removed
        self.stopping = asyncio.Event()  # set to begin the graceful shutdown (serve waits on it)
        self.state.quit = self.quit
        self._runner: web.BaseRunner | None = None
        self._watching: dict[CredentialsWatcher, asyncio.Task[None]] = {}
        self._unix_inode: int | None = None
        self.addresses: list[str] = []

    async def start(self) -> list[str]:
        """Listen and serve; return the URLs listened on (the real port when 0 was asked)."""
        self.state.pool = create_pool(self.settings, self.environ)
        mounts = []
        for named in self.settings.upstreams:
            settings = settings_for(self.settings, named)
            pool = create_pool(settings, self.environ)  # its own connections and TLS
            mounts += [(mount, settings, pool) for mount in named.mounts]
        self.state.mounts = tuple(sorted(mounts, key=lambda mount: -len(mount[0])))
        if any(client.policy is not None for client in self.clients.all):
            # graphql-core is loaded now, not by the first request (about 0.1 s).
            from ..policy import graphql  # noqa: F401
        # auto_decompress off: a compressed body goes on as it came, with its Content-Encoding
        # (aiohttp would otherwise hand over the plain bytes under the coding's name).
        # aiohttp's keep-alive timer closes a connection idle between requests (also one whose
        # first head is late: hence not before the head's own deadline, which answers 408).
        server = ProxyServer(
            functools.partial(handle, self.state),
            state=self.state,
            limits=self.limits,
            access_log=None,
            auto_decompress=False,
            keepalive_timeout=max(self.settings.client_timeout, self.settings.header_timeout),
        )
        self._runner = web.ServerRunner(server, shutdown_timeout=self.settings.shutdown_timeout)
        await self._runner.setup()
        listen = self.settings.listen
        try:
            for site in self._sites(self._runner):
                await site.start()
        except OSError as exc:
            await self.stop()
            reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise ListenError(
                f"cannot listen on {listen} ({reason or exc}): stop whatever "
                "uses it or choose another address with --listen"
            ) from None
        except ListenError:
            await self.stop()
            raise
        # The listening sockets, to know the loop's reports about them (aiohttp keeps them in
        # its sites' servers without a public name).
        listeners = [
            sock.fileno()
            for site in self._runner.sites
            for sock in getattr(getattr(site, "_server", None), "sockets", ())
        ]
        self._descriptors = DescriptorWatch(self.limits, asyncio.get_running_loop(), listeners)
        log.debug("at most %d client connections", self.limits.max_connections)
        for watcher in self.clients.watchers.values():
            self.watch(watcher)
        if self.activated:
            self.addresses = [passed.address for passed in self.activated]
        elif listen.unix is not None:
            self.addresses = [f"unix:{listen.unix}"]
        else:
            self.addresses = [f"http://{Listen(a[0], a[1])}" for a in self._runner.addresses]
        return self.addresses

    def watch(self, watcher: CredentialsWatcher) -> None:
        """Keep a profile's key current, from now until the proxy stops (or the profile is
        no longer used: ``unwatch``)."""
        if watcher in self._watching:
            return  # watched already
        watcher.verify = verifier(self.state)  # a changed key is used once the API takes it
        self._watching[watcher] = asyncio.create_task(watcher.run(self._reload_interval))

    def retire(self, pool: Pool) -> None:
        """A pool no longer routed to: closed once requests in flight had --shutdown-timeout,
        or when the proxy stops, whichever comes first."""
        timer = asyncio.get_running_loop().call_later(self.settings.shutdown_timeout, pool.close)
        self._retired.append((pool, timer))

    def unwatch(self, watcher: CredentialsWatcher) -> None:
        task = self._watching.pop(watcher, None)
        if task is not None:
            task.cancel()

    def quit(self, why: str) -> None:
        """Begin the graceful shutdown, as SIGTERM does (``why`` is logged)."""
        if not self.stopping.is_set():
            log.info("%s: shutting down", why)
        self.stopping.set()

    def _sites(self, runner: web.BaseRunner) -> list[web.BaseSite]:
        """Where to serve: the sockets systemd passed, or --listen's (a unix socket made
        here, or a TCP address)."""
        if self.activated:
            return [web.SockSite(runner, p.sock, backlog=BACKLOG) for p in self.activated]
        listen = self.settings.listen
        if listen.unix is not None:
            sock = bind_unix(listen.unix, self.settings.socket_mode)
            self._unix_inode = os.stat(listen.unix).st_ino
            return [web.SockSite(runner, sock, backlog=BACKLOG)]
        reuse = self._reuse_port or None
        return [web.TCPSite(runner, listen.host, listen.port, backlog=BACKLOG, reuse_port=reuse)]

    async def _end_websockets(self, deadline: float) -> None:
        """Open WebSockets get the shutdown timeout too, then a close 1001 (going away)."""
        loop = asyncio.get_running_loop()
        while self.state.tunnels and loop.time() < deadline:
            await asyncio.sleep(min(0.05, deadline - loop.time()))
        for relay in list(self.state.tunnels):
            relay.going_away()

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (up to the shutdown timeout), close.

        One deadline for all: requests still in progress then are cut (a 503 where none of the
        answer was sent), WebSockets closed; aiohttp's own timeouts only back it up.
        """
        self.state.draining = True
        deadline = asyncio.get_running_loop().time() + self.settings.shutdown_timeout
        self.state.drain_deadline = deadline
        if self._descriptors is not None:
            self._descriptors.remove()
            self._descriptors = None
        closer = asyncio.ensure_future(self._end_websockets(deadline))
        try:
            if self._runner is not None:
                await self._runner.cleanup()
                self._runner = None
        finally:
            closer.cancel()
        for task in self._watching.values():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._watching.clear()
        if self.state.pool is not None:
            self.state.pool.close()
            self.state.pool = None
        for pool, timer in self._retired:
            timer.cancel()
            pool.close()
        self._retired.clear()
        for _, _, pool in self.state.mounts:
            pool.close()  # (a pool with two mounts is closed twice: harmless)
        self.state.mounts = ()
        unix = self.settings.listen.unix
        if unix is not None and self._unix_inode is not None:
            # Remove our socket only: not one another process has put there since.
            with contextlib.suppress(OSError):
                if os.stat(unix).st_ino == self._unix_inode:
                    os.unlink(unix)
            self._unix_inode = None
