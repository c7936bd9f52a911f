"""Header filtering: what crosses the proxy in each direction (RFC 9110 section 7.6.1)."""

from __future__ import annotations

from multidict import CIMultiDict, CIMultiDictProxy, MultiMapping

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
# The status logged when the client went away before it was answered (nginx's convention).
CLIENT_CLOSED = 499


def connection_tokens(headers: MultiMapping[str]) -> set[str]:
    """Field names listed in ``Connection`` (they are hop-by-hop too, section 7.6.1)."""
    return {
        token.strip().lower()
        for value in headers.getall("Connection", ())
        for token in value.split(",")
        if token.strip()
    }


def _copy_without(headers: MultiMapping[str], drop: frozenset[str]) -> CIMultiDict[str]:
    if "Connection" in headers:  # rare from clients; most requests skip the set union
        drop = drop | connection_tokens(headers)
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in drop)


# What never crosses from the client, as one set built once.
REQUEST_DROP = HOP_BY_HOP | PROXY_OWNED_REQUEST


def request_headers(headers: CIMultiDictProxy[str], drop: frozenset[str]) -> CIMultiDict[str]:
    """The client's headers to forward, before the proxy adds its own and signs; ``drop`` is
    ``REQUEST_DROP``, or a superset of it built once."""
    return _copy_without(headers, drop)


def response_headers(headers: MultiMapping[str]) -> CIMultiDict[str]:
    """The upstream's headers to return: all of them but the hop-by-hop ones."""
    return _copy_without(headers, HOP_BY_HOP)
