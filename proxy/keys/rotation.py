"""Rotating a profile's access key through the API: create, verify, store, wait, disable."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from ..errors import AccountError, ConfigError, ProxyError
from .credentials import ENVIRONMENT, FILE, PROCESS, Credentials, load_credentials
from .credfile import CredentialsFile, Profile
from .profiles import ACCESS_KEY_ID, DEVELOPER_API_KEY
from .store import forget_old, store_of, write_key
from .values import decode_secret, mask

MAX_KEYS = 2  # the account's limit
VERIFY_FOR = 10.0  # seconds a new key may take to be accepted everywhere
DEFAULT_GRACE = 10.0  # longer than a running proxy takes to see the file change (1 s)


@dataclass(frozen=True)
class KeyInfo:
    """One access key of the account, as the API lists it (never its secret)."""

    key: str
    enabled: bool
    created: str | None
    last_used: str | None


class Account(Protocol):
    """The calls rotation makes, each signed with the key given."""

    async def email(self, creds: Credentials) -> str: ...
    async def keys(self, creds: Credentials) -> list[KeyInfo]: ...
    async def create_key(self, creds: Credentials) -> tuple[str, str]: ...
    async def set_enabled(self, creds: Credentials, key: str, enabled: bool) -> None: ...
    async def delete_key(self, creds: Credentials, key: str) -> None: ...


@dataclass
class Rotation:
    """One rotation of profile ``profile`` of the file at ``path``; ``say`` reports progress."""

    api: Account
    path: Path
    profile: str
    environ: Mapping[str, str] = field(repr=False)  # it may hold R3_SECRET_ACCESS_KEY
    say: Callable[[str], None] = print
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    verify_for: float = VERIFY_FOR

    async def run(self, grace: float = DEFAULT_GRACE, delete_old: bool = False) -> str:
        """Rotate; the new key's masked id. Any failure before the new key is stored leaves
        the account and the file as they were (a new key is deleted again)."""
        old = self._old()
        file = CredentialsFile.read(self.path)
        name = file.find(old.profile) or old.profile
        values = file.profiles[name]
        self._alone(file, name, old)
        email = await self.api.email(old)
        where = "the OS keychain" if store_of(values) != FILE else str(self.path)
        self.say(f"Rotating profile [{name}] of {email}: key {old.masked_key_id} (in {where}).")
        self._room(old, await self.api.keys(old))
        key_id, secret = await self.api.create_key(old)
        developer_key = values.get(DEVELOPER_API_KEY.lower()) or None
        profile = Profile(key_id, secret, developer_key, email, store_of(values))
        new = await self._store(old, file, name, profile)
        self.say(f"Stored it in profile [{name}] ({where}).")
        if grace > 0:
            self.say(f"Waiting {grace:g} s for running proxies to pick up the new key...")
            await self.sleep(grace)
        old_id = old.access_key_id
        try:
            await self.api.set_enabled(new, old_id, False)
        except AccountError as exc:
            raise AccountError(
                f"the new key {new.masked_key_id} is stored and works, but disabling the old "
                f"key {old.masked_key_id} failed ({exc.message}); disable it in the Remote.It "
                "portal (Account, Access keys), or run rotate again later"
            ) from None
        self.say(f"Disabled the old key {old.masked_key_id}.")
        try:
            forget_old(values, self.path)  # a disabled key's secret is of no use to anyone
        except ProxyError as exc:
            self.say(f"Note: the old key's keychain entry was left in place ({exc}).")
        if delete_old:
            try:
                await self.api.delete_key(new, old_id)
            except AccountError as exc:
                raise AccountError(
                    f"the old key {old.masked_key_id} is disabled, but deleting it failed "
                    f"({exc.message}); delete it in the Remote.It portal"
                ) from None
            self.say(f"Deleted the old key {old.masked_key_id}.")
        return new.masked_key_id

    async def _store(
        self, old: Credentials, file: CredentialsFile, name: str, profile: Profile
    ) -> Credentials:
        """Verify the new key and store it; on any failure or interruption until it is stored,
        delete it again (signed with the old key), so that nothing is left half done."""
        created = profile.access_key_id
        try:
            secret = decode_secret(profile.secret, "the secret of the new key the API gave")
            new = replace(old, access_key_id=created, secret=secret)
            self.say(f"Created key {new.masked_key_id}.")
            await self._verify(new)
            try:
                write_key(file, name, profile)
            except ProxyError as exc:
                raise AccountError(f"the new key could not be stored: {exc}") from None
        except BaseException as exc:
            # Shielded: a second Ctrl+C must not leave the new key behind either.
            ending = await asyncio.shield(self._undo(old, created))
            if isinstance(exc, ProxyError):
                raise AccountError(f"{exc}{ending}") from None
            self.say(f"Interrupted{ending}.")
            raise
        return new

    def _alone(self, file: CredentialsFile, name: str, old: Credentials) -> None:
        """Refuse when other profiles of the file hold the same key: they would be left with a
        disabled one."""
        others = [
            other
            for other, values in file.profiles.items()
            if other != name and values.get(ACCESS_KEY_ID.lower()) == old.access_key_id
        ]
        if others:
            listed = ", ".join(f"[{other}]" for other in others)
            raise ConfigError(
                f"profiles {listed} of {self.path} hold the same key {old.masked_key_id} as "
                f"[{name}] and would be left with a disabled key: remove them, or point them "
                f"at [{name}] with --profile, then run rotate again"
            )

    def _old(self) -> Credentials:
        old = load_credentials(self.path, self.profile, self.environ)
        if old.store == ENVIRONMENT:
            raise ConfigError(
                "R3_ACCESS_KEY_ID and R3_SECRET_ACCESS_KEY are set in the environment: rotate "
                f"replaces the key of a profile in {self.path}; unset them, or rotate the "
                "key where they come from"
            )
        if old.store == PROCESS:
            raise ConfigError(
                f"profile [{old.profile}] gets its key from credential_process: rotate the key "
                "where that command reads it"
            )
        return old

    def _room(self, old: Credentials, keys: list[KeyInfo]) -> None:
        """Refuse before creating anything when the account has no room for another key."""
        if len(keys) < MAX_KEYS:
            return
        others = [k for k in keys if k.key != old.access_key_id] or keys
        described = "; ".join(
            f"{mask(k.key)}, {'enabled' if k.enabled else 'disabled'}, last used "
            f"{k.last_used or 'never'}"
            for k in others
        )
        raise AccountError(
            f"the account already has {len(keys)} access keys, the most it allows, so no new "
            f"key was created. Besides this profile's {old.masked_key_id} it has: {described}. "
            "Delete the one you no longer use (Remote.It portal: Account, Access keys), then "
            "run rotate again"
        )

    async def _verify(self, new: Credentials) -> None:
        """The API accepts the new key: asked again for a few seconds while it propagates."""
        deadline = time.monotonic() + self.verify_for
        wait = 0.25
        while True:
            try:
                await self.api.email(new)
            except AccountError as exc:
                if time.monotonic() + wait > deadline:
                    raise AccountError(
                        f"the API did not accept the new key {new.masked_key_id} within "
                        f"{self.verify_for:g} s ({exc.message})"
                    ) from None
                await self.sleep(wait)
                wait = min(wait * 2, 2.0)
            else:
                self.say(f"The API accepts {new.masked_key_id}.")
                return

    async def _undo(self, old: Credentials, created: str) -> str:
        """Delete the new key again (signed with the old one); the message's ending."""
        try:
            await self.api.delete_key(old, created)
        except Exception as exc:
            why = exc.message if isinstance(exc, AccountError) else type(exc).__name__
            return (
                f"; deleting the new key {mask(created)} again failed too ({why}): delete it "
                f"in the Remote.It portal. Profile [{old.profile}] still holds "
                f"{old.masked_key_id}"
            )
        return (
            f"; the new key {mask(created)} was deleted again and profile "
            f"[{old.profile}] still holds {old.masked_key_id}, which stays enabled"
        )
