"""Relaying an answer's body: streamed to the client as it comes, or read whole to be shared."""

from __future__ import annotations

import logging

from aiohttp import web

from ..client import Answer
from ..errors import UpstreamError
from .responses import CLIENT_CLOSED

log = logging.getLogger("proxy.forward")  # the name log lines have always had


def client_gone(request: web.Request) -> bool:
    """Whether the client's connection is closed or closing."""
    return request.transport is None or request.transport.is_closing()


async def read_whole(answer: Answer) -> bytes:
    """The rest of an answer's body, read to its end."""
    chunks = []
    while chunk := await answer.read():
        chunks.append(chunk)
    return b"".join(chunks)


async def relay(
    request: web.Request, answer: Answer, response: web.StreamResponse, path: str
) -> tuple[int, int | None]:
    """Copy the upstream body to the client chunk by chunk, as it arrives.

    Returns the bytes copied and, when the copy broke off, the status to log for it:
    499 when the client left, 502 when the upstream did.
    """
    size = 0
    try:
        while chunk := await answer.read():
            size += len(chunk)
            await response.write(chunk)
        await response.write_eof()
    except (UpstreamError, ConnectionError) as exc:
        # One side broke mid-body. Abort the client connection rather than end the body
        # cleanly, so that a truncated answer can never look complete (no last chunk, short
        # Content-Length); the upstream connection is closed too, never reused.
        client_left = client_gone(request)
        level = logging.INFO if client_left else logging.WARNING
        who = "the client closed the connection" if client_left else "the upstream broke off"
        log.log(
            level,
            "%s %s: transfer aborted mid-body: %s (%s)",
            request.method,
            path,
            who,
            exc.code if isinstance(exc, UpstreamError) else "connection lost",
        )
        answer.discard()
        if request.transport is not None:
            request.transport.abort()
        return size, CLIENT_CLOSED if client_left else 502
    return size, None
