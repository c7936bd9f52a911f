"""Request handling: refuse what must not be forwarded, check the token, then forward."""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from .forward import error_response, forward
from .reload import CredentialsWatcher
from .settings import Settings

log = logging.getLogger(__name__)
access_log = logging.getLogger("proxy.access")

# A "%" not followed by two hex digits is invalid in a URI (RFC 3986 section 2.1).
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_BEARER = "bearer "
# Logged when the client went away before it could be answered (nginx's convention).
CLIENT_CLOSED = 499


@dataclass
class ProxyState:
    """What the handler needs: settings, current credentials, the upstream session, a clock."""

    settings: Settings
    credentials: CredentialsWatcher
    clock: Callable[[], float] = time.time
    session: aiohttp.ClientSession | None = field(default=None, repr=False)
    outbound_proxy: str | None = field(default=None, repr=False)
    token: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.settings.token is not None:
            self.token = self.settings.token.encode()


def _presented_token(request: web.Request) -> bytes | None:
    for name in ("Authorization", "Proxy-Authorization"):
        value = request.headers.get(name, "")
        if value[: len(_BEARER)].lower() == _BEARER:
            return value[len(_BEARER) :].strip().encode("utf-8", "surrogateescape")
    return None


def _refusal(request: web.Request, state: ProxyState) -> web.Response | None:
    """Why this request must not be forwarded, as the answer to give; None to forward it."""
    if request.method == "CONNECT":
        response = error_response(
            405, "method_not_allowed", "CONNECT is not supported: this is not an open proxy"
        )
        response.headers["Allow"] = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
        return response
    if not request.raw_path.isascii():
        # RFC 3986: a URI is ASCII; other characters must be percent-encoded. (aiohttp's C
        # parser already refuses them, its pure-Python fallback does not.)
        return error_response(
            400, "bad_request_target", "percent-encode non-ASCII characters in the path and query"
        )
    if not request.raw_path.startswith("/"):
        # Absolute-form ("GET http://other/ HTTP/1.1") or asterisk-form targets: this proxy
        # forwards only to its one upstream, never to a host named by the client.
        return error_response(
            400, "bad_request_target", "send a path such as /graphql/v1, not a full URL"
        )
    if _BAD_PERCENT.search(request.raw_path):
        return error_response(
            400,
            "bad_percent_encoding",
            "the path or query has a '%' not followed by two hex digits",
        )
    if state.token is not None:
        presented = _presented_token(request)
        # compare_digest: the time taken does not reveal how much of the token matched.
        if presented is None or not hmac.compare_digest(presented, state.token):
            response = error_response(
                401, "unauthorized", "send the proxy's token as 'Authorization: Bearer TOKEN'"
            )
            response.headers["WWW-Authenticate"] = 'Bearer realm="remoteit-proxy"'
            return response
    return None


async def handle(state: ProxyState, request: web.Request) -> web.StreamResponse:
    """Answer one client request: refuse it, or forward it signed."""
    started = time.perf_counter()
    status = CLIENT_CLOSED
    try:
        response = _refusal(request, state) or await forward(request, state)
        status = response.status
        return response
    finally:
        access_log.info(
            "%s %s %d %.1fms",
            request.method,
            # Raw (still percent-encoded) and without the query: no decoded control characters
            # can forge log lines, and no query values reach the log.
            request.raw_path.partition("?")[0],
            status,
            (time.perf_counter() - started) * 1000,
        )
