"""Reloading the key: when the file changes, on SIGHUP, before it expires; the old one if bad."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from ..errors import CredentialsError
from .credentials import ENVIRONMENT, PROCESS, Credentials, load_credentials

log = logging.getLogger("proxy.reload")  # the name log lines have always had

Stamp = tuple[int, int, int] | None
EXPIRY_MARGIN = 300.0  # a command's key is renewed this long before it expires
RETRY_AFTER = 10.0  # after a failed renewal of an expiring key, the next try


def _stamp(path: Path) -> Stamp:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _wake_up(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class CredentialsWatcher:
    """Holds the credentials in use; swaps them for new ones when the file changes, on
    request (SIGHUP), before a ``credential_process`` key expires, and once after the API
    refuses a signature made with a command's key.

    A file that is half-written or invalid, or a command that fails, is reported (file and
    problem, never values) and the previous key stays in use, so a rotation never fails a
    request.
    """

    def __init__(
        self, initial: Credentials, path: Path, profile: str, environ: Mapping[str, str]
    ) -> None:
        self.current = initial
        self.loaded_at = time.time()
        self.results: Counter[str] = Counter()
        self._path, self._profile, self._environ = path, profile, dict(environ)
        self._stamp = _stamp(path)
        self._last_error = ""
        self._wake: asyncio.Future[None] | None = None  # what run() waits on, while it runs
        self._pending: str | None = None  # why a reload was asked for
        self._refused: Credentials | None = None  # the key a refusal already re-ran for
        self._retry_at = 0.0  # after a failed refresh of an expiring key, not before this

    @property
    def watches_file(self) -> bool:
        return self.current.source != ENVIRONMENT

    def check(self) -> None:
        """Reload if the file's modification time, size or inode changed since last look."""
        why = self._due()
        if why is not None:
            self.reload(why)

    def _due(self) -> str | None:
        """Why a reload is due now, if one is."""
        stamp = _stamp(self._path)
        if stamp != self._stamp:
            self._stamp = stamp
            return "the file changed"
        expires = self.current.expires
        if expires is not None:
            now = time.time()
            # Renew ahead of time: 5 minutes before, or halfway through a shorter life.
            margin = min(EXPIRY_MARGIN, max(0.5, (expires - self.loaded_at) / 2))
            if now >= expires - margin and now >= self._retry_at:
                return "the key expires soon"
        return None

    def request(self, why: str) -> None:
        """Reload soon, without blocking the caller (a signal handler, a request): a command
        may take seconds. Before ``run`` has started, reload now."""
        if self._wake is None:
            self.reload(why)
            return
        self._pending = why
        _wake_up(self._wake)

    def refused(self) -> None:
        """The API refused a signature made with the current key: a command's key may have
        been revoked or renewed since, so run the command once more (once per key)."""
        if self.current.store == PROCESS and self._refused is not self.current:
            self._refused = self.current
            self.request("the API refused the key")

    def reload(self, why: str) -> bool:
        """Load the credentials again now; on any problem keep the ones in use."""
        if not self.watches_file:
            log.info("credentials come from the environment; nothing to reload")
            return False
        try:
            new = load_credentials(self._path, self._profile, self._environ)
        except CredentialsError as exc:
            self.results["error"] += 1
            self._retry_at = time.time() + RETRY_AFTER
            if str(exc) != self._last_error:
                self._last_error = str(exc)
                log.error(
                    "credentials not reloaded: %s; still using key %s",
                    exc,
                    self.current.masked_key_id,
                )
            return False
        self._last_error = ""
        self.results["success"] += 1
        self.loaded_at = time.time()
        if new != self.current:
            log.info(
                "credentials reloaded (%s): profile %s, key %s", why, new.profile, new.masked_key_id
            )
            self.current = new
        return True

    async def run(self, interval: float = 1.0) -> None:
        """Look at the file (and the key's expiry) at most once per ``interval`` seconds, and
        reload at once when asked, until cancelled. Loading runs in a thread: reading the
        keychain or running a command must not hold up requests."""
        if not self.watches_file:
            return
        loop = asyncio.get_running_loop()
        try:
            while True:
                # A future and a timer, not wait_for: no task is left behind between looks.
                self._wake = wake = loop.create_future()
                timer = loop.call_later(interval, _wake_up, wake)
                try:
                    await wake
                finally:
                    timer.cancel()
                why, self._pending = self._pending or self._due(), None
                if why is not None:
                    await asyncio.to_thread(self.reload, why)
        finally:
            self._wake = None
