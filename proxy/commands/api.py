"""The account's API as the commands call it: GraphQL signed with a given key, answers checked."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from ..client import Pool
from ..config.settings import Settings
from ..errors import AccountError, UpstreamError
from ..keys.credentials import Credentials
from ..keys.rotation import KeyInfo
from ..ops.clock import ClockSkew
from ..serve.pools import create_pool
from ..serve.signed import graphql_post

LIST_KEYS = "{ login { email accessKeys { key enabled created lastUsed } } }"
DEVELOPER_KEY = "{ login { apiKey { key } } }"
CREATE_KEY = "mutation { createAccessKey { key secret } }"
ENABLE_KEY = (
    "mutation updateAccessKey($key: String!, $enabled: Boolean!) "
    "{ updateAccessKey(key: $key, enabled: $enabled) { key enabled } }"
)
DELETE_KEY = "mutation deleteAccessKey($key: String!) { deleteAccessKey(key: $key) }"


@dataclass(frozen=True)
class Reply:
    """One answer: its status, its JSON object (None: not one) and how long it took."""

    status: int
    body: dict[str, Any] | None
    seconds: float


class Account:
    """The account's API over one kept-alive pool; ``async with`` closes it."""

    def __init__(self, settings: Settings, environ: Mapping[str, str]) -> None:
        self.settings = settings
        self.skew = ClockSkew(
            settings.clock_skew_threshold, correct=not settings.no_clock_correction
        )
        self._pool: Pool = create_pool(settings, environ)

    async def __aenter__(self) -> Account:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._pool.close()

    async def post(self, creds: Credentials, body: bytes) -> Reply:
        """POST ``body`` to ``/graphql/v1``, signed with ``creds`` as serve signs; once more if
        the answer shows that this machine's clock is off (the signature is then refused)."""
        reply = await self._post(creds, body)
        if reply.status in (401, 403) and self.skew.correcting:
            reply = await self._post(creds, body)
        return reply

    async def _post(self, creds: Credentials, body: bytes) -> Reply:
        target, lines = graphql_post(self.settings, creds, body, self.skew.now())
        sent, started = self.skew.clock(), time.perf_counter()
        async with await self._pool.request("POST", target, lines, body) as answer:
            data = b""
            while chunk := await answer.read():
                data += chunk
        self.skew.observe(answer.head.headers.get("Date"), sent, self.skew.clock())
        try:
            parsed = json.loads(data)
        except ValueError:
            parsed = None
        seconds = time.perf_counter() - started
        return Reply(answer.head.status, parsed if isinstance(parsed, dict) else None, seconds)

    async def call(
        self, creds: Credentials, what: str, query: str, variables: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The ``data`` of one GraphQL call; AccountError naming ``what`` when it failed."""
        document: dict[str, Any] = {"query": query}
        if variables:
            document["variables"] = variables
        try:
            reply = await self.post(creds, json.dumps(document).encode())
        except UpstreamError as error:
            raise AccountError(f"{what}: {error.message}") from None
        body = reply.body or {}
        errors = body.get("errors")
        if reply.status in (401, 403):
            hints = self.skew.refusal_hints(reply.status)
            raise AccountError(f"{what}: the API refused the signature ({reply.status}): {hints}")
        if reply.status != 200:
            raise AccountError(f"{what}: unexpected answer {reply.status} from the API")
        if isinstance(errors, list) and errors:
            first = errors[0].get("message", "") if isinstance(errors[0], dict) else ""
            raise AccountError(f"{what}: the API answered with an error: {str(first)[:200]}")
        data = body.get("data")
        if not isinstance(data, dict):
            raise AccountError(f"{what}: the API's answer has no data")
        return data

    async def email(self, creds: Credentials) -> str:
        """The account's e-mail address: the API accepts this key."""
        login = (await self.call(creds, "login", "{ login { email } }")).get("login") or {}
        if not isinstance(login, dict) or not login.get("email"):
            raise AccountError("login: the API's answer has no e-mail address")
        return str(login["email"])

    async def developer_key(self, creds: Credentials) -> str | None:
        """The account's developer API key (None: it has none)."""
        data = await self.call(creds, "reading the developer API key", DEVELOPER_KEY)
        api_key = ((data.get("login") or {}).get("apiKey")) or {}
        key = api_key.get("key") if isinstance(api_key, dict) else None
        return str(key) if key else None

    async def keys(self, creds: Credentials) -> list[KeyInfo]:
        """The account's access keys."""
        data = await self.call(creds, "listing the access keys", LIST_KEYS)
        listed = (data.get("login") or {}).get("accessKeys") or []
        return [
            KeyInfo(
                str(one.get("key")),
                bool(one.get("enabled")),
                one.get("created"),
                one.get("lastUsed"),
            )
            for one in listed
            if isinstance(one, dict) and one.get("key")
        ]

    async def create_key(self, creds: Credentials) -> tuple[str, str]:
        """A new access key: its id and its secret (base64, shown this once)."""
        data = await self.call(creds, "creating an access key", CREATE_KEY)
        created = data.get("createAccessKey") or {}
        if not isinstance(created, dict) or not created.get("key") or not created.get("secret"):
            raise AccountError("creating an access key: the API's answer has no key and secret")
        return str(created["key"]), str(created["secret"])

    async def set_enabled(self, creds: Credentials, key: str, enabled: bool) -> None:
        what = f"{'enabling' if enabled else 'disabling'} access key {key}"
        data = await self.call(creds, what, ENABLE_KEY, {"key": key, "enabled": enabled})
        updated = data.get("updateAccessKey") or {}
        if not isinstance(updated, dict) or updated.get("enabled") is not enabled:
            raise AccountError(f"{what}: the API did not confirm it")

    async def delete_key(self, creds: Credentials, key: str) -> None:
        what = f"deleting access key {key}"
        data = await self.call(creds, what, DELETE_KEY, {"key": key})
        if data.get("deleteAccessKey") is not True:
            raise AccountError(f"{what}: the API did not confirm it")


def fetch_developer_key(
    settings: Settings, environ: Mapping[str, str], creds: Credentials
) -> str | None:
    """For import and configure: the account's developer key, asked with the key just given."""

    async def ask() -> str | None:
        async with Account(settings, environ) as api:
            return await api.developer_key(creds)

    return asyncio.run(ask())
