"""Request handling: own endpoints, refusals, the token check, forwarding, the access line."""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import time
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from . import endpoints
from .clock import ClockSkew
from .forward import ErrorResponse, Exchange, error_response, forward
from .headers import CLIENT_CLOSED, REQUEST_ID
from .logs import log_access
from .metrics import Metrics
from .pool import Pool
from .reload import CredentialsWatcher
from .settings import Settings

log = logging.getLogger(__name__)

# A "%" not followed by two hex digits is invalid in a URI (RFC 3986 section 2.1).
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_BEARER = "bearer "
_DOT_SEGMENTS = frozenset({"..", ".%2e", "%2e.", "%2e%2e"})
# A client's own request id is kept if it is a short token; anything else is replaced.
_CLIENT_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")


@dataclass
class ProxyState:
    """What the handler needs: settings, current credentials, the upstream pool, a clock."""

    settings: Settings
    credentials: CredentialsWatcher
    skew: ClockSkew
    metrics: Metrics
    pool: Pool | None = field(default=None, repr=False)
    token: bytes | None = field(default=None, repr=False)
    draining: bool = False
    skew_sampled: float = 0.0  # when the clock offset was last sampled

    def __post_init__(self) -> None:
        if self.settings.token is not None:
            self.token = self.settings.token.encode()


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
    if state.settings.upstream.prefix and _climbs(request.raw_path):
        return error_response(
            400, "bad_request_target", "'..' may not leave the upstream's path prefix"
        )
    if "%" in request.raw_path and _BAD_PERCENT.search(request.raw_path):
        return error_response(
            400,
            "bad_percent_encoding",
            "the path or query has a '%' not followed by two hex digits",
        )
    if state.token is None and _from_a_browser(request):
        # A web page (any site the user visits, or one that rebinds its name to 127.0.0.1)
        # could otherwise use the account through this proxy. With a token, a page would need
        # the token, which it cannot have.
        return error_response(
            403,
            "browser_request_refused",
            "requests from web pages are refused; to allow them, run the proxy with a token",
        )
    if state.token is not None and _is_preflight(request):
        # A browser asks before a cross-origin request with a token; preflights never carry
        # the token, so a 401 would hide the reason. 403 with a code shows it in the console.
        return error_response(
            403,
            "cors_not_supported",
            "CORS is not offered: web pages cannot call this proxy; call it from a program",
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


async def _expectation(request: web.Request) -> web.Response | None:
    """Answer ``Expect: 100-continue`` (RFC 9110 10.1.1) now that the request is accepted, so
    the client sends its body; any other expectation cannot be met (417)."""
    expect = request.headers.get("Expect")
    if expect is None:
        return None
    if expect.lower() != "100-continue":
        return error_response(417, "expectation_failed", "only Expect: 100-continue is supported")
    if request.version >= aiohttp.HttpVersion11:
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    return None


def _request_id(request: web.Request) -> str:
    given = request.headers.get(REQUEST_ID, "")
    return given if _CLIENT_REQUEST_ID.fullmatch(given) else secrets.token_hex(8)


async def handle(state: ProxyState, request: web.Request) -> web.StreamResponse:
    """Answer one client request: from the proxy itself, a refusal, or forwarded signed."""
    started = time.perf_counter()
    if request.raw_path.startswith(endpoints.PREFIX):
        # Probes and scrapes: no token needed, not counted as traffic, and logged at DEBUG so
        # that a probe every few seconds does not bury the requests in the log.
        own = endpoints.answer(request, state)
        log_access(
            method=request.method,
            path=request.raw_path.partition("?")[0],
            status=own.status,
            bytes_in=0,
            bytes_out=len(own.body or b""),  # type: ignore[arg-type]
            seconds=time.perf_counter() - started,
            upstream_seconds=None,
            request_id="-",
            code=own.code if isinstance(own, ErrorResponse) else None,
            level=logging.DEBUG,
        )
        return own
    exchange = Exchange(_request_id(request))
    status, code = CLIENT_CLOSED, None
    state.metrics.in_flight += 1
    try:
        answer = _refusal(request, state)
        if answer is None:
            answer = await _expectation(request)
        response = answer if answer is not None else await forward(request, state, exchange)
        status = exchange.aborted or response.status
        if isinstance(response, ErrorResponse):
            code = response.code
        if not response.prepared:
            response.headers[REQUEST_ID] = exchange.request_id
            if isinstance(response, web.Response) and status != CLIENT_CLOSED and response.body:
                exchange.bytes_out = len(response.body)  # type: ignore[arg-type]
        return response
    finally:
        seconds = time.perf_counter() - started
        state.metrics.in_flight -= 1
        state.metrics.observe(request.method, status, seconds, exchange.upstream_seconds)
        upstream_refused = status in (401, 403) and exchange.upstream_seconds is not None
        log_access(
            method=request.method,
            # Raw (still percent-encoded) and without the query: no decoded control characters
            # can forge log lines, and no query values reach the log.
            path=request.raw_path.partition("?")[0],
            status=status,
            bytes_in=request.content.total_bytes,
            bytes_out=exchange.bytes_out,
            seconds=seconds,
            upstream_seconds=exchange.upstream_seconds,
            request_id=exchange.request_id,
            code=code,
            hint=(
                state.skew.refusal_hints(status, exchange.signed_corrected)
                if upstream_refused
                else ""
            ),
        )
