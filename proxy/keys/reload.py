"""Reloading the key: when the file changes, on SIGHUP, before it expires; the old one if bad."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

from ..errors import CredentialsError
from .credentials import ENVIRONMENT, PROCESS, Credentials, load_credentials

log = logging.getLogger("proxy.reload")  # the name log lines have always had

Stamp = tuple[int, int, int] | None
EXPIRY_MARGIN = 300.0  # a command's key is renewed this long before it expires
RETRY_AFTER = 10.0  # after a failed renewal of an expiring key, the next try
SETTLE = 0.2  # a changed file is read again this much later; it must read the same
VERIFY_TIMEOUT = 30.0
_UNSEEN: Stamp = (-1, -1, -1)  # no file's state: the next look sees a change


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
        self._refused: tuple[str, bytes] | None = None  # the key a refusal already re-ran for
        self._refused_at = -RETRY_AFTER
        self._retry_at = 0.0  # after a failed refresh of an expiring key, not before this
        self._loop: asyncio.AbstractEventLoop | None = None  # run()'s, for verify
        self.settle = SETTLE
        # Asks the API with a key: True accepted, False refused, None could not tell.
        self.verify: Callable[[Credentials], Coroutine[Any, Any, bool | None]] | None = None

    def forget_file(self) -> None:
        """The key in use was not read from the file as it is now (a worker started again
        with its parent's older copy): the next look reads the file, whatever its state."""
        self._stamp = _UNSEEN

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
        if self._expiring() and time.time() >= self._retry_at:
            return "the key expires soon"
        return None

    def _expiring(self) -> bool:
        """The key is within its renewal margin: 5 minutes, or half a shorter life."""
        expires = self.current.expires
        if expires is None:
            return False
        margin = min(EXPIRY_MARGIN, max(0.5, (expires - self.loaded_at) / 2))
        return time.time() >= expires - margin

    def request(self, why: str) -> None:
        """Reload soon, without blocking the caller (a signal handler, a request): a command
        may take seconds. Before ``run`` has started, reload now."""
        if self._wake is None:
            self.reload(why)
            return
        self._pending = why
        _wake_up(self._wake)

    def refused(self, signed_with: Credentials) -> None:
        """The API refused a signature made with the current key: a command's key may have
        been revoked or renewed since, so run the command once more (once per key)."""
        current = self.current
        if signed_with is not current:  # a late answer to a key already replaced: no news
            return
        key = (current.access_key_id, current.secret)
        now = time.monotonic()
        # Once per key, and not more often than RETRY_AFTER: every request of a client may
        # be refused (403 is also the answer to calls the key may not make).
        if current.store != PROCESS or key == self._refused or now < self._refused_at + RETRY_AFTER:
            return
        self._refused, self._refused_at = key, now
        self.request("the API refused the key")

    def reload(self, why: str) -> bool:
        """Load the credentials again now; on any problem keep the ones in use."""
        if not self.watches_file:
            log.info("credentials come from the environment; nothing to reload")
            return False
        try:
            new = self._settled()
            self._accepted(new)
        except Exception as exc:  # whatever went wrong, the key in use stays, and so does run()
            self.results["error"] += 1
            self._retry_at = time.time() + RETRY_AFTER
            # Only our own messages are shown: they never hold a value.
            message = str(exc) if isinstance(exc, CredentialsError) else type(exc).__name__
            if message != self._last_error:
                self._last_error = message
                log.error(
                    "credentials not reloaded: %s; still using key %s",
                    message,
                    self.current.masked_key_id,
                )
            return False
        self._last_error = ""
        self.results["success"] += 1
        self.loaded_at = time.time()
        unchanged = new == self.current
        if not unchanged:  # an equal key is not swapped: requests signed with it keep it
            self.current = new
        # Said either way: whoever asked (SIGHUP) learns that the reload happened.
        log.info(
            "credentials %s (%s): profile %s, key %s",
            "unchanged" if unchanged else "reloaded",
            why,
            new.profile,
            new.masked_key_id,
        )
        if self._expiring():  # the command gave a key that is as near its end as the last
            self._retry_at = time.time() + RETRY_AFTER
            log.warning(
                "credential_process of profile %s gave a key that expires in %.0f s; asking "
                "again in %.0f s",
                new.profile,
                (new.expires or 0) - time.time(),
                RETRY_AFTER,
            )
        return True

    def _settled(self) -> Credentials:
        """The credentials, once the file has stopped changing: read twice, SETTLE apart
        (a file rewritten in place can be read half written, and still parse)."""
        new = load_credentials(self._path, self._profile, self._environ)
        if new.store == PROCESS or self.settle <= 0:  # a command's output is whole
            return new
        before = _stamp(self._path)
        time.sleep(self.settle)  # off the event loop: reloads run in a thread
        if (
            _stamp(self._path) != before
            or load_credentials(self._path, self._profile, self._environ) != new
        ):
            raise CredentialsError(f"{self._path} is still being written; trying again")
        return new

    def _accepted(self, new: Credentials) -> None:
        """When the key changes and the proxy can ask the API, the API must accept the new
        key before it is used (not a refusal: an unreachable API keeps the old behaviour)."""
        current = self.current
        changed = (new.access_key_id, new.secret) != (current.access_key_id, current.secret)
        # A command's output comes whole: only a file can be caught half written.
        if not changed or new.store == PROCESS or self.verify is None or self._loop is None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # in a thread: the loop can run the check
            pass
        else:
            return  # on the loop itself (a reload before run() started): cannot wait for it
        check = asyncio.run_coroutine_threadsafe(self.verify(new), self._loop)
        if check.result(timeout=VERIFY_TIMEOUT) is False:
            raise CredentialsError(
                f"{self._path}, profile [{new.profile}]: the API refused a request signed "
                f"with the new key {new.masked_key_id}; it is not used"
            )

    async def run(self, interval: float = 1.0) -> None:
        """Look at the file (and the key's expiry) at most once per ``interval`` seconds, and
        reload at once when asked, until cancelled. Loading runs in a thread: reading the
        keychain or running a command must not hold up requests."""
        if not self.watches_file:
            return
        loop = self._loop = asyncio.get_running_loop()
        try:
            while True:
                # A future and a timer, not wait_for: no task is left behind between looks.
                self._wake = wake = loop.create_future()
                timer = loop.call_later(interval, _wake_up, wake)
                try:
                    await wake
                finally:
                    timer.cancel()
                # The file's status is looked at off the loop too: a slow file system.
                why, self._pending = self._pending or await asyncio.to_thread(self._due), None
                if why is not None:
                    await asyncio.to_thread(self.reload, why)
        finally:
            self._wake = None
