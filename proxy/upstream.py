"""The upstream side: TLS, the outbound proxy, one pooled client session, failure mapping."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import ssl
from collections.abc import Mapping

import aiohttp

from .addresses import Upstream
from .errors import ConfigError, UpstreamError
from .settings import Settings

log = logging.getLogger(__name__)


def ssl_context(settings: Settings) -> ssl.SSLContext | bool:
    """Verification always on for https, with the system's CAs plus ``--ca-bundle``'s.

    Only ``--insecure-skip-verify`` turns it off, and then every start says so.
    """
    if settings.insecure_skip_verify:
        log.warning(
            "--insecure-skip-verify: the upstream's TLS certificate is NOT verified; anyone on "
            "the network path can read and change your API traffic. Use --ca-bundle instead."
        )
        return False
    context = ssl.create_default_context()
    if settings.ca_bundle is not None:
        try:
            context.load_verify_locations(cafile=settings.ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not PEM"
            raise ConfigError(
                f"--ca-bundle: cannot load CA certificates from {settings.ca_bundle} ({reason}); "
                "point it at a PEM file"
            ) from None
    return context


def outbound_proxy(upstream: Upstream, environ: Mapping[str, str]) -> str | None:
    """The HTTP(S)_PROXY to reach the upstream through, honouring NO_PROXY; None for direct.

    Read here rather than with aiohttp's ``trust_env``, which would also take credentials
    from ~/.netrc and could replace the signed Authorization header.
    """
    lower = {key.lower(): value for key, value in environ.items() if value}
    proxy = lower.get(f"{upstream.scheme}_proxy")
    if not proxy:
        return None
    if _bypassed(upstream.host, lower.get("no_proxy", "")):
        return None
    return proxy


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _bypassed(host: str, no_proxy: str) -> bool:
    """NO_PROXY as curl reads it: ``*``, host names (and their subdomains), IPs, CIDR ranges."""
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if entry == "*":
            return True
        if entry.startswith("["):
            entry = entry[1:].partition("]")[0]
        elif entry.count(":") == 1:
            entry = entry.partition(":")[0]  # host:port
        try:
            address = ipaddress.ip_address(host)
        except ValueError:  # a name: the entry itself, or any name under it
            name = entry.lstrip(".")
            if name and (host == name or host.endswith("." + name)):
                return True
            continue
        with contextlib.suppress(ValueError):  # an address: equal, or inside a CIDR range
            if address in ipaddress.ip_network(entry, strict=False):
                return True
    return False


def create_session(settings: Settings) -> aiohttp.ClientSession:
    """A session whose connections to the upstream are pooled and kept alive between requests.

    Bodies pass through untouched: no decompression, no default headers the client did not
    send. There is no overall deadline, so a long transfer that keeps moving is never cut;
    only connecting and each read are bounded.
    """
    context = ssl_context(settings)
    if settings.upstream.scheme == "http" and not _is_loopback(settings.upstream.host):
        log.warning(
            "the upstream %s is plain http: signatures and the developer key cross the network "
            "unencrypted",
            settings.upstream,
        )
    connector = aiohttp.TCPConnector(
        limit=0,
        ttl_dns_cache=60,
        # Built for http too, so that a bad --ca-bundle is reported at start either way.
        ssl=context if settings.upstream.scheme == "https" else True,
    )
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
        message = f"the upstream {upstream} did not answer in time"
        return UpstreamError(504, "upstream_timeout", message)
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return UpstreamError(
            502,
            "upstream_tls_error",
            f"the TLS certificate of {upstream} could not be verified; if a proxy on your "
            "network inspects TLS, pass its CA with --ca-bundle",
        )
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return UpstreamError(
            502, "upstream_unreachable", "the outbound proxy (HTTPS_PROXY) could not be reached"
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
