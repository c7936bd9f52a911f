"""Running the server: one process until a signal, or several on one SO_REUSEPORT port."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .. import __version__
from ..config.settings import Settings
from ..keys.credentials import Credentials
from ..ops.notify import Notifier
from ..ops.shared import SharedMetrics
from .activation import Activated
from .clients import Client
from .reconfigure import reconfigure
from .server import ProxyService

T = TypeVar("T")
PUBLISH = 1.0  # seconds between two publications of a worker's metrics
log = logging.getLogger("proxy")
# One profile's credentials, or every profile's by name (clients.load_profiles).
Profiles = Credentials | Mapping[str, Credentials]


async def serve(
    settings: Settings,
    credentials: Profiles,
    worker: int = 0,
    notifier: Notifier | None = None,
    activated: Sequence[Activated] = (),
    reread: Callable[[], Settings] | None = None,
    metrics_dir: Path | None = None,
    parent: int | None = None,
    stale_keys: bool = False,
) -> None:
    """Run the proxy until SIGINT or SIGTERM, then let in-flight requests finish.

    ``worker`` is this process's number (1 to --workers) when there are several, else 0;
    ``notifier`` tells the service manager (systemd) how it goes; ``activated``: the sockets
    it passed, served instead of --listen; ``reread`` reads the configuration again (SIGHUP);
    ``metrics_dir``: where the workers publish their numbers for one another's scrapes;
    ``parent``: a worker's parent's pid, taken before the fork (when it is gone, so is the
    service); ``stale_keys``: the keys were not read from the files as they are now (the
    watchers read them at their first look).
    """
    service = ProxyService(
        settings, credentials, reuse_port=settings.workers > 1, activated=activated
    )
    if stale_keys:
        for watcher in service.clients.watchers.values():
            watcher.forget_file()
    notifier = notifier or Notifier({})
    stop = service.stopping
    loop = asyncio.get_running_loop()
    if parent is not None:
        # One worker asked to quit (POST /-/quitquitquit) stops the service: the parent is
        # told, and tells every worker. (Its pid as forked: after its death getppid() is
        # whichever process adopted the worker, not one to signal.)
        def quit_all(why: str) -> None:
            service.quit(why)
            if os.getppid() == parent:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(parent, signal.SIGTERM)

        service.state.quit = quit_all
    status = ""
    in_turn = asyncio.Lock()  # one reload at a time, in the order the signals came
    reloads: set[asyncio.Task[None]] = set()

    async def reloaded() -> None:
        async with in_turn:
            if stop.is_set():
                return
            notifier.reloading()
            try:
                watchers = set(service.clients.watchers.values())
                if reread is not None:
                    await reconfigure(service, reread)  # whole and valid, or not at all
                # Each key is read again in the background; a new profile's was just read.
                for watcher in service.clients.watchers.values():
                    if watcher in watchers:
                        watcher.request("SIGHUP")
            finally:
                # The manager must not be left waiting in "reloading"; after STOPPING=1 it
                # hears nothing more of the reload.
                if not stop.is_set():
                    notifier.ready(status)

    early = False  # a SIGHUP came before the proxy listened

    def reload() -> None:
        nonlocal early
        if stop.is_set():
            log.info("SIGHUP while shutting down: ignored, nothing is reloaded")
            return
        if not service.addresses:
            # (A worker started again may have been given the config a moment before it.)
            log.info("SIGHUP before the proxy listens: the config is read again once it does")
            early = True
            return
        task = loop.create_task(reloaded())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    # Before the start-up line: whoever reads it may signal at once, and the default action
    # of SIGTERM would end the process without draining (exit -15 instead of 0).
    # Windows has no add_signal_handler: there Ctrl+C raises KeyboardInterrupt instead.
    with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGHUP, reload)
        # A worker is forked with SIGHUP blocked (supervisor.py): one sent since, now handled.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
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
    if early:
        reload()
    pings = asyncio.create_task(_watchdog(notifier)) if notifier.watchdog else None
    if metrics_dir is not None:
        shared = SharedMetrics(metrics_dir, worker, service.metrics)
        service.state.scrape = shared.render
        publishing = asyncio.create_task(_publish(shared, service, parent))
    try:
        await stop.wait()
    finally:
        notifier.stopping()
        for task in list(reloads):  # a reload still reading the file is not applied
            task.cancel()
        await asyncio.gather(*reloads, return_exceptions=True)
        log.info(
            "shutting down: finishing requests in flight (up to %gs)", settings.shutdown_timeout
        )
        await service.stop()
        if pings is not None:
            pings.cancel()
        if metrics_dir is not None:
            publishing.cancel()
        log.info("stopped")


async def _publish(shared: SharedMetrics, service: ProxyService, parent: int | None) -> None:
    """This worker's numbers for the others' scrapes, about once a second; and a worker whose
    parent is gone (killed: it could not stop them) stops too, not to serve on alone."""
    while True:
        shared.publish()
        if parent is not None and os.getppid() != parent:
            service.quit("the parent process is gone")
            return
        await asyncio.sleep(PUBLISH)


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
