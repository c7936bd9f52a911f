"""Running the server: one process until a signal, or several on one SO_REUSEPORT port."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
import socket
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from .. import __version__
from ..config.addresses import Listen
from ..config.settings import Settings
from ..errors import ConfigError
from ..keys.credentials import Credentials
from ..ops.notify import Notifier
from .activation import Activated, activated, check_exposure
from .clients import Client
from .server import ProxyService

T = TypeVar("T")
log = logging.getLogger("proxy")
# One profile's credentials, or every profile's by name (clients.load_profiles).
Profiles = Credentials | Mapping[str, Credentials]


def serve_main(settings: Settings, credentials: Profiles) -> int:
    """``serve``: on the sockets systemd passed, or --listen; one process or --workers; the
    service manager told when it is ready, reloading and stopping."""
    notifier = Notifier(os.environ)
    sockets = activated(os.environ)
    check_exposure(settings, sockets)
    if settings.workers > 1:
        if sockets:
            raise ConfigError(
                "--workers above 1 cannot share sockets passed by systemd: serve them with one "
                "process (--workers 1), or let each worker listen on --listen"
            )
        return serve_workers(settings, credentials, notifier)
    run(serve(settings, credentials, notifier=notifier, activated=sockets))
    return 0


async def serve(
    settings: Settings,
    credentials: Profiles,
    worker: int = 0,
    notifier: Notifier | None = None,
    activated: Sequence[Activated] = (),
) -> None:
    """Run the proxy until SIGINT or SIGTERM, then let in-flight requests finish.

    ``worker`` is this process's number (1 to --workers) when there are several, else 0;
    ``notifier`` tells the service manager (systemd) how it goes; ``activated``: the sockets
    it passed, served instead of --listen.
    """
    service = ProxyService(
        settings, credentials, reuse_port=settings.workers > 1, activated=activated
    )
    notifier = notifier or Notifier({})
    stop = service.stopping
    loop = asyncio.get_running_loop()
    if worker:
        # One worker asked to quit (POST /-/quitquitquit) stops the service: the parent is
        # told, and tells every worker.
        def quit_all(why: str) -> None:
            service.quit(why)
            with contextlib.suppress(ProcessLookupError):
                os.kill(os.getppid(), signal.SIGTERM)

        service.state.quit = quit_all
    status = ""

    def reload() -> None:
        notifier.reloading()
        service.clients.reload("SIGHUP")  # each key is read again in the background
        notifier.ready(status)

    # Before the start-up line: whoever reads it may signal at once, and the default action
    # of SIGTERM would end the process without draining (exit -15 instead of 0).
    # Windows has no add_signal_handler: there Ctrl+C raises KeyboardInterrupt instead.
    with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGHUP, reload)
    addresses = await service.start()
    status = f"listening on {', '.join(addresses)}, forwarding to {settings.upstream}"
    log.info(
        "remoteit-proxy %s%s listening on %s, forwarding to %s, %s (%s)%s",
        __version__,
        f" worker {worker}/{settings.workers} (pid {os.getpid()})" if worker else "",
        ", ".join(addresses) + (" (sockets from systemd)" if activated else ""),
        f"{settings.upstream}{_named(settings)}",
        "; ".join(_describe(client) for client in service.clients.all),
        type(asyncio.get_running_loop()).__module__.partition(".")[0],
        f"; config {settings.config}" if settings.config is not None else "",
    )
    if settings.token is None and not settings.listen.is_loopback:
        log.warning(
            "--allow-unauthenticated: anyone who can reach %s can use your Remote.It account",
            settings.listen,
        )
    notifier.ready(status)
    pings = asyncio.create_task(_watchdog(notifier)) if notifier.watchdog else None
    try:
        await stop.wait()
    finally:
        notifier.stopping()
        log.info(
            "shutting down: finishing requests in flight (up to %gs)", settings.shutdown_timeout
        )
        await service.stop()
        if pings is not None:
            pings.cancel()
        log.info("stopped")


async def _watchdog(notifier: Notifier) -> None:
    """Ping at half the manager's limit while the event loop turns (``WatchdogSec=``): a
    loop stuck for longer gets the service restarted."""
    assert notifier.watchdog is not None
    while True:
        notifier.ping()
        await asyncio.sleep(notifier.watchdog)


def _named(settings: Settings) -> str:
    """The named upstreams in the start-up line: each one's origin and where clients reach it."""
    return "".join(
        f" and {named.upstream} at {' and '.join(named.mounts)}" for named in settings.upstreams
    )


