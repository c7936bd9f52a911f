"""Coalescing: which requests may share an identical query's answer, and what makes them equal."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from .flights import Key
from .gate import graphql_path
from .outgoing import SMALL_BODY
from .replay import queries_only

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
    if not graphql_path(request.raw_path.partition("?")[0], state.settings.graphql_paths):
        return None
    if not queries_only(request, exchange, body):
        return None
    client = exchange.client
    assert client is not None, "a request is forwarded for a client"
    # Every header line forwarded (X-R3-User, Accept-Encoding...) but the request id, which is
    # each request's own, and the Content-Type signed: any of them may change the answer.
    lines = b"\n".join(line for line in out.lines if not line.startswith(_REQUEST_ID_LINE))
    lines += b"\nContent-Type: " + out.content_type.encode("utf-8", "surrogateescape")
    profile = client.credentials.current.profile
    return (str(settings.upstream), profile, method + " " + out.target, lines, body)


_REQUEST_ID_LINE = b"X-Request-Id:"
