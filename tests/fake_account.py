"""A stateful stand-in for the account's access-key GraphQL API, served by a verifying upstream."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import string
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, cast

from aiohttp import web
from fake_upstream import FakeUpstream, Received
from graphql import GraphQLError, build_schema, graphql_sync

# Nothing here imports ``proxy``: this is the account the code under test talks to.

MAX_KEYS_MESSAGE = "Maximum number of access keys reached"
UNKNOWN_KEY_MESSAGE = "Access key not found"
NOT_JSON_MESSAGE = "Body is not valid JSON"
NO_QUERY_MESSAGE = "Must provide query string."
BAD_PARAMS_MESSAGE = "variables must be an object and operationName a string"

SCHEMA = build_schema(
    """
    type Query { login: User! }
    type User { email: String! apiKey: ApiKey! accessKeys: [AccessKey!]! }
    type ApiKey { key: String! updated: String! }
    type AccessKey { key: String! enabled: Boolean! created: String! lastUsed: String }
    type NewAccessKey { key: String! secret: String! enabled: Boolean! created: String! }
    type Mutation {
      createAccessKey: NewAccessKey!
      updateAccessKey(key: String!, enabled: Boolean!): AccessKey!
      deleteAccessKey(key: String!): Boolean!
    }
    """
)

_KEY_ID = re.compile(r'keyId="([^"]*)"')  # draft-cavage Authorization
_KEYID = re.compile(r';keyid="([^"]*)"')  # RFC 9421 Signature-Input
_KEY_ALPHABET = string.ascii_uppercase + string.digits


def iso(timestamp: float) -> str:
    """ISO 8601 UTC with milliseconds: 2024-05-01T12:00:00.000Z."""
    moment = datetime.fromtimestamp(timestamp, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def bad_request(message: str) -> web.Response:
    """HTTP 400 for a request that is no GraphQL request at all."""
    return web.json_response({"errors": [{"message": message}]}, status=400)


def signing_key(received: Received) -> str | None:
    """The key id that signed a (verified) request, from either signature scheme."""
    for header, pattern in (("Authorization", _KEY_ID), ("Signature-Input", _KEYID)):
        match = pattern.search(received.header(header) or "")
        if match:
            return match.group(1)
    return None


class _Body:
    """A request body already read, served again each time it is iterated."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    async def iter_any(self) -> AsyncIterator[bytes]:
        if self._body:
            yield self._body


class _Replayed:
    """A request whose body was read already, its ``content`` replaying that body; everything
    else is the request's own."""

    def __init__(self, request: web.Request, body: bytes) -> None:
        self._request = request
        self.content = _Body(body)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)


class AccountUpstream(FakeUpstream):
    """A FakeUpstream whose responder can read the body again from ``request.content``.

    FakeUpstream reads the body to hash it before its responder runs, which leaves nothing to
    read; this one reads it first and hands FakeUpstream a request whose ``content`` replays it.
    """

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.content.read()
        return await super().handle(cast(web.Request, _Replayed(request, body)))


@dataclass
class AccessKey:
    """One access key of the account; ``secret`` is the raw bytes (base64 on the wire)."""

    key: str
    secret: bytes
    created: str
    enabled: bool = True
    last_used: str | None = None

    def as_graphql(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "enabled": self.enabled,
            "created": self.created,
            "lastUsed": self.last_used,
        }


