"""The ``check`` and ``sign`` commands: one signed request, or the headers for one."""

from __future__ import annotations

import hashlib
import hmac
import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..config.addresses import parse_upstream
from ..config.settings import Settings
from ..errors import AccountError, ConfigError, UpstreamError
from ..keys.credentials import Credentials
from ..ops.clock import ClockSkew
from ..serve.outgoing import signed_headers
from .api import Account

LOGIN_QUERY = b'{"query":"{ login { email } }"}'


@dataclass
class CheckResult:
    """What ``check`` found: exit code and the lines to print."""

    ok: bool
    lines: list[str]


async def check(settings: Settings, creds: Credentials, environ: Mapping[str, str]) -> CheckResult:
    """Send ``{ login { email } }`` signed as ``serve`` would, and diagnose the answer; then
    say whether the stored developer key is the account's."""
    facts = [
        f"profile   {creds.profile}",
        f"key       {creds.masked_key_id}",
        f"upstream  {settings.upstream}",
    ]
    async with Account(settings, environ) as api:
        skew = api.skew
        try:
            reply = await api.post(creds, LOGIN_QUERY)
        except UpstreamError as error:
            return CheckResult(False, [f"FAILED: {error.message} ({error.code})", *facts])
        status, body = reply.status, reply.body
        facts += [
            f"status    {status}",
            f"latency   {reply.seconds * 1000:.0f} ms",
            f"clock     {skew.offset:+d} s off the API's clock"
            + (" (corrected)" if skew.correcting else ""),
        ]
        email = ((body or {}).get("data") or {}).get("login") or {}
        if not (status == 200 and isinstance(email, dict) and email.get("email")):
            return CheckResult(False, [f"FAILED: {_diagnosis(status, body, skew)}", *facts])
        facts.append(f"devkey    {await _developer_key(api, creds)}")
    return CheckResult(
        True, ["OK: the API accepted the signed request", f"account   {email['email']}", *facts]
    )


async def _developer_key(api: Account, creds: Credentials) -> str:
    """Whether the stored developer key is the account's (never either key itself)."""
    try:
        account = await api.developer_key(creds)
    except AccountError as exc:
        return f"not compared: {exc.message}"
    stored = creds.developer_key
    if account is None:
        return "the account has none" + (" (the stored one is not the account's)" if stored else "")
    if stored is None:
        return (
            "none stored; the REST API needs the account's: store it with remoteit-proxy "
            f"import or configure --profile {creds.profile} --force"
        )
    if hmac.compare_digest(stored.encode(), account.encode()):
        return "matches the account's"
    return (
        "DIFFERS from the account's: REST calls will be refused; store the account's with "
        f"remoteit-proxy configure --profile {creds.profile} --force"
    )


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
