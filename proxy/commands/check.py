"""The ``check`` and ``sign`` commands: one signed request, or the headers for one."""

from __future__ import annotations

import hashlib
import json
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..config.addresses import parse_upstream
from ..config.settings import Settings
from ..errors import ConfigError, UpstreamError
from ..keys.credentials import Credentials
from ..ops.clock import ClockSkew
from ..serve.outgoing import own_lines, signed_headers
from ..serve.pools import create_pool
from ..signing import DEFAULT_CONTENT_TYPE

LOGIN_QUERY = b'{"query":"{ login { email } }"}'


@dataclass
class CheckResult:
    """What ``check`` found: exit code and the lines to print."""

    ok: bool
    lines: list[str]


async def _post_login(
    settings: Settings, creds: Credentials, skew: ClockSkew, environ: Mapping[str, str]
) -> tuple[int, dict[str, Any] | None, float]:
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
        now=skew.now(),
        length=len(LOGIN_QUERY),
        sha256=hashlib.sha256(LOGIN_QUERY).digest(),
    )
    pool = create_pool(settings, environ)
    try:
        sent, started = skew.clock(), time.perf_counter()
        async with await pool.request("POST", target, own_lines(headers), LOGIN_QUERY) as answer:
            body = b""
            while chunk := await answer.read():
                body += chunk
    finally:
        pool.close()
    latency = time.perf_counter() - started
    head = answer.head
    skew.observe(head.headers.get("Date"), sent, skew.clock())
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    return head.status, parsed if isinstance(parsed, dict) else None, latency


async def check(settings: Settings, creds: Credentials, environ: Mapping[str, str]) -> CheckResult:
    """Send ``{ login { email } }`` signed as ``serve`` would, and diagnose the answer."""
    skew = ClockSkew(settings.clock_skew_threshold, correct=not settings.no_clock_correction)
    facts = [
        f"profile   {creds.profile}",
        f"key       {creds.masked_key_id}",
        f"upstream  {settings.upstream}",
    ]
    try:
        status, body, latency = await _post_login(settings, creds, skew, environ)
        if status in (401, 403) and skew.correcting:
            # The answer showed our clock is off: the proxy would sign with the corrected time.
            status, body, latency = await _post_login(settings, creds, skew, environ)
    except UpstreamError as error:
        return CheckResult(False, [f"FAILED: {error.message} ({error.code})", *facts])
    facts += [
        f"status    {status}",
        f"latency   {latency * 1000:.0f} ms",
        f"clock     {skew.offset:+d} s off the API's clock"
        + (" (corrected)" if skew.correcting else ""),
    ]
    email = ((body or {}).get("data") or {}).get("login") or {}
    if status == 200 and isinstance(email, dict) and email.get("email"):
        return CheckResult(
            True, ["OK: the API accepted the signed request", f"account   {email['email']}", *facts]
        )
    return CheckResult(False, [f"FAILED: {_diagnosis(status, body, skew)}", *facts])


def _diagnosis(status: int, body: dict[str, Any] | None, skew: ClockSkew) -> str:
    if status in (401, 403):
        return f"the API refused the signature ({status}). Likely causes: " + skew.refusal_hints(
            status
        )
    if status == 429:
        return "the API is throttling this key (429); wait a minute and try again"
    errors = (body or {}).get("errors")
    if status == 200 and isinstance(errors, list) and errors:
        first = errors[0].get("message", "") if isinstance(errors[0], dict) else ""
        return f"the API answered with an error: {str(first)[:200]}"
    return f"unexpected answer {status} from the API; is --upstream the Remote.It API?"


def sign_request(
    settings: Settings,
    creds: Credentials,
    *,
    target: str,
    method: str,
    content_type: str,
    data_file: Path | None,
    output: str,
    now: float,
) -> tuple[str, list[str]]:
    """What ``sign`` prints for one request to ``target`` (a path or a URL), and warnings."""
    warnings: list[str] = []
    if target.startswith("/"):
        upstream = settings.upstream
        url, scheme = upstream.origin + upstream.prefix + target, upstream.scheme
        host, path = upstream.authority, upstream.prefix + target
    else:
        base, _, query = target.partition("?")
        parsed = parse_upstream(base, "PATH_OR_URL")  # only http(s), no user or fragment
        url, scheme, host = target, parsed.scheme, parsed.authority
        path = (urlsplit(base).path or "/") + (f"?{query}" if query else "")
        if parsed.origin != settings.upstream.origin:
            warnings.append(
                f"{parsed.origin} is not the configured upstream {settings.upstream.origin}: "
                f"these headers are signed for {parsed.authority} and work only for a request "
                "sent there"
            )
    body = b""
    if data_file is not None:
        try:
            body = data_file.read_bytes()
        except OSError as exc:
            raise ConfigError(f"--data-file: cannot read {data_file} ({exc.strerror})") from None
    headers = signed_headers(
        settings,
        creds,
        scheme=scheme,
        authority=host,
        method=method.upper(),
        target=path,
        content_type=content_type,
        now=now,
        length=len(body),
        sha256=hashlib.sha256(body).digest(),
    )
    del headers["Host"]  # the client sends it from the URL; it is the value signed
    if output == "json":
        text = json.dumps({"method": method.upper(), "url": url, "headers": headers}, indent=2)
        return text, warnings
    if output == "curl":
        # -sS: no progress meter, but errors still shown. shlex.join quotes for POSIX shells.
        parts = ["curl", "-sS", "-X", method.upper(), url]
        for name, value in headers.items():
            parts += ["-H", f"{name}: {value}"]
        if data_file is not None:
            parts += ["--data-binary", f"@{data_file}"]
        return shlex.join(parts), warnings
    return "\n".join(f"{name}: {value}" for name, value in headers.items()), warnings
