"""--workers, a worker's side: what it starts with (the latest config, keys read now), its life."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from ..config.settings import Settings
from ..errors import ConfigError
from ..keys.credentials import Credentials
from ..ops.notify import Notifier
from .clients import load_profiles
from .reconfigure import prepare
from .workers import Profiles, run, serve

log = logging.getLogger("proxy")
EXIT_CONFIG = 2  # a configuration error: no restart mends it


class Latest:
    """The supervisor's copy of what a worker gets when it starts: the configuration as of the
    last SIGHUP (read and checked as the workers read and check it: one they refuse is refused
    here too), and each profile's key as last read here."""

    def __init__(
        self, settings: Settings, profiles: Profiles, reread: Callable[[], Settings] | None
    ) -> None:
        self.settings = settings
        self.profiles: Mapping[str, Credentials] = (
            {settings.profile: profiles} if isinstance(profiles, Credentials) else profiles
        )
        self.reread = reread
        self._reading = False
        self._again = False

    def sighup(self) -> None:
        """Read the configuration again, as every worker does on the same SIGHUP. Called from
        the supervisor's signal handler: a SIGHUP that comes while it reads (a handler run
        inside this one) has it read once more when done, so the last one wins."""
        reread = self.reread
        if reread is None:
            return
        if self._reading:
            self._again = True
            return
        self._reading = True
        try:
            self._again = True
            while self._again:
                self._again = False
                self._read(reread)
        finally:
            self._reading = False

    def _read(self, reread: Callable[[], Settings]) -> None:
        try:
            plan = prepare(self.settings, reread, self.profiles, os.environ)
        except Exception as exc:  # the workers log why (and keep their config, as here)
            log.debug("workers started from now on keep the previous config: %s", exc)
            return
        plan.close()  # (its pools were built to check them: each worker builds its own)
        self.settings, self.profiles = plan.settings, plan.profiles


class Listening(Notifier):
    """A worker's notifier: its first ``ready`` tells the parent, over a pipe, that this
    worker listens (the parent alone speaks to the service manager)."""

    def __init__(self, fd: int, worker: int) -> None:
        super().__init__({})
        self._fd: int | None = fd
        self._worker = worker

    def ready(self, status: str) -> None:
        if self._fd is None:
            return  # a reload's READY=1: the parent's own business
        with contextlib.suppress(OSError):
            os.write(self._fd, b"%d\n" % self._worker)
        os.close(self._fd)
        self._fd = None


def worker_main(
    latest: Latest,
    worker: int,
    again: bool,
    parent: int,
    shared: Path,
    notifier: Notifier,
) -> int:
    """A worker process's life, as its exit code. ``again``: it replaces one that died;
    ``parent``: the supervisor's pid, taken before the fork."""
    if os.getppid() != parent:  # the parent died while this one was being forked
        log.info("worker %d (pid %d): the parent process is gone: not started", worker, os.getpid())
        return 0
    settings, profiles, stale = latest.settings, latest.profiles, False
    try:
        if again:
            # The others' watchers have followed every key rotation since the start: the
            # parent's copy may be older. Read now; if that fails (a file half written), the
            # old copy serves, and the file is read again at the watcher's first look.
            try:
                profiles = load_profiles(settings, os.environ)
            except ConfigError as exc:
                log.warning(
                    "worker %d (pid %d): %s; starting with the keys read earlier",
                    worker, os.getpid(), exc,
                )  # fmt: skip
                stale = True
        run(
            serve(
                settings,
                profiles,
                worker,
                notifier,
                reread=latest.reread,
                metrics_dir=shared,
                parent=parent,
                stale_keys=stale,
            )
        )
    except ConfigError as exc:
        log.error("worker %d (pid %d): %s", worker, os.getpid(), exc)
        return EXIT_CONFIG
    except BaseException:
        log.exception("worker %d (pid %d) failed", worker, os.getpid())
        return 1
    return 0
