"""The proxy's own answers: short JSON error bodies with a stable ``code``."""

from __future__ import annotations

import json

from aiohttp import web

# The status logged when the client went away before it was answered (nginx's convention).
CLIENT_CLOSED = 499
# aiohttp adds a Server field to every answer, and Content-Type: application/octet-stream to
# any with a body. The proxy adds neither: an answer relayed from the upstream names those of
# the two it did not send, and the proxy's own answers have a Content-Type of their own.
# (Date is added when missing: RFC 9110 section 6.6.1 asks a recipient with a clock to.)
ADDED_WHEN_MISSING = ("Server", "Content-Type")
_NOT_OURS = ("Server",)


class Relayed(web.StreamResponse):
    """An answer from the upstream, streamed; ``unsent``: fields it came without."""

    unsent: tuple[str, ...] = ()


class RelayedWhole(web.Response):
    """An answer from the upstream whose whole body came with its head."""

    unsent: tuple[str, ...] = ()


def drop_added_fields(response: web.StreamResponse) -> None:
    """Remove what aiohttp added to an answer's head that neither the upstream nor the proxy
    meant to send (called just before the head is written)."""
    for name in getattr(response, "unsent", _NOT_OURS):
        response.headers.popall(name, None)


class ErrorResponse(web.Response):
    """The proxy's own error answer; ``code`` tells it apart from the API's in the access line."""

    def __init__(self, status: int, code: str, message: str) -> None:
        body = json.dumps({"error": {"code": code, "message": message}})
        super().__init__(text=body, status=status, content_type="application/json")
        self.code = code


def error_response(status: int, code: str, message: str) -> ErrorResponse:
    """The proxy's own error answer: a small JSON body with a stable ``code``."""
    return ErrorResponse(status, code, message)