class FakeAccount:
    """The account behind an AccountUpstream: its access keys, developer key and GraphQL API.

    It answers ``POST .../graphql/v1`` (any path prefix) with its own schema: ``login``,
    ``createAccessKey``, ``updateAccessKey``, ``deleteAccessKey``; any other request goes to the
    responder the upstream had before. ``upstream.keys`` (the same dict) always holds exactly
    the enabled keys that have propagated, so a request signed with a disabled, deleted or
    not-yet-propagated key gets FakeUpstream's own 401. Every verified request updates the
    ``last_used`` of the key that signed it.

    Knobs: ``fail_next[field] = message`` makes the next resolution of that root field fail
    once with that GraphQL error (before any effect); ``propagation`` is how many (real) seconds
    a created key takes to be accepted. ``calls`` lists the root fields resolved, in order,
    failed ones included.
    """

    def __init__(
        self,
        upstream: AccountUpstream,
        email: str = "you@example.com",
        developer_key: str = "DEVKEY-0123456789",
        max_keys: int = 2,
        propagation: float = 0.0,
    ) -> None:
        if not isinstance(upstream, AccountUpstream):
            raise TypeError(
                "FakeAccount needs an AccountUpstream: a FakeUpstream consumes the request "
                "body before its responder runs, so the GraphQL query would be lost"
            )
        self.upstream = upstream
        self.email = email
        self.developer_key = developer_key
        self.developer_key_updated = iso(upstream.clock())
        self.max_keys = max_keys
        self.propagation = propagation
        self.fail_next: dict[str, str] = {}
        self.calls: list[str] = []
        self.keys: dict[str, AccessKey] = {}
        self._pending: set[str] = set()
        for key, secret in upstream.keys.items():
            self.keys[key] = AccessKey(key, secret, created=iso(upstream.clock()))
        self.previous = upstream.respond
        upstream.respond = self.respond
        self._resolvers = {
            "login": self._login,
            "createAccessKey": self._create,
            "updateAccessKey": self._update,
            "deleteAccessKey": self._delete,
        }

    # --- state -------------------------------------------------------------------------------

    def add_key(
        self, key: str | None = None, secret: bytes | None = None, enabled: bool = True
    ) -> AccessKey:
        """Give the account a key at once (no propagation delay, no ``max_keys`` check)."""
        access = AccessKey(
            key or self._new_key_id(),
            secrets.token_bytes(32) if secret is None else secret,
            created=iso(self.upstream.clock()),
            enabled=enabled,
        )
        self.keys[access.key] = access
        self._sync()
        return access

    def _new_key_id(self) -> str:
        while True:
            key = "".join(secrets.choice(_KEY_ALPHABET) for _ in range(20))
            if key not in self.keys:
                return key

    def _sync(self) -> None:
        """Make ``upstream.keys`` (in place) the enabled, propagated keys."""
        accepted = {
            k.key: k.secret for k in self.keys.values() if k.enabled and k.key not in self._pending
        }
        self.upstream.keys.clear()
        self.upstream.keys.update(accepted)

    def _propagated(self, key: str) -> None:
        self._pending.discard(key)
        self._sync()

    def _existing(self, key: str) -> AccessKey:
        access = self.keys.get(key)
        if access is None:
            raise GraphQLError(UNKNOWN_KEY_MESSAGE)
        return access

    # --- resolvers ---------------------------------------------------------------------------

    def _begin(self, field: str) -> None:
        self.calls.append(field)
        message = self.fail_next.pop(field, None)
        if message is not None:
            raise GraphQLError(message)

    def _login(self, info: Any) -> dict[str, Any]:
        self._begin("login")
        return {
            "email": self.email,
            "apiKey": {"key": self.developer_key, "updated": self.developer_key_updated},
            "accessKeys": [k.as_graphql() for k in self.keys.values()],
        }

    def _create(self, info: Any) -> dict[str, Any]:
        self._begin("createAccessKey")
        if len(self.keys) >= self.max_keys:
            raise GraphQLError(MAX_KEYS_MESSAGE)
        access = AccessKey(
            self._new_key_id(), secrets.token_bytes(32), created=iso(self.upstream.clock())
        )
        self.keys[access.key] = access
        if self.propagation > 0:
            self._pending.add(access.key)
            loop = asyncio.get_running_loop()
            loop.call_later(self.propagation, self._propagated, access.key)
        self._sync()
        return {**access.as_graphql(), "secret": base64.b64encode(access.secret).decode()}

    def _update(self, info: Any, key: str, enabled: bool) -> dict[str, Any]:
        self._begin("updateAccessKey")
        access = self._existing(key)
        access.enabled = enabled
        self._sync()
        return access.as_graphql()

    def _delete(self, info: Any, key: str) -> bool:
        self._begin("deleteAccessKey")
        self._existing(key)
        del self.keys[key]
        self._pending.discard(key)
        self._sync()
        return True

    # --- HTTP --------------------------------------------------------------------------------

    async def respond(self, request: web.Request, received: Received) -> web.StreamResponse:
        """The upstream's responder: note the key's use, answer GraphQL, pass the rest on."""
        used = self.keys.get(signing_key(received) or "")
        if used is not None:
            used.last_used = iso(self.upstream.clock())
        if request.method != "POST" or not request.path.endswith("/graphql/v1"):
            return await self.previous(request, received)
        body = b"".join([chunk async for chunk in request.content.iter_any()])
        if len(body) != received.body_size:
            raise RuntimeError("the request body was consumed before FakeAccount could read it")
        try:
            payload = json.loads(body)
        except ValueError:
            return bad_request(NOT_JSON_MESSAGE)
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            return bad_request(NO_QUERY_MESSAGE)
        variables, name = payload.get("variables"), payload.get("operationName")
        if not isinstance(variables, (dict, type(None))) or not isinstance(name, (str, type(None))):
            return bad_request(BAD_PARAMS_MESSAGE)
        result = graphql_sync(
            SCHEMA,
            payload["query"],
            root_value=self._resolvers,
            variable_values=variables,
            operation_name=name,
        )
        return web.json_response(result.formatted)
