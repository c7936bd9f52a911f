"""Upstream pools: TLS, the outbound proxy from the environment, one connection pool each."""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import logging
import ssl
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

from ..client import Dialer, Origin, OutboundProxy, Pool
from ..config.addresses import Upstream
from ..config.settings import Settings
from ..errors import ConfigError

log = logging.getLogger("proxy.upstream")  # the name log lines have always had


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """Verification always on for https, with the system's CAs plus ``--ca-bundle``'s.

    Only ``--insecure-skip-verify`` turns it off, and then every start says so.
    """
    if settings.insecure_skip_verify:
        log.warning(
            "--insecure-skip-verify: the upstream's TLS certificate is NOT verified; anyone on "
            "the network path can read and change your API traffic. Use --ca-bundle instead."
        )
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
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

    Only these variables are read: never ~/.netrc, whose credentials could replace the
    signed Authorization header.
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


def create_pool(settings: Settings, environ: Mapping[str, str]) -> Pool:
    """The pool of keep-alive connections to the upstream, reached as the environment says.

    Bodies pass through untouched: no decompression, no default headers the client did not
    send. There is no overall deadline, so a long transfer that keeps moving is never cut;
    only connecting and each wait for the upstream are bounded.
    """
    upstream = settings.upstream
    # Built for http too, so that a bad --ca-bundle is reported at start either way.
    context = ssl_context(settings)
    if upstream.scheme == "http" and not _is_loopback(upstream.host):
        log.warning(
            "the upstream %s is plain http: signatures and the developer key cross the network "
            "unencrypted",
            upstream,
        )
    proxy = outbound_proxy(upstream, environ)
    origin = Origin(upstream.scheme, upstream.host, upstream.port, upstream.origin, str(upstream))
    dialer = Dialer(
        origin,
        tls=context if upstream.scheme == "https" else None,
        proxy=None if proxy is None else parse_proxy(proxy, f"{upstream.scheme.upper()}_PROXY"),
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
    )
    return Pool(dialer)


def parse_proxy(value: str, variable: str) -> OutboundProxy:
    """An ``http://[user:password@]host[:port]`` proxy URL (curl's reading: no scheme is
    http, no port is 1080); the password is never echoed."""
    hint = "use http://[user:password@]host:port"
    parts = urlsplit(value if "://" in value else f"http://{value}")
    try:
        port = parts.port or 1080
    except ValueError:
        port = 0
    if parts.scheme != "http" or not parts.hostname or not port:
        shown = parts.hostname or "?"
        raise ConfigError(
            f"{variable}: the proxy URL (host {shown}) is not an http:// proxy; {hint} (the "
            "tunnel to an https upstream is encrypted end to end either way)"
        )
    authorization = None
    if parts.username is not None:
        user = unquote(parts.username)
        password = unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        authorization = f"Basic {token}"
    return OutboundProxy(parts.hostname, port, variable, authorization)
