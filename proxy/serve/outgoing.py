"""The upstream request: its body (streamed, or buffered when signing needs it) and headers."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from ..client import Body
from ..signing import DEFAULT_CONTENT_TYPE
from .headers import REQUEST_DROP_RAW, connection_tokens, request_lines
from .signed import DEVELOPER_KEY_HEADER, own_lines, signed_headers

if TYPE_CHECKING:
    from ..config.settings import Settings
    from ..keys.credentials import Credentials
    from .state import Exchange

# The client's fields of the names the proxy writes itself are dropped: it signs last, with
# nothing of the client's beside its own. By (developer key, Content-Digest signed), built once.
_DROP = {
    (key, digest): REQUEST_DROP_RAW
    | ({DEVELOPER_KEY_HEADER.lower().encode()} if key else set())
    | ({b"content-digest"} if digest else set())
    for key in (False, True)
    for digest in (False, True)
}

SMALL_BODY = 64 * 1024


class BodyTooLarge(Exception):
    """A body that must be buffered to be signed is over ``--max-buffered-body``."""


async def read_body(
    request: web.Request, settings: Settings, read: bytes | None = None, whole: bool = False
) -> tuple[Body, int | None, bytes | None]:
    """The body to send, its length (None for a chunked stream), and its SHA-256 when the
    signature covers a digest.

    It streams unless the signature needs what only the whole body tells: a digest, or the
    length of a chunked body. Then it is buffered, up to ``--max-buffered-body``. ``read`` is
    the body when the policy has read it already; ``whole`` asks for a body of a known length
    within the limit to be read whole.
    """
    if read is not None:  # already read whole, for the policy: sent as it came
        sha256 = hashlib.sha256(read).digest() if settings.sign_content_digest else None
        return read, len(read), sha256
    length = request.content_length
    chunked = request.body_exists and length is None
    if not (settings.sign_content_digest or (settings.signs_length and chunked)):
        if not request.body_exists:
            return None, 0, None
        if length is not None and length <= SMALL_BODY:
            # A small body (a GraphQL query) costs less sent whole than streamed, memory stays
            # bounded all the same.
            return await request.read(), length, None
        if whole and length is not None and length <= settings.max_buffered_body:
            return await read_whole(request, length), length, None
        return request.content, length, None
    body = await read_whole(request, settings.max_buffered_body)
    sha256 = hashlib.sha256(body).digest() if settings.sign_content_digest else None
    return body, len(body), sha256


async def read_whole(request: web.Request, limit: int) -> bytes:
    """The whole body, refused (BodyTooLarge) as soon as it is known to be over ``limit``."""
    length = request.content_length
    if length is not None and length > limit:
        raise BodyTooLarge
    if length is not None and length <= SMALL_BODY:
        return await request.read()  # one await for a small body of a known size
    body = bytearray()
    async for chunk in request.content.iter_any():
        if len(body) + len(chunk) > limit:
            raise BodyTooLarge
        body += chunk
    return bytes(body)


def forwarded_content_type(request: web.Request) -> str | None:
    """The client's Content-Type as forwarded: None when it sent none, or declared it
    hop-by-hop (then the default is sent and signed)."""
    content_type = request.headers.get("Content-Type")
    if (
        content_type is not None
        and "Connection" in request.headers
        and "content-type" in connection_tokens(request.headers)
    ):
        return None
    return content_type


def _wire_target(raw: str) -> str:
    """The target to send and sign: byte for byte, no normalising, no re-encoding; only a
    fragment (never part of a request, RFC 9110 section 7.1) and an empty query's lone "?"
    are dropped, as HTTP client libraries do."""
    if "#" in raw:
        raw = raw.partition("#")[0]
    if raw.find("?") == len(raw) - 1:
        raw = raw[:-1]
    return raw


@dataclass(slots=True)
class Outgoing:
    """The upstream request but its signature: signed by ``signed``, afresh for each attempt."""

    target: str
    lines: list[bytes]  # the client's header lines and the request id
    body: Body
    length: int | None
    sha256: bytes | None
    content_type: str

    @property
    def replayable(self) -> bool:
        """Whether the body can be sent again (it is not streamed from the client)."""
        return self.body is None or isinstance(self.body, bytes)

    def signed(
        self, settings: Settings, creds: Credentials, method: str, now: float
    ) -> list[bytes]:
        """The header lines to send, signed with ``creds`` at ``now`` (a new list each time:
        the pool appends the framing to it)."""
        upstream = settings.upstream
        headers = signed_headers(
            settings,
            creds,
            scheme=upstream.scheme,
            authority=upstream.authority,
            method=method,
            target=self.target,
            content_type=self.content_type,
            now=now,
            length=self.length,
            sha256=self.sha256,
        )
        return self.lines + own_lines(headers)


async def build_upstream_request(
    request: web.Request,
    exchange: Exchange,
    settings: Settings,
    raw_path: str,
    whole: bool = False,
) -> Outgoing:
    """The upstream request, to be signed last; ``settings`` are those of the upstream it goes
    to (``state.route``), ``raw_path`` the path and query as that upstream gets them, ``whole``
    asks for a body of a known length up to ``--max-buffered-body`` to be read whole (so that
    it can be sent again)."""
    client = exchange.client
    assert client is not None, "a request is forwarded for a client"
    creds = client.credentials.current
    target = settings.upstream.prefix + _wire_target(raw_path)
    body, length, sha256 = await read_body(request, settings, exchange.body, whole)
    drop = _DROP[bool(creds.developer_key), settings.sign_content_digest]
    if client.policy is not None:
        drop = drop | client.policy_drop
    lines = request_lines(request.headers, request.raw_headers, drop)
    # The id in the access line: the client's own when usable, else a new one (replacing it).
    lines.append(b"X-Request-Id: " + exchange.request_id.encode())
    content_type = forwarded_content_type(request) or DEFAULT_CONTENT_TYPE
    return Outgoing(target, lines, body, length, sha256, content_type)
