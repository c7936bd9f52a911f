"""Logging: text or JSON lines on stderr, and the one access-log line per request."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

from ..policy.rules import Operation
from .sink import Sink

access_log = logging.getLogger("proxy.access")
LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _Out:
    """Where access lines go once ``setup_logging`` has run: written as text by the proxy
    itself (no LogRecord, a batch per system call). Without it, as records (a library user's
    own logging config, the tests' log capture)."""

    sink: Sink | None = None
    handler: logging.Handler | None = None
    json = False
    _second = -1
    _local = ""
    _utc = ""


def _stamps(now: float) -> tuple[str, str, int]:
    """The local time as logging's asctime has it, the UTC one JSONFormatter writes, and the
    milliseconds: the strings are made once a second."""
    second = int(now)
    if second != _Out._second:
        _Out._local = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        _Out._utc = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _Out._second = second
    return _Out._local, _Out._utc, int((now - second) * 1000)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr for every other record: queued access lines are written first, so the order
    of lines is the order of events."""

    def emit(self, record: logging.LogRecord) -> None:
        if _Out.sink is not None:
            _Out.sink.flush()
        super().emit(record)


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
    handler = _Handler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    if _Out.sink is not None:
        _Out.sink.flush()
    _Out.sink, _Out.handler, _Out.json = Sink(sys.stderr), handler, log_format == "json"
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
    audit = f" profile={profile}" if profile else ""
    if client:
        audit = f" client={client}{audit}"
    if operations:
        audit += " graphql=" + ";".join(
            f"{op.type}:{op.name or '-'}[{','.join(op.fields)}]" for op in operations
        )
    if rule:
        audit += f" rule={rule}"
    if attempts > 1:  # sent upstream more than once (retried)
        audit += f" attempts={attempts}"
    if coalesced:  # answered with the answer to this other request (--coalesce-queries)
        audit += f" coalesced={coalesced}"
    message = (
        f"{method} {path} {status}{f' code={code}' if code else ''} in={bytes_in} "
        f"out={bytes_out} {seconds * 1000:.1f}ms "
        f"upstream={'-' if upstream_ms is None else f'{upstream_ms}ms'} id={request_id}"
        f"{audit}{f' likely causes: {hint}' if hint else ''}"
    )
    # Written by the proxy only while its own handler is the one there is: a handler added
    # since (a test's log capture, an embedding program's) gets records, as before.
    handlers = logging.root.handlers
    sink = _Out.sink if len(handlers) == 1 and handlers[0] is _Out.handler else None
    if sink is not None and not _Out.json:
        local, _, ms = _stamps(time.time())
        name = logging.getLevelName(level)
        sink.write(f"{local},{ms:03d} {name} proxy.access: {message}\n")
        return
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
    if client is not None or profile is not None:
        fields["client"], fields["profile"] = client, profile
    if operations:
        fields["graphql"] = [
            {"type": op.type, "name": op.name, "fields": list(op.fields)} for op in operations
        ]
    if rule:
        fields["rule"] = rule
    if attempts > 1:
        fields["attempts"] = attempts
    if coalesced:
        fields["coalesced"] = coalesced
    if sink is not None:
        _, utc, ms = _stamps(time.time())
        entry = {
            "time": f"{utc}.{ms:03d}Z",
            "level": logging.getLevelName(level).lower(),
            "logger": "proxy.access",
            "message": message,
        }
        sink.write(json.dumps(entry | fields, ensure_ascii=False) + "\n")
        return
    access_log.log(level, "%s", message, extra={"fields": fields})
