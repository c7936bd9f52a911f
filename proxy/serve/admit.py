"""Admission: requests refused before anything is read, and the client picked by its token."""

from __future__ import annotations

import hmac
import re
from typing import TYPE_CHECKING

from aiohttp import HttpVersion10, HttpVersion11, web

from .responses import error_response

if TYPE_CHECKING:
    from .clients import Client
    from .state import ProxyState

# A "%" not followed by two hex digits is invalid in a URI (RFC 3986 section 2.1).
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_BEARER = "bearer "
_DOT_SEGMENTS = frozenset({"..", ".%2e", "%2e.", "%2e%2e"})
_VERSIONS = (HttpVersion10, HttpVersion11)


def _presented_token(request: web.Request) -> bytes | None:
    for name in ("Authorization", "Proxy-Authorization"):
        value = request.headers.get(name, "")
        if value[: len(_BEARER)].lower() == _BEARER:
            return value[len(_BEARER) :].strip().encode("utf-8", "surrogateescape")
    return None


def _from_a_browser(request: web.Request) -> bool:
    """Browsers send Origin on cross-site and same-site POSTs, and Sec-Fetch-Site on every
    request; only "none" (the user typed the address) is not a page's doing."""
    headers = request.headers
    return "Origin" in headers or headers.get("Sec-Fetch-Site", "none").lower() != "none"


def _is_preflight(request: web.Request) -> bool:
    """A CORS preflight (Fetch standard): OPTIONS with Origin and Access-Control-Request-Method."""
    headers = request.headers
    return (
        request.method == "OPTIONS"
        and "Origin" in headers
        and "Access-Control-Request-Method" in headers
    )


def _climbs(raw_path: str) -> bool:
    segments = raw_path.partition("?")[0].lower().split("/")
    return any(segment in _DOT_SEGMENTS for segment in segments)


def admit(request: web.Request, state: ProxyState) -> Client | web.Response:
    """The client asking, or the answer refusing the request before anything is read."""
    if state.draining:
        # On a connection kept alive as the proxy began to stop: refused before anything is
        # sent upstream, so that the client can safely send it again (elsewhere, or later).
        response = error_response(
            503,
            "shutting_down",
            "the proxy is shutting down; the request was not forwarded: retry it",
        )
        response.force_close()
        return response
    if request.version not in _VERSIONS:
        # aiohttp's parser takes "HTTP/2.0" and HTTP/0.9's bare "GET /": neither is the
        # HTTP/1.x this proxy speaks and forwards (RFC 9110 section 15.6.6).
        return error_response(
            505, "http_version_not_supported", "send the request as HTTP/1.1 (or HTTP/1.0)"
        )
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
    if "#" in request.raw_path:
        # A request target carries no fragment (RFC 9112 section 3.2); aiohttp would drop it
        # after the checks below looked at the path, so '/..#x' could leave a mount.
        return error_response(
            400,
            "bad_request_target",
            "a '#' is not allowed in a request target: leave the fragment out",
        )
    if not request.raw_path.startswith("/"):
        # Absolute-form ("GET http://other/ HTTP/1.1") or asterisk-form targets: this proxy
        # forwards only to its one upstream, never to a host named by the client.
        return error_response(
            400, "bad_request_target", "send a path such as /graphql/v1, not a full URL"
        )
    if (state.settings.upstream.prefix or state.mounts) and _climbs(request.raw_path):
        return error_response(
            400, "bad_request_target", "'..' may not leave the upstream's path prefix or mount"
        )
    if "%" in request.raw_path and _BAD_PERCENT.search(request.raw_path):
        return error_response(
            400,
            "bad_percent_encoding",
            "the path or query has a '%' not followed by two hex digits",
        )
    tokens = state.token is not None or state.clients.by_token
    if not tokens and _from_a_browser(request):
        # A web page (any site the user visits, or one that rebinds its name to 127.0.0.1)
        # could otherwise use the account through this proxy. With a token, a page would need
        # the token, which it cannot have.
        return error_response(
            403,
            "browser_request_refused",
            "requests from web pages are refused; to allow them, run the proxy with a token",
        )
    if tokens and _is_preflight(request):
        # A browser asks before a cross-origin request with a token; preflights never carry
        # the token, so a 401 would hide the reason. 403 with a code shows it in the console.
        return error_response(
            403,
            "cors_not_supported",
            "CORS is not offered: web pages cannot call this proxy; call it from a program",
        )
    if state.clients.by_token:
        client = state.clients.pick(_presented_token(request))
        if client is None:
            return _unauthorized("send your client's token as 'Authorization: Bearer TOKEN'")
        return client
    if state.token is not None:
        presented = _presented_token(request)
        # compare_digest: the time taken does not reveal how much of the token matched.
        if presented is None or not hmac.compare_digest(presented, state.token):
            return _unauthorized("send the proxy's token as 'Authorization: Bearer TOKEN'")
    assert state.clients.default is not None, "without client sections there is one client"
    return state.clients.default


def _unauthorized(message: str) -> web.Response:
    response = error_response(401, "unauthorized", message)
    response.headers["WWW-Authenticate"] = 'Bearer realm="remoteit-proxy"'
    return response
