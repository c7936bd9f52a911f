"""remoteit-proxy: a local proxy that signs requests to the Remote.It API."""

from __future__ import annotations

__version__ = "0.1.0"
