"""``sign``: one request's signed headers, for curl; no aiohttp, as scripts run it per call."""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path
from urllib.parse import urlsplit

from ..config.addresses import parse_upstream
from ..config.settings import Settings
from ..errors import ConfigError
from ..keys.credentials import Credentials
from ..serve.signed import signed_headers


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
