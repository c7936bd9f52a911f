"""Header filtering: what crosses the proxy in each direction (RFC 9110 section 7.6.1)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from multidict import CIMultiDict, CIMultiDictProxy, MultiMapping

if TYPE_CHECKING:
    from ..client import Head

# Hop-by-hop fields (RFC 9110 section 7.6.1, plus Keep-Alive and Proxy-Connection, which
# HTTP/1.0-era clients still send) apply to one connection only and are never forwarded.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

# Request fields the proxy owns: Host and Date are set for the upstream and signed, and a
# client's Authorization must never reach the upstream next to (or instead of) the signature.
# Expect is answered by the proxy itself (app._expectation); forwarding it would make the
# client library wait for a second interim response that never comes.
# Signature fields of either scheme are the proxy's too: it signs last, with nothing of the
# client's that could stand beside or confuse its own signature.
PROXY_OWNED_REQUEST = frozenset(
    {"host", "date", "authorization", "expect", "signature", "signature-input"}
)


REQUEST_ID = "X-Request-Id"


def connection_tokens(headers: MultiMapping[str]) -> set[str]:
    """Field names listed in ``Connection`` (they are hop-by-hop too, section 7.6.1)."""
    return {
        token.strip().lower()
        for value in headers.getall("Connection", ())
        for token in value.split(",")
        if token.strip()
    }


# What never crosses from the client, as one set built once.
REQUEST_DROP = HOP_BY_HOP | PROXY_OWNED_REQUEST


# The same as lower-case bytes, plus the fields the proxy writes itself from what the client
# sent (Content-Type, signed; the framing; the request id): for the raw header lines.
REQUEST_DROP_RAW = frozenset(
    name.encode() for name in REQUEST_DROP | {"content-type", "content-length", REQUEST_ID.lower()}
)


def request_lines(
    headers: CIMultiDictProxy[str], raw: tuple[tuple[bytes, bytes], ...], drop: frozenset[bytes]
) -> list[bytes]:
    """The client's header lines to forward, byte for byte as received, before the proxy adds
    its own and signs; ``drop`` is ``REQUEST_DROP_RAW``, or a superset of it built once."""
    if "Connection" in headers:  # rare from clients; most requests skip the set union
        # Encoded back to the bytes received (aiohttp decodes UTF-8, surrogate-escaped).
        drop = drop | {t.encode("utf-8", "surrogateescape") for t in connection_tokens(headers)}
    return [name + b": " + value for name, value in raw if name.lower() not in drop]


def drop_hop_by_hop(headers: CIMultiDict[str]) -> None:
    """Remove the upstream's hop-by-hop fields (and those its Connection names) in place."""
    names = [name for name in headers if name.lower() in HOP_BY_HOP]
    if not names:
        return
    if "Connection" in headers:
        names += connection_tokens(headers)
    for name in names:
        headers.popall(name, None)


def undecodable(head: Head) -> str | None:
    """The first field (or the reason phrase) with bytes that are not UTF-8: aiohttp writes
    text as UTF-8, so such bytes could not reach the client as they came."""
    if not head.reason.isascii() and _escaped(head.reason):
        return "the reason phrase"
    for name, value in head.headers.items():
        if not value.isascii() and _escaped(value):
            return f"the header {name}"
    return None


def _escaped(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a surrogate escape: a byte that was not UTF-8
        return True
    return False


# Method overrides some frameworks honour, with which a GET could become a DELETE: a request
# carrying one is never taken for what its method says (its policy drops them too).
METHOD_OVERRIDES = (
    "X-HTTP-Method-Override",
    "X-HTTP-Method",
    "X-Method-Override",
    "X_HTTP_Method_Override",
)


def overrides_method(headers: MultiMapping[str]) -> bool:
    """Whether the request asks, by a header, to be taken for another method."""
    return any(name in headers for name in METHOD_OVERRIDES)
