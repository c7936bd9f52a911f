"""Forwarding: build the signed upstream request, then stream bodies both ways."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from . import signing
from .headers import request_headers, response_headers
from .upstream import classify

if TYPE_CHECKING:
    from .app import ProxyState
    from .credentials import Credentials

log = logging.getLogger(__name__)

DEFAULT_CONTENT_TYPE = "application/json"
# The vendor's collection sends it lower-case; header names are case-insensitive (RFC 9110 5.1).
DEVELOPER_KEY_HEADER = "DeveloperKey"
_DROP_WITH_DEVELOPER_KEY = frozenset({DEVELOPER_KEY_HEADER.lower()})
_DROP_NOTHING: frozenset[str] = frozenset()


@dataclass(slots=True)
class Exchange:
    """What one request's forwarding reports back for the access line and metrics."""

    request_id: str
    upstream_seconds: float | None = None
    bytes_out: int = 0


def error_response(status: int, code: str, message: str) -> web.Response:
    """The proxy's own error answer: a small JSON body with a stable ``code``."""
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def signed_headers(
    creds: Credentials, host: str, method: str, target: str, content_type: str, now: float
) -> dict[str, str]:
    """The headers the proxy adds to a request, ``Authorization`` last: it signs the others."""
    date = signing.http_date(now)
    headers = {"Host": host, "Date": date, "Content-Type": content_type}
    if creds.developer_key:
        headers[DEVELOPER_KEY_HEADER] = creds.developer_key
    headers["Authorization"] = signing.sign(
        key_id=creds.access_key_id,
        secret=creds.secret,
        method=method,
        target=target,
        host=host,
        date=date,
        content_type=content_type,
    )
    return headers


def build_upstream_request(
    request: web.Request, state: ProxyState, request_id: str
) -> tuple[URL, CIMultiDict[str]]:
    """The URL and headers of the upstream request, signed last, after every other change."""
    creds, upstream = state.credentials.current, state.settings.upstream
    # Byte for byte: no normalising, no re-encoding. Sign the target exactly as the client
    # library will write it on the wire (it drops an empty "?"), so the two can never differ.
    url = URL(upstream.origin + upstream.prefix + request.raw_path, encoded=True)
    drop = _DROP_WITH_DEVELOPER_KEY if creds.developer_key else _DROP_NOTHING
    headers = request_headers(request.headers, drop)
    content_type = headers.pop("Content-Type", None) or DEFAULT_CONTENT_TYPE
    if "X-Request-Id" not in headers:
        headers["X-Request-Id"] = request_id
    headers.update(
        signed_headers(
            creds,
            upstream.authority,
            request.method,
            url.raw_path_qs,
            content_type,
            state.skew.now(),
        )
    )
    return url, headers


async def forward(
    request: web.Request, state: ProxyState, exchange: Exchange
) -> web.StreamResponse:
    """Send the request upstream, signed, and stream the answer back."""
    assert state.session is not None, "the client session is created at start-up"
    url, headers = build_upstream_request(request, state, exchange.request_id)
    sent, started = state.skew.clock(), time.perf_counter()
    try:
        async with state.session.request(
            request.method,
            url,
            headers=headers,
            data=request.content if request.body_exists else None,
            allow_redirects=False,  # a redirect is the client's to follow, not ours
            proxy=state.outbound_proxy,
        ) as upstream:
            exchange.upstream_seconds = time.perf_counter() - started
            state.skew.observe(upstream.headers.get("Date"), sent, state.skew.clock())
            headers = response_headers(upstream.headers)
            headers["X-Request-Id"] = exchange.request_id
            response = web.StreamResponse(
                status=upstream.status, reason=upstream.reason, headers=headers
            )
            await response.prepare(request)
            exchange.bytes_out = await _relay(request, upstream, response)
            return response
    except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
        if _client_gone(request):
            # The client left (mid-upload, or before the answer): not the upstream's fault.
            log.info("%s %s: the client closed the connection", request.method, request.path)
            return error_response(499, "client_closed", "the client closed the connection")
        error = classify(exc, str(state.settings.upstream))
        state.metrics.upstream_errors.labels(error.code).inc()
        log.warning("%s %s: %s (%s)", request.method, request.path, error.message, error.code)
        return error_response(error.status, error.code, error.message)


def _client_gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


async def _relay(
    request: web.Request, upstream: aiohttp.ClientResponse, response: web.StreamResponse
) -> int:
    """Copy the upstream body to the client chunk by chunk, as it arrives; return its size."""
    size = 0
    try:
        async for chunk in upstream.content.iter_any():
            size += len(chunk)
            await response.write(chunk)
        await response.write_eof()
    except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
        # One side broke mid-body. Abort the client connection rather than end the body
        # cleanly, so that a truncated answer can never look complete (no last chunk, short
        # Content-Length); close the upstream connection too so it is not reused.
        log.warning(
            "%s %s: transfer aborted mid-body (%s)",
            request.method,
            request.path,
            type(exc).__name__,
        )
        upstream.close()
        if request.transport is not None:
            request.transport.abort()
    return size
