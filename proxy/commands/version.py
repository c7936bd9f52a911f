"""``version``: the proxy's version and those of what it runs on, for a bug report."""

from __future__ import annotations

import importlib.metadata
import platform

from .. import __version__

_PARTS = ("aiohttp", "prometheus-client", "graphql-core", "keyring", "uvloop")


def version_text() -> str:
    """``remoteit-proxy 0.1.0``, then Python, the platform and each library's version."""
    lines = [
        f"remoteit-proxy {__version__}",
        f"Python {platform.python_version()} ({platform.python_implementation()})",
        f"platform {platform.platform(terse=True)}",
    ]
    for name in _PARTS:
        try:
            lines.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            lines.append(f"{name} not installed")
    return "\n".join(lines)