def _describe(client: Client) -> str:
    """A client in the start-up line: never a secret, the key id masked."""
    creds = client.credentials.current
    text = (
        f"profile {creds.profile}, key {creds.masked_key_id}, "
        f"developer_key={'true' if creds.developer_key is not None else 'false'}"
    )
    if client.policy is not None and client.policy.read_only:
        text += ", read-only"
    return f"client {client.name}: {text}" if client.name else text


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run``, on uvloop when it is installed (``pip install 'remoteit-proxy[fast]'``)."""
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return asyncio.run(main)
    result: T = uvloop.run(main)
    return result


def _probe_free(listen: Listen) -> None:
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((listen.host, listen.port))


def _reserve_port(listen: Listen) -> tuple[socket.socket, int]:
    """Bind (without listening) to learn which port 0 means; kept open so it stays ours."""
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    holder = socket.socket(family, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind((listen.host, listen.port))
    return holder, int(holder.getsockname()[1])


def serve_workers(
    settings: Settings, credentials: Profiles, notifier: Notifier | None = None
) -> int:
    """Fork ``--workers`` processes that each listen on the same port with SO_REUSEPORT, so
    the kernel spreads connections over them; forward signals to them; wait for them all.

    Each worker has its own upstream pool, credential watcher and metrics (a scrape of
    /-/metrics sees the worker that answered it).
    """
    if not hasattr(os, "fork") or not hasattr(socket, "SO_REUSEPORT"):
        raise ConfigError("--workers above 1 needs Linux or another system with SO_REUSEPORT")
    if settings.listen.unix is not None:
        raise ConfigError("--workers above 1 needs a TCP --listen address, not a unix socket")
    try:
        if settings.listen.port:
            # SO_REUSEPORT would let the workers join another program already on the port.
            _probe_free(settings.listen)
        holder, port = _reserve_port(settings.listen)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {settings.listen} ({exc.strerror}): stop whatever uses it or "
            "choose another address with --listen"
        ) from None
    settings = replace(settings, listen=Listen(settings.listen.host, port))
    children: dict[int, int] = {}  # pid: worker number
    for worker in range(1, settings.workers + 1):
        pid = os.fork()
        if pid == 0:  # a worker: serve until signalled, then leave without the parent's cleanup
            holder.close()
            code = 0
            try:
                run(serve(settings, credentials, worker))
            except ConfigError as exc:
                log.error("worker %d (pid %d): %s", worker, os.getpid(), exc)
                code = 2
            except BaseException:
                log.exception("worker %d (pid %d) failed", worker, os.getpid())
                code = 1
            os._exit(code)
        children[pid] = worker

    notifier = notifier or Notifier({})
    # The workers were started: each takes requests once it listens (a moment from now).
    notifier.ready(f"{settings.workers} workers on {settings.listen}")

    def relay(signum: int, _frame: object) -> None:
        if signum in (signal.SIGINT, signal.SIGTERM):
            notifier.stopping()
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, relay)
    worst, running = 0, set(children)
    while running:
        pid, status = os.wait()
        running.discard(pid)
        code = os.waitstatus_to_exitcode(status)
        if code != 0 and worst == 0:
            # One worker failing stops the others: a half-sized proxy would go unnoticed.
            log.error(
                "worker %d (pid %d) exited with %d; stopping the others", children[pid], pid, code
            )
            relay(signal.SIGTERM, None)
        worst = worst or code
    holder.close()
    return worst
