"""Logging: text or JSON lines on stderr, and the one access-log line per request."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

from ..policy.rules import Operation

access_log = logging.getLogger("proxy.access")
LOG_FORMATS = ("text", "json")


class JSONFormatter(logging.Formatter):
    """One JSON object per line; an access line's fields are top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str, log_format: str = "text") -> None:
    """Log to stderr, one line per record; third-party libraries only from WARNING up."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("proxy").setLevel(level.upper())


def log_access(
    *,
    method: str,
    path: str,
    status: int,
    bytes_in: int,
    bytes_out: int,
    seconds: float,
    upstream_seconds: float | None,
    request_id: str,
    code: str | None = None,
    client: str | None = None,
    profile: str | None = None,
    operations: Sequence[Operation] | None = None,
    rule: str | None = None,
    attempts: int = 1,
    coalesced: str | None = None,
    hint: str = "",
    level: int = logging.INFO,
) -> None:
    """The access line: no header values, no bodies, no query string.

    ``code`` is the proxy's own error code when the proxy answered (``code=...`` in the line),
    so that its refusals are told apart from the API's. ``client`` is the client's name (None
    without client sections), ``profile`` the profile signed with; ``operations`` the GraphQL
    operations a policy looked at (type, name and root fields: never arguments or variables),
    ``rule`` the policy rule that refused the request, ``attempts`` the times it was sent
    upstream (shown when more than one), ``coalesced`` the request whose answer it shared.
    """
    if not access_log.isEnabledFor(level):
        return
    upstream_ms = None if upstream_seconds is None else round(upstream_seconds * 1000, 1)
    fields: dict[str, Any] = {
        "method": method,
        "path": path,
        "status": status,
        "code": code,
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "ms": round(seconds * 1000, 1),
        "upstream_ms": upstream_ms,
        "request_id": request_id,
    }
    if hint:
        fields["hint"] = hint
    audit = f" profile={profile}" if profile else ""
    if client is not None or profile is not None:
        fields["client"], fields["profile"] = client, profile
        audit = f" client={client}{audit}" if client else audit
    if operations:
        fields["graphql"] = [
            {"type": op.type, "name": op.name, "fields": list(op.fields)} for op in operations
        ]
        audit += " graphql=" + ";".join(
            f"{op.type}:{op.name or '-'}[{','.join(op.fields)}]" for op in operations
        )
    if rule:
        fields["rule"] = rule
        audit += f" rule={rule}"
    if attempts > 1:  # sent upstream more than once (retried)
        fields["attempts"] = attempts
        audit += f" attempts={attempts}"
    if coalesced:  # answered with the answer to this other request (--coalesce-queries)
        fields["coalesced"] = coalesced
        audit += f" coalesced={coalesced}"
    upstream = "-" if upstream_ms is None else f"{upstream_ms}ms"
    access_log.log(
        level,
        "%s %s %d%s in=%d out=%d %.1fms upstream=%s id=%s%s%s",
        method,
        path,
        status,
        f" code={code}" if code else "",
        bytes_in,
        bytes_out,
        seconds * 1000,
        upstream,
        request_id,
        audit,
        f" likely causes: {hint}" if hint else "",
        extra={"fields": fields},
    )
