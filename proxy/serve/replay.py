"""Replaying a request: whether it may be sent again, and keeping its body at hand for that."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from ..errors import UpstreamError, UpstreamTimeout, UpstreamTLSError
from ..policy.retry import SAFE_METHODS
from .gate import GRAPHQL_METHODS, graphql_path, operations
from .headers import overrides_method
from .outgoing import SMALL_BODY, forwarded_content_type

if TYPE_CHECKING:
    from .outgoing import Outgoing
    from .state import Exchange, ProxyState


# What a GraphQL request's body is written in (GraphQL over HTTP; application/graphql of old).
_GRAPHQL_MEDIA = frozenset({"application/json", "application/graphql"})


def keep_whole(request: web.Request, state: ProxyState, upgrade: bool) -> bool:
    """Whether a GraphQL POST's body is read whole although it is large (within
    --max-buffered-body), so that a query can be sent again: small ones always are. Uploads
    below a GraphQL path (multipart, octet streams) still stream."""
    length = request.content_length
    if length is None or length <= SMALL_BODY or request.method != "POST":
        return False
    media = (request.headers.get("Content-Type") or "application/json").partition(";")[0]
    return (
        state.settings.retries > 0
        and not upgrade
        and media.strip().lower() in _GRAPHQL_MEDIA
        and graphql_path(request.raw_path.partition("?")[0], state.settings.graphql_paths)
    )


def safe_to_repeat(
    request: web.Request, state: ProxyState, exchange: Exchange, out: Outgoing, upgrade: bool
) -> bool:
    """Whether the request may be sent again: it changes nothing (RFC 9110 section 9.2.1: a
    REST GET, HEAD or OPTIONS; GraphQL whose every operation is a query) and its body is at
    hand, not streamed. A mutation, a streamed body or a WebSocket is never sent twice."""
    if upgrade or not out.replayable or overrides_method(request.headers):
        return False
    method = request.method
    if not graphql_path(request.raw_path.partition("?")[0], state.settings.graphql_paths):
        return method in SAFE_METHODS
    if method == "OPTIONS":
        return not request.body_exists  # runs no operation (a body: as for GET, see below)
    return queries_only(request, exchange, out.body if isinstance(out.body, bytes) else b"")


def queries_only(request: web.Request, exchange: Exchange, body: bytes) -> bool:
    """Whether a request to a GraphQL path runs queries only, as the upstream would read it
    (graphql-core, cached; the policy's reading when it had one): not a method override, not a
    GET with a body (a server may take that body as the document), every operation a query."""
    method = request.method
    if method not in GRAPHQL_METHODS or overrides_method(request.headers):
        return False
    if method != "POST" and request.body_exists:
        return False
    found = exchange.operations
    if found is None:
        from ..policy.graphql import BadGraphQL  # loaded only when it is asked

        query = request.raw_path.partition("?")[2]
        try:
            found = operations(method, query, forwarded_content_type(request), body)
        except BadGraphQL:
            return False
    return bool(found) and all(op.type == "query" for op in found)


def failed_before_answer(error: UpstreamError) -> bool:
    """Whether a failure left the request unanswered for want of a connection: not a byte of
    an answer came, and it was not a certificate refused (that does not change) nor a slow
    answer (a timeout once connected: the upstream may be busy with it)."""
    if error.answered or isinstance(error, UpstreamTLSError):
        return False
    return not (isinstance(error, UpstreamTimeout) and error.connected)
