"""Credential rotation: reload the credentials file when it changes, keep the old key if bad."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from ..errors import CredentialsError
from .credentials import ENVIRONMENT, Credentials, load_credentials

log = logging.getLogger("proxy.reload")  # the name log lines have always had

Stamp = tuple[int, int, int] | None


def _stamp(path: Path) -> Stamp:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class CredentialsWatcher:
    """Holds the credentials in use; swaps them for the file's new ones when it changes.

    A file that is half-written or invalid is reported (file and problem, never values) and
    the previous key stays in use, so a rotation never fails a request.
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

    @property
    def watches_file(self) -> bool:
        return self.current.source != ENVIRONMENT

    def check(self) -> None:
        """Reload if the file's modification time, size or inode changed since last look."""
        stamp = _stamp(self._path)
        if stamp != self._stamp:
            self._stamp = stamp
            self.reload("the file changed")

    def reload(self, why: str) -> bool:
        """Load the credentials again now; on any problem keep the ones in use."""
        if not self.watches_file:
            log.info("credentials come from the environment; nothing to reload")
            return False
        try:
            new = load_credentials(self._path, self._profile, self._environ)
        except CredentialsError as exc:
            self.results["error"] += 1
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
        """Look at the file at most once per ``interval`` seconds, until cancelled."""
        if not self.watches_file:
            return
        while True:
            await asyncio.sleep(interval)
            self.check()
