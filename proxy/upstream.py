"""The upstream side: one pooled client session, and mapping its failures to proxy errors."""

from __future__ import annotations

import asyncio

import aiohttp

from .errors import UpstreamError
from .settings import Settings


def create_session(settings: Settings) -> aiohttp.ClientSession:
    """A session whose connections to the upstream are pooled and kept alive between requests.

    Bodies pass through untouched: no decompression, no default headers the client did not
    send. There is no overall deadline, so a long transfer that keeps moving is never cut;
    only connecting and each read are bounded.
    """
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=60)
    timeout = aiohttp.ClientTimeout(
        total=None,
        sock_connect=settings.connect_timeout,
        sock_read=settings.read_timeout,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        cookie_jar=aiohttp.DummyCookieJar(),
    )


def classify(exc: BaseException, upstream: str) -> UpstreamError:
    """Turn a client-side failure into the status and stable code the proxy answers with."""
    if isinstance(exc, asyncio.TimeoutError):  # also aiohttp's ServerTimeoutError family
        return UpstreamError(
            504, "upstream_timeout", f"the upstream {upstream} did not answer in time"
        )
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return UpstreamError(
            502,
            "upstream_tls_error",
            f"the TLS certificate of {upstream} could not be verified; if a proxy on your "
            "network inspects TLS, pass its CA with --ca-bundle",
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        return UpstreamError(
            502, "upstream_unreachable", f"the upstream {upstream} could not be reached ({reason})"
        )
    return UpstreamError(
        502,
        "upstream_error",
        f"the upstream {upstream} broke the connection or answered something that is not HTTP",
    )
