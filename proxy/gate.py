"""The policy step of the request path: look at what a request would do, refuse or let it go."""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING
from urllib.parse import unquote

from aiohttp import web

from .forward import Exchange, error_response
from .outgoing import BodyTooLarge, read_whole
from .policy import Policy, Refusal, check_graphql, check_rest

if TYPE_CHECKING:
    from .app import ProxyState
    from .graphql_ops import Operation

log = logging.getLogger(__name__)
# The methods that carry a GraphQL request (GraphQL-over-HTTP); OPTIONS runs no operation.
_GRAPHQL_METHODS = frozenset({"GET", "HEAD", "POST"})


def graphql_path(raw_path: str, paths: tuple[str, ...]) -> bool:
    """Whether the API would take this path for one of its GraphQL endpoints.

    Compared decoded, case-folded, with empty and dot segments resolved and no trailing slash:
    a spelling the API may route to GraphQL must not escape the GraphQL rules as REST.
    """
    segments: list[str] = []
    for segment in unquote(raw_path).lower().split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    normalized = "/" + "/".join(segments)
    return any(normalized == path.lower() for path in paths)


async def gate(
    request: web.Request, state: ProxyState, policy: Policy, exchange: Exchange
) -> web.Response | None:
    """The answer refusing the request, or None to forward it (with a GraphQL body it had to
    read whole kept in ``exchange.body``, to be sent unchanged)."""
    path, _, query = request.raw_path.partition("?")
    method = request.method
    refusal: Refusal | None
    if not graphql_path(path, state.settings.graphql_paths):
        refusal = check_rest(policy, method, path)
    elif method in _GRAPHQL_METHODS:
        # Imported here: graphql-core is only loaded by a proxy that has a policy.
        from .graphql_ops import BadGraphQL

        body = b""
        if method == "POST":
            try:
                body = exchange.body = await read_whole(request, state.settings.max_buffered_body)
            except BodyTooLarge:
                return _refused(request, exchange, state, "body_too_large", _too_large(state))
        try:
            exchange.operations = _operations(
                method, query, request.headers.get("Content-Type"), body
            )
        except BadGraphQL as exc:
            answer = error_response(400, "bad_graphql", str(exc))
            return _refused(request, exchange, state, "bad_graphql", answer)
        refusal = check_graphql(policy, exchange.operations)
    elif method == "OPTIONS":
        refusal = None
    else:
        refusal = Refusal(
            "not_graphql", f"{method} {path} is refused: GraphQL requests are GET or POST"
        )
    if refusal is None:
        return None
    log.info("%s %s refused by the policy (%s): %s", method, path, refusal.rule, refusal.message)
    answer = error_response(403, "policy_denied", refusal.message)
    return _refused(request, exchange, state, refusal.rule, answer)


# Scripts send the same few documents again and again: the answer for a small request is
# kept, so that a repeated one is not parsed again (graphql-core's parser is pure Python).
CACHED_BODY = 4096


@functools.lru_cache(maxsize=256)
def _cached(
    method: str, query: str, content_type: str | None, body: bytes
) -> tuple[Operation, ...]:
    from .graphql_ops import graphql_operations

    return tuple(graphql_operations(method, query, content_type, body))


def _operations(
    method: str, query: str, content_type: str | None, body: bytes
) -> tuple[Operation, ...]:
    """The operations the request runs (BadGraphQL when it cannot be told)."""
    if len(body) + len(query) <= CACHED_BODY:
        return _cached(method, query, content_type, body)
    from .graphql_ops import graphql_operations

    return tuple(graphql_operations(method, query, content_type, body))


def _too_large(state: ProxyState) -> web.Response:
    return error_response(
        413,
        "body_too_large",
        "the policy needs the whole GraphQL body, which is over --max-buffered-body "
        f"({state.settings.max_buffered_body} bytes): raise the limit",
    )


def _refused(
    request: web.Request, exchange: Exchange, state: ProxyState, rule: str, answer: web.Response
) -> web.Response:
    exchange.rule = rule
    state.metrics.refusal(exchange.client_label, rule)
    if not request.content.at_eof():
        answer.force_close()  # the rest of the body is not read for nothing
    return answer
