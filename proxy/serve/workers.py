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
) -> None:
    """Run the proxy until SIGINT or SIGTERM, then let in-flight requests finish.

    ``worker`` is this process's number (1 to --workers) when there are several, else 0;
    ``notifier`` tells the service manager (systemd) how it goes; ``activated``: the sockets
    it passed, served instead of --listen; ``reread`` reads the configuration again (SIGHUP);
    ``metrics_dir``: where the workers publish their numbers for one another's scrapes.
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
        if not service.addresses:
            log.info("SIGHUP before the proxy listens: nothing to reload yet")
            return
        notifier.reloading()
        try:
            if reread is not None:
                reconfigure(service, reread)  # whole and valid, or not at all
            service.clients.reload("SIGHUP")  # each key is read again in the background
        finally:
            notifier.ready(status)  # the manager must not be left waiting in "reloading"

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
    if metrics_dir is not None:
        shared = SharedMetrics(metrics_dir, worker, service.metrics)
        service.state.scrape = shared.render
        publishing = asyncio.create_task(_publish(shared, service))
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
        if metrics_dir is not None:
            publishing.cancel()
        log.info("stopped")


async def _publish(shared: SharedMetrics, service: ProxyService) -> None:
    """This worker's numbers for the others' scrapes, about once a second; and a worker whose
    parent is gone (killed: it could not stop them) stops too, not to serve on alone."""
    parent = os.getppid()
    while True:
        shared.publish()
        if os.getppid() != parent:
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
