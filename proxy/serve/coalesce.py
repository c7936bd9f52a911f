"""Coalescing: which requests may share an identical query's answer, and what makes them equal."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from .flights import Key
from .gate import graphql_path, operations
from .outgoing import SMALL_BODY, forwarded_content_type

if TYPE_CHECKING:
    from ..config.settings import Settings
    from .outgoing import Outgoing
    from .state import Exchange, ProxyState


def key_of(
    request: web.Request, state: ProxyState, exchange: Exchange, settings: Settings, out: Outgoing
) -> Key | None:
    """What the request asks, if it may share an answer: a GraphQL request, sent whole and
    small, whose every operation is a query; None otherwise."""
    body = out.body
    if body is not None and not isinstance(body, bytes):
        return None
    body = body or b""
    method = request.method
    if method not in ("GET", "POST") or len(body) > SMALL_BODY:
        return None
    raw = request.raw_path
    path, _, query = raw.partition("?")
    if not graphql_path(path, state.settings.graphql_paths):
        return None
    from ..policy.graphql import BadGraphQL  # loaded only by a proxy that coalesces

    content_type = forwarded_content_type(request)
    found = exchange.operations
    if found is None:
        try:
            found = operations(method, query, content_type, body)
        except BadGraphQL:
            return None
    if not found or any(op.type != "query" for op in found):
        return None
    client = exchange.client
    assert client is not None, "a request is forwarded for a client"
    user = None if b"x-r3-user" in client.policy_drop else request.headers.get("X-R3-User")
    profile = client.credentials.current.profile
    return (str(settings.upstream), profile, method + " " + raw, body, content_type or "", user)
