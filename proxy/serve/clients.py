"""Clients: who is asking (by token), with which profile's key and under which policy."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from ..config.settings import Settings
from ..errors import CredentialsError
from ..keys.credentials import Credentials, load_credentials
from ..keys.profiles import ACCESS_KEY_ID, SECRET_ACCESS_KEY
from ..keys.reload import CredentialsWatcher
from ..policy.bucket import Rate
from ..policy.rules import Policy
from .headers import METHOD_OVERRIDES

# Under a policy: X-R3-User (act as another user of the account), also as CGI-style servers
# spell it, unless the policy allows it; and the method overrides some frameworks honour, with
# which a read-only GET could become a DELETE.
_USER_HEADERS = frozenset({b"x-r3-user", b"x_r3_user"})
_METHOD_OVERRIDES = frozenset(name.lower().encode() for name in METHOD_OVERRIDES)


@dataclass(frozen=True)
class Client:
    """One client: its name (None for the single client of a proxy without client sections),
    the watcher holding its profile's current key, its policy (None: nothing checked) and its
    rate limit (None: none)."""

    name: str | None
    credentials: CredentialsWatcher
    policy: Policy | None
    rate: Rate | None = None  # its rate limit (the whole of it, before any worker's share)

    @functools.cached_property  # read for every request of the client: built once
    def policy_drop(self) -> frozenset[bytes]:
        """Request header names (lower-case) the policy removes."""
        if self.policy is None:
            return frozenset()
        users = frozenset() if self.policy.allow_user_header else _USER_HEADERS
        return _METHOD_OVERRIDES | users

    @property
    def label(self) -> str:
        """The name in logs and metrics: ``-`` for the single client."""
        return self.name or "-"


def load_profiles(
    settings: Settings,
    environ: Mapping[str, str],
    known: Mapping[str, Credentials] | None = None,
) -> dict[str, Credentials]:
    """Every profile the proxy signs with, loaded now: a missing one stops the start (or is
    refused by a reload, which checks the same). ``known``: keys already in use, by profile,
    taken as they are rather than read again."""
    names = [settings.profile]
    if settings.clients:
        present = [k for k in (ACCESS_KEY_ID, SECRET_ACCESS_KEY) if environ.get(k, "").strip()]
        if present:
            # They would override every client's profile with one key: not what clients are for.
            raise CredentialsError(
                f"{' and '.join(present)} set in the environment would replace the key of "
                f"every [client.NAME] profile; unset {'it' if len(present) == 1 else 'them'} "
                f"and keep the keys in {settings.credentials}"
            )
        names = list(dict.fromkeys(client.profile for client in settings.clients))
    known = known or {}
    path = settings.credentials
    return {
        name: known[name] if name in known else load_credentials(path, name, environ)
        for name in names
    }


class Clients:
    """The clients of one proxy and the credential watchers behind them (one per profile)."""

    def __init__(
        self,
        settings: Settings,
        profiles: Mapping[str, Credentials],
        environ: Mapping[str, str],
        keep: Mapping[str, CredentialsWatcher] | None = None,
    ) -> None:
        # ``keep``: watchers of a config being replaced, kept for the profiles still in use.
        keep = keep or {}
        self.watchers = {
            name: keep.get(name) or CredentialsWatcher(creds, settings.credentials, name, environ)
            for name, creds in profiles.items()
        }
        self._by_token: dict[bytes, Client] = {}
        self.default: Client | None = None
        if not settings.clients:
            policy = Policy(read_only=settings.read_only)
            watcher = self.watchers[settings.profile]
            self.default = Client(
                None, watcher, policy if policy.active else None, settings.rate_limit
            )
        for config in settings.clients:
            # --read-only is a floor for every client: none can be more than read-only then.
            policy = config.policy
            if settings.read_only and not policy.read_only:
                policy = Policy(True, policy.graphql, policy.rest, policy.allow_user_header)
            watcher = self.watchers[config.profile]
            # --rate-limit is the default of a client whose section says nothing of it.
            rate = config.rate if config.rate_given else settings.rate_limit
            client = Client(config.name, watcher, policy if policy.active else None, rate)
            self._by_token[_digest(config.token.encode())] = client
        self.all = [self.default] if self.default else list(self._by_token.values())

    @property
    def by_token(self) -> bool:
        """Whether the token picks the client (there are client sections)."""
        return bool(self._by_token)

    def pick(self, presented: bytes | None) -> Client | None:
        """The client whose token was presented; None for no token or an unknown one.

        The lookup is by SHA-256 of the token: its time says nothing about how much of any
        token matched, as compare_digest's does not for one.
        """
        if presented is None:
            return None
        return self._by_token.get(_digest(presented))

    def reload(self, why: str) -> None:
        """Reload every profile's key soon (SIGHUP), each in its watcher's own time."""
        for watcher in self.watchers.values():
            watcher.request(why)

    def reload_results(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for watcher in self.watchers.values():
            for result, count in watcher.results.items():
                totals[result] = totals.get(result, 0) + count
        return totals


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()
