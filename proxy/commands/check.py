"""The ``check`` and ``sign`` commands: one signed request, or the headers for one."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config.settings import Settings
from ..errors import AccountError, UpstreamError
from ..keys.credentials import Credentials
from ..ops.clock import ClockSkew
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
