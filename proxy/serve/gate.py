"""The policy step of the request path: look at what a request would do, refuse or let it go."""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING
from urllib.parse import unquote

from aiohttp import web

from ..policy.rules import Policy, Refusal, check_graphql, check_rest
from .outgoing import BodyTooLarge, forwarded_content_type, read_whole
from .responses import error_response
from .state import Exchange
from .websocket import upgrade_asked

if TYPE_CHECKING:
    from ..policy.graphql import Operation
    from .state import ProxyState

log = logging.getLogger("proxy.gate")  # the name log lines have always had
# The methods that carry a GraphQL request (GraphQL-over-HTTP); OPTIONS runs no operation.
GRAPHQL_METHODS = frozenset({"GET", "HEAD", "POST"})


def graphql_path(raw_path: str, paths: tuple[str, ...]) -> bool:
    """Whether the API could take this path for one of its GraphQL endpoints, or below one.

    Compared decoded, case-folded, with ``;parameters``, empty and dot segments resolved and no
    trailing slash: a spelling a server may route to GraphQL (a mount also serves the paths
    below it) must not escape the GraphQL rules as REST.
    """
    segments: list[str] = []
    for segment in unquote(raw_path).lower().split("/"):
        segment = segment.partition(";")[0]  # RFC 3986 3.3 path parameters, as servlets drop
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    normalized = "/" + "/".join(segments)
    # ``paths`` come lower-case and without a trailing slash (values.parse_graphql_paths).
    return any(normalized == path or normalized.startswith(path + "/") for path in paths)


async def gate(
    request: web.Request, state: ProxyState, policy: Policy, exchange: Exchange
) -> web.Response | None:
    """The answer refusing the request, or None to forward it (with a GraphQL body it had to
    read whole kept in ``exchange.body``, to be sent unchanged)."""
    if upgrade_asked(request) is not None:
        refusal = Refusal(
            "websocket",
            "a WebSocket is refused to a client with read_only or allow-lists: the proxy cannot "
            "inspect what its messages do",
        )
        return _decide(request, exchange, state, refusal)
    if "#" in request.raw_path:
        # The fragment is never sent (outgoing._wire_target): what is checked must be what goes.
        return _bad(request, exchange, state, "bad_request_target", "remove the '#' fragment")
    path, _, query = request.raw_path.partition("?")
    method = request.method
    if not graphql_path(path, state.settings.graphql_paths):
        return _decide(request, exchange, state, check_rest(policy, method, path))
    if method not in GRAPHQL_METHODS and method != "OPTIONS":
        refusal = Refusal(
            "not_graphql", f"{method} {path} is refused: GraphQL requests are GET or POST"
        )
        return _decide(request, exchange, state, refusal)
    problem = _unreadable(request)
    if problem is not None:
        return _bad(request, exchange, state, "bad_graphql", problem)
    if method == "OPTIONS":
        return None  # runs no operation (and carries no body, see _unreadable)
    # Imported here: graphql-core is only loaded by a proxy that has a policy.
    from ..policy.graphql import BadGraphQL

    body = b""
    if method == "POST":
        try:
            body = exchange.body = await read_whole(request, state.settings.max_buffered_body)
        except BodyTooLarge:
            return _refused(request, exchange, state, "body_too_large", _too_large(state))
    try:
        exchange.operations = operations(method, query, forwarded_content_type(request), body)
    except BadGraphQL as exc:
        return _bad(request, exchange, state, "bad_graphql", str(exc))
    return _decide(request, exchange, state, check_graphql(policy, exchange.operations))


def _unreadable(request: web.Request) -> str | None:
    """Why a request to a GraphQL path cannot be inspected as the upstream would read it."""
    if request.method != "POST" and request.body_exists:
        # Some servers take a GET's body over its query string.
        return f"a {request.method} request to a GraphQL path may not carry a body"
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding != "identity":
        return "a GraphQL body must not be compressed (Content-Encoding) to be inspected"
    return None


def _decide(
    request: web.Request, exchange: Exchange, state: ProxyState, refusal: Refusal | None
) -> web.Response | None:
    if refusal is None:
        return None
    method, path = request.method, request.raw_path.partition("?")[0]
    log.info("%s %s refused by the policy (%s): %s", method, path, refusal.rule, refusal.message)
    answer = error_response(403, "policy_denied", refusal.message)
    return _refused(request, exchange, state, refusal.rule, answer)


def _bad(
    request: web.Request, exchange: Exchange, state: ProxyState, code: str, message: str
) -> web.Response:
    return _refused(request, exchange, state, code, error_response(400, code, message))


# Scripts send the same few documents again and again: the answer for a small request is
# kept, so that a repeated one is not parsed again (graphql-core's parser is pure Python).
CACHED_BODY = 4096


@functools.lru_cache(maxsize=256)
def _cached(
    method: str, query: str, content_type: str | None, body: bytes
) -> tuple[Operation, ...]:
    from ..policy.graphql import graphql_operations

    return tuple(graphql_operations(method, query, content_type, body))


def operations(
    method: str, query: str, content_type: str | None, body: bytes
) -> tuple[Operation, ...]:
    """The operations the request runs (BadGraphQL when it cannot be told)."""
    parse = _cached if len(body) + len(query) <= CACHED_BODY else _cached.__wrapped__
    return parse(method, query, content_type, body)


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
