"""Several processes on one port: forked workers, restarted when one dies, told of signals."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ..config.addresses import Listen
from ..config.settings import Settings
from ..errors import ConfigError
from ..ops.notify import Notifier
from .activation import activated, check_exposure
from .forked import EXIT_CONFIG, Latest, Listening, worker_main
from .workers import Profiles, run, serve

log = logging.getLogger("proxy")
# A worker that dies is started again after a pause that grows while it keeps dying early
# (within EARLY seconds of its start); after GIVE_UP early deaths in a row the service stops
# with its exit code, as a broken start would only repeat.
BACKOFF = (0.5, 1.0, 2.0, 5.0)
EARLY = 10.0
GIVE_UP = 4
# (By name: Windows has no SIGHUP, and this module is loaded there too.)
_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


def serve_main(
    settings: Settings, credentials: Profiles, reread: Callable[[], Settings] | None = None
) -> int:
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
        return serve_workers(settings, credentials, notifier, reread)
    run(serve(settings, credentials, notifier=notifier, activated=sockets, reread=reread))
    return 0


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
    settings: Settings,
    credentials: Profiles,
    notifier: Notifier | None = None,
    reread: Callable[[], Settings] | None = None,
) -> int:
    """Fork ``--workers`` processes that each listen on the same port with SO_REUSEPORT, so
    the kernel spreads connections over them; forward signals to them; wait for them all.

    A worker that dies is started again (see BACKOFF), with the configuration as of the last
    SIGHUP and the keys as the files hold them then. Each worker has its own upstream pool,
    credential watcher and metrics.
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
    latest = Latest(settings, credentials, reread)  # what a worker started later gets
    parent = os.getpid()  # the workers' parent: when their getppid() differs, it is gone
    # The workers' metrics, added up by whichever answers a scrape.
    shared = Path(tempfile.mkdtemp(prefix="remoteit-proxy-metrics-"))
    children: dict[int, int] = {}  # pid: worker number
    started: dict[int, float] = {}  # worker number: when its process started
    early: dict[int, int] = {}  # worker number: early deaths in a row

    stopping = False
    notifier = notifier or Notifier({})
    # Each worker writes its number here once it listens: the manager hears READY=1 when all
    # of them do, not when they were merely forked.
    listening, says_listening = os.pipe()

    def start(worker: int) -> None:
        # Signals wait while a worker is forked and registered: one arriving in between would
        # miss it (and a stop begun meanwhile would start a worker nobody stops).
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            if stopping:
                return
            again = worker in started
            pid = os.fork()
            if pid == 0:  # a worker: serve until signalled, then leave without the cleanup
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                # Its own handlers come with serve(), which lets a SIGHUP through then: one
                # sent meanwhile waits (the config it was given may predate it), none kills it.
                signal.pthread_sigmask(signal.SIG_SETMASK, {*blocked, signal.SIGHUP})
                holder.close()
                os.close(listening)
                told = Listening(says_listening, worker)
                os._exit(worker_main(latest, worker, again, parent, shared, told))
            children[pid], started[worker] = worker, time.monotonic()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def relay(signum: int, _frame: object) -> None:
        nonlocal stopping
        if signum in (signal.SIGINT, signal.SIGTERM):
            stopping = True
            notifier.stopping()
        elif stopping:  # SIGHUP
            log.info("SIGHUP while shutting down: ignored, nothing is reloaded")
            return
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)
        if signum == signal.SIGHUP:
            latest.sighup()  # for the workers started later

    for signum in _SIGNALS:
        signal.signal(signum, relay)

    def announce() -> None:
        """READY=1 once every worker has said it listens (a worker started again counts)."""
        heard: set[bytes] = set()
        pending = b""
        while len(heard) < settings.workers:
            try:
                chunk = os.read(listening, 512)
            except OSError:
                return
            if not chunk:
                return
            *numbers, pending = (pending + chunk).split(b"\n")
            heard.update(numbers)
        if not stopping:
            notifier.ready(f"{settings.workers} workers listening on {settings.listen}")
        # Workers started again later write too: drained, so none ever blocks on a full pipe.
        with contextlib.suppress(OSError):
            while os.read(listening, 512):
                pass
            os.close(listening)

    threading.Thread(target=announce, daemon=True).start()
    for worker in range(1, settings.workers + 1):
        start(worker)
    if notifier.watchdog:
        # The manager's watchdog hears from the parent, the one process it knows: pinged while
        # the parent supervises (a thread: the parent waits on its children).
        threading.Thread(target=_pings, args=(notifier,), daemon=True).start()
    worst = 0
    while children:
        pid, status = os.wait()
        worker, code = children.pop(pid), os.waitstatus_to_exitcode(status)
        if stopping:
            worst = worst or (code if code > 0 else 0)
            continue
        # Not asked to stop: it died. Started again, unless it cannot start at all.
        lived = time.monotonic() - started[worker]
        early[worker], pause = after_death(code, lived, early.get(worker, 0))
        if pause is None:
            why = "a configuration error" if code == EXIT_CONFIG else "it keeps dying at start"
            log.error(
                "worker %d (pid %d) exited with %d: %s; stopping the service", worker, pid,
                code, why,
            )  # fmt: skip
            worst = code if code > 0 else 1
            relay(signal.SIGTERM, None)
            continue
        log.warning(
            "worker %d (pid %d) exited with %d after %.1f s; starting it again in %g s",
            worker, pid, code, lived, pause,
        )  # fmt: skip
        deadline = time.monotonic() + pause
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.05)  # short naps: a SIGTERM meanwhile is acted on at once
        if not stopping:
            start(worker)
    holder.close()
    os.close(says_listening)  # the reader sees the end and leaves
    shutil.rmtree(shared, ignore_errors=True)
    return worst


def after_death(code: int, lived: float, early: int) -> tuple[int, float | None]:
    """For a worker that died with ``code`` after ``lived`` seconds, having died early
    ``early`` times in a row before: the new count of early deaths, and the pause before it
    is started again (None: do not, stop the service)."""
    early = early + 1 if lived < EARLY else 1
    if code == EXIT_CONFIG or early >= GIVE_UP:
        return early, None
    return early, BACKOFF[min(early, len(BACKOFF)) - 1]


def _pings(notifier: Notifier) -> None:
    assert notifier.watchdog is not None
    while True:
        notifier.ping()
        time.sleep(notifier.watchdog)
