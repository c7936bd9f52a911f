"""Request signing, draft-cavage HTTP Signatures with hmac-sha256: pure functions, no I/O."""

from __future__ import annotations

import base64
import functools
import hmac
import math
import time
from collections.abc import Mapping, Sequence

ALGORITHM = "hmac-sha256"

# The header list the vendor's authentication page signs; some of its samples add
# content-length. These five are all a draft-cavage signer here may sign.
DEFAULT_SIGNED_HEADERS: tuple[str, ...] = ("(request-target)", "host", "date", "content-type")
SIGNABLE_HEADERS = (*DEFAULT_SIGNED_HEADERS, "content-length")
REQUIRED_SIGNED_HEADERS = ("(request-target)", "host", "date")
# What the vendor's own tools send, and sign, when a request has no Content-Type of its own.
DEFAULT_CONTENT_TYPE = "application/json"


# English names whatever the locale (strftime's %a and %b follow it): the vendor's shell
# example needs LANG=en_US for the same reason. (email.utils would do it too, at twice the
# start-up cost of `sign`.)
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(epoch_seconds: float) -> str:
    """Format a Unix time as an IMF-fixdate in GMT (RFC 9110 section 5.6.7).

    e.g. ``Mon, 30 Nov 2026 07:19:24 GMT``.
    """
    return _http_date(math.floor(epoch_seconds))


@functools.lru_cache(maxsize=4)
def _http_date(whole_seconds: int) -> str:
    # Cached: every request in the same second has the same Date.
    t = time.gmtime(whole_seconds)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def signing_string(header_names: Sequence[str], values: Mapping[str, str]) -> str:
    """Build the string to sign: one ``name: value`` line per signed header, joined by ``\\n``.

    draft-cavage-http-signatures-12 section 2.3; no trailing newline. ``values`` maps each
    lower-case name (including the pseudo-header ``(request-target)``) to its value.
    """
    return "\n".join(f"{name}: {values[name]}" for name in header_names)


def request_target(method: str, target: str) -> str:
    """The ``(request-target)`` value: lower-case method, a space, path and query as sent."""
    return f"{method.lower()} {target}"


def hmac_sha256_b64(key: bytes, message: str) -> str:
    """Base64 of HMAC-SHA256 over the UTF-8 bytes of ``message``, keyed by the raw key bytes."""
    digest = hmac.digest(key, message.encode("utf-8"), "sha256")  # one C call, no HMAC object
    return base64.b64encode(digest).decode("ascii")


def authorization_header(key_id: str, header_names: Sequence[str], signature: str) -> str:
    """The ``Authorization`` value in exactly the format of the vendor's authentication page."""
    return (
        f'Signature keyId="{key_id}",algorithm="{ALGORITHM}",'
        f'headers="{" ".join(header_names)}",signature="{signature}"'
    )


def sign(
    *,
    key_id: str,
    secret: bytes,
    method: str,
    target: str,
    host: str,
    date: str,
    content_type: str,
    content_length: int | None = None,
    header_names: Sequence[str] = DEFAULT_SIGNED_HEADERS,
) -> str:
    """Sign one request and return its ``Authorization`` header value.

    ``target`` is the path and query exactly as sent upstream, ``host`` the upstream authority
    (with the port when it is not the scheme's default), ``secret`` the decoded key bytes.
    ``content_length`` is needed only when ``content-length`` is among ``header_names``.
    """
    values = {
        "(request-target)": request_target(method, target),
        "host": host,
        "date": date,
        "content-type": content_type,
    }
    if content_length is not None:
        values["content-length"] = str(content_length)
    text = signing_string(header_names, values)
    return authorization_header(key_id, header_names, hmac_sha256_b64(secret, text))


# RFC 9421 HTTP Message Signatures, as the vendor's newer tools sign (label, components and
# parameter order as they emit them; a verifier takes the order from Signature-Input).
RFC9421_LABEL = "remoteit"
RFC9421_COMPONENTS: tuple[str, ...] = ("@method", "@authority", "@target-uri", "date")
RFC9421_LIFETIME = 300


def rfc9421_params(components: Sequence[str], key_id: str, created: int) -> str:
    """The ``@signature-params`` value (RFC 9421 section 2.3): inner list, then parameters."""
    inner = " ".join(f'"{name}"' for name in components)
    return (
        f'({inner});keyid="{key_id}";alg="{ALGORITHM}";'
        f"created={created};expires={created + RFC9421_LIFETIME}"
    )


def rfc9421_base(components: Sequence[str], values: Mapping[str, str], params: str) -> str:
    """The signature base (RFC 9421 section 2.5): one line per component, params last."""
    lines = [f'"{name}": {values[name]}' for name in components]
    lines.append(f'"@signature-params": {params}')
    return "\n".join(lines)


def content_digest(sha256_digest: bytes) -> str:
    """A ``Content-Digest`` value (RFC 9530) from the body's SHA-256 digest."""
    return f"sha-256=:{base64.b64encode(sha256_digest).decode('ascii')}:"


def sign_rfc9421(
    *,
    key_id: str,
    secret: bytes,
    method: str,
    target_uri: str,
    authority: str,
    date: str,
    created: int,
    digest: str | None = None,
) -> tuple[str, str]:
    """Sign one request; return the ``Signature-Input`` and ``Signature`` header values.

    ``target_uri`` is the full URI exactly as sent, ``authority`` the host (lower-case, with
    the port unless it is the scheme's default); ``digest`` a Content-Digest value to cover.
    """
    components = RFC9421_COMPONENTS
    values = {"@method": method.upper(), "@authority": authority, "@target-uri": target_uri}
    values["date"] = date
    if digest is not None:
        components += ("content-digest",)
        values["content-digest"] = digest
    params = rfc9421_params(components, key_id, created)
    signature = hmac_sha256_b64(secret, rfc9421_base(components, values, params))
    return f"{RFC9421_LABEL}={params}", f"{RFC9421_LABEL}=:{signature}:"
