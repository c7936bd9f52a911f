"""The proxy's signed headers for an upstream request, and its own GraphQL POST: no aiohttp."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from .. import signing
from ..signing import DEFAULT_CONTENT_TYPE

if TYPE_CHECKING:
    from ..config.settings import Settings
    from ..keys.credentials import Credentials

# The vendor's collection sends it lower-case; header names are case-insensitive (RFC 9110 5.1).
DEVELOPER_KEY_HEADER = "DeveloperKey"


def signed_headers(
    settings: Settings,
    creds: Credentials,
    *,
    scheme: str,
    authority: str,
    method: str,
    target: str,
    content_type: str,
    now: float,
    length: int | None = None,
    sha256: bytes | None = None,
) -> dict[str, str]:
    """The headers the proxy adds, the signature last since it covers the others.

    ``target`` is the path and query as sent, ``length`` the exact body length (needed when
    it is signed), ``sha256`` the body's digest (needed for ``--sign-content-digest``).
    """
    date = signing.http_date(now)
    headers = {"Host": authority, "Date": date, "Content-Type": content_type}
    if settings.signs_length:
        headers["Content-Length"] = str(length or 0)
    if creds.developer_key:
        headers[DEVELOPER_KEY_HEADER] = creds.developer_key
    if settings.scheme == "rfc9421":
        digest = None
        if settings.sign_content_digest:
            digest = headers["Content-Digest"] = signing.content_digest(
                sha256 or hashlib.sha256().digest()
            )
        headers["Signature-Input"], headers["Signature"] = signing.sign_rfc9421(
            key_id=creds.access_key_id,
            secret=creds.secret,
            method=method,
            target_uri=f"{scheme}://{authority}{target}",
            authority=authority,
            date=date,
            created=int(now),
            digest=digest,
        )
        return headers
    headers["Authorization"] = signing.sign(
        key_id=creds.access_key_id,
        secret=creds.secret,
        method=method,
        target=target,
        host=authority,
        date=date,
        content_type=content_type,
        content_length=length if settings.signs_length else None,
        header_names=settings.sign_headers,
    )
    return headers


def own_lines(headers: dict[str, str]) -> list[bytes]:
    """The proxy's own fields as header lines; the framing (Content-Length, whose signed
    value is the body's real length) is written by the pool, with the body."""
    return [
        f"{name}: {value}".encode("utf-8", "surrogateescape")
        for name, value in headers.items()
        if name != "Content-Length"
    ]


def graphql_post(
    settings: Settings, creds: Credentials, body: bytes, now: float
) -> tuple[str, list[bytes]]:
    """The target and header lines of the proxy's own GraphQL POST (a login to check a key,
    the account's calls), signed with ``creds`` as any request is."""
    upstream = settings.upstream
    target = upstream.prefix + "/graphql/v1"
    headers = signed_headers(
        settings,
        creds,
        scheme=upstream.scheme,
        authority=upstream.authority,
        method="POST",
        target=target,
        content_type=DEFAULT_CONTENT_TYPE,
        now=now,
        length=len(body),
        sha256=hashlib.sha256(body).digest(),
    )
    return target, own_lines(headers)
