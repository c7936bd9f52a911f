"""A stand-in for api.remote.it that verifies every signature on its own.

Nothing here imports ``proxy``: the Authorization header is parsed and the HMAC recomputed
independently, so a bug in the proxy's signer cannot hide behind the same bug here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

REQUIRED = ("(request-target)", "host", "date", "content-type")
_PARAM = re.compile(r'(\w+)="([^"]*)"')


@dataclass
class Received:
    """One request as the upstream saw it."""

    method: str
    raw_path: str
    headers: list[tuple[str, str]]
    body_sha256: str
    body_size: int
    verified: bool
    reason: str = ""
    peer_port: int = 0

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        assert len(values) <= 1, f"{name} sent {len(values)} times"
        return values[0] if values else None


def pattern(size: int) -> bytes:
    """``size`` bytes that are not all alike, so that a shifted or repeated chunk shows."""
    return hashlib.sha256(str(size).encode()).digest() * (size // 32) + b"x" * (size % 32)


Responder = Callable[[web.Request, Received], Awaitable[web.StreamResponse]]


async def echo(request: web.Request, received: Received) -> web.StreamResponse:
    return web.json_response(
        {
            "method": received.method,
            "path": received.raw_path,
            "sha256": received.body_sha256,
            "size": received.body_size,
        }
    )


def check_signature(
    method: str,
    raw_path: str,
    headers: CIMultiDictProxy[str] | CIMultiDict[str],
    keys: dict[str, bytes],
) -> str:
    """Verify a draft-cavage hmac-sha256 signature; return '' if valid, else why not."""
    auth = headers.get("Authorization", "")
    if not auth.startswith("Signature "):
        return "no Signature authorization"
    params = dict(_PARAM.findall(auth[len("Signature ") :]))
    if params.get("algorithm") != "hmac-sha256":
        return "algorithm"
    secret = keys.get(params.get("keyId", ""))
    if secret is None:
        return "unknown keyId"
    names = params.get("headers", "").split(" ")
    if any(name not in names for name in REQUIRED):
        return "headers list lacks a required header"
    lines = []
    for name in names:
        if name == "(request-target)":
            value = f"{method.lower()} {raw_path}"
        else:
            values = headers.getall(name, [])
            if len(values) != 1:
                return f"{name} sent {len(values)} times"
            value = values[0]
        lines.append(f"{name}: {value}")
    expected = hmac.new(secret, "\n".join(lines).encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(base64.b64decode(params.get("signature", "")), expected):
        return "signature mismatch"
    return ""


_SIGNATURE_INPUT = re.compile(r"(\w+)=\(([^)]*)\)(.*)")
_RFC9421_PARAM = re.compile(r';(\w+)=(?:"([^"]*)"|(\d+))')
RFC9421_REQUIRED = ("@method", "@authority", "@target-uri", "date")


def check_rfc9421(
    method: str,
    target_uri: str,
    headers: CIMultiDictProxy[str] | CIMultiDict[str],
    keys: dict[str, bytes],
    body_sha256: bytes,
    now: float,
) -> str:
    """Verify an RFC 9421 hmac-sha256 signature, building the signature base here from the
    RFC's section 2 (not from the proxy's code); return '' if valid, else why not."""
    match = _SIGNATURE_INPUT.fullmatch(headers.get("Signature-Input", ""))
    if match is None:
        return "no Signature-Input"
    label, inner, params_text = match.groups()
    components = re.findall(r'"([^"]+)"', inner)
    params = {
        k: quoted if quoted else int(number)
        for k, quoted, number in _RFC9421_PARAM.findall(params_text)
    }
    if any(name not in components for name in RFC9421_REQUIRED):
        return "a required component is not covered"
    if params.get("alg") != "hmac-sha256":
        return "alg"
    secret = keys.get(str(params.get("keyid", "")))
    if secret is None:
        return "unknown keyid"
    created, expires = params.get("created"), params.get("expires")
    if not isinstance(created, int) or not isinstance(expires, int) or expires <= now:
        return "expired or undated signature"
    values = {
        "@method": method,
        "@authority": headers.get("Host", "").lower(),
        "@target-uri": target_uri,
    }
    lines = []
    for name in components:
        if name.startswith("@"):
            value = values.get(name)
            if value is None:
                return f"unsupported component {name}"
        else:
            found = headers.getall(name, [])
            if len(found) != 1:
                return f"{name} sent {len(found)} times"
            value = found[0].strip()
        lines.append(f'"{name}": {value}')
    lines.append(f'"@signature-params": ({inner}){params_text}')
    expected = hmac.new(secret, "\n".join(lines).encode(), hashlib.sha256).digest()
    signature = re.fullmatch(rf"{label}=:([A-Za-z0-9+/=]+):", headers.get("Signature", ""))
    if signature is None or not hmac.compare_digest(base64.b64decode(signature[1]), expected):
        return "signature mismatch"
    if "content-digest" in components:
        want = f"sha-256=:{base64.b64encode(body_sha256).decode()}:"
        if headers.get("Content-Digest") != want:
            return "content-digest does not match the body"
    return ""


@dataclass
class FakeUpstream:
    """Keys it accepts (key id -> secret bytes), what it received, and how it answers."""

    keys: dict[str, bytes]
    respond: Responder = echo
    clock: Callable[[], float] = time.time
    max_skew: float = 300.0
    received: list[Received] = field(default_factory=list)
    url: str = ""

    def last(self) -> Received:
        """The last request received, asserting that it was correctly signed."""
        assert self.received, "the upstream received nothing"
        received = self.received[-1]
        assert received.verified, received.reason
        return received

    def verify(self, request: web.Request, size: int, sha256: bytes) -> str:
        """Return '' when the request is correctly signed and dated, else why not."""
        if "Signature-Input" in request.headers:
            target_uri = f"{request.scheme}://{request.headers.get('Host', '')}{request.raw_path}"
            reason = check_rfc9421(
                request.method, target_uri, request.headers, self.keys, sha256, self.clock()
            )
        else:
            reason = check_signature(request.method, request.raw_path, request.headers, self.keys)
            signed = dict(_PARAM.findall(request.headers.get("Authorization", "")))
            length_signed = "content-length" in signed.get("headers", "").split(" ")
            if not reason and length_signed and request.headers.get("Content-Length") != str(size):
                reason = "the signed Content-Length is not the body's length"
        if reason:
            return reason
        try:
            date = parsedate_to_datetime(request.headers["Date"]).timestamp()
        except (TypeError, ValueError):
            return "malformed date"
        if abs(date - self.clock()) > self.max_skew:
            return "stale date"
        return ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        digest, size = hashlib.sha256(), 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            size += len(chunk)
        reason = self.verify(request, size, digest.digest())
        received = Received(
            method=request.method,
            raw_path=request.raw_path,
            headers=[(k.decode(), v.decode()) for k, v in request.raw_headers],
            body_sha256=digest.hexdigest(),
            body_size=size,
            verified=not reason,
            reason=reason,
            peer_port=request.transport.get_extra_info("peername")[1] if request.transport else 0,
        )
        self.received.append(received)
        if reason:
            response: web.StreamResponse = web.json_response(
                {"message": "Unauthorized"}, status=401
            )
        else:
            response = await self.respond(request, received)
        if not response.prepared:  # answer with this API's own clock, as a real server does
            response.headers.setdefault("Date", formatdate(self.clock(), usegmt=True))
        return response

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app
