"""The errors a broken exchange raises, with messages that name the origin."""

from __future__ import annotations

from ..errors import UpstreamClosed, UpstreamProtocolError


def broken(where: str) -> UpstreamClosed:
    """The error for an upstream connection that closed or was reset mid-exchange."""
    return UpstreamClosed(
        f"the upstream {where} broke the connection or answered something that is not HTTP"
    )


def malformed(where: str, reason: str) -> UpstreamProtocolError:
    """The error for an answer that is not well-formed HTTP/1.1."""
    return UpstreamProtocolError(
        f"the upstream {where} broke the connection or answered something that is not HTTP "
        f"({reason})"
    )
