"""Sending a request's body on an upstream connection while its answer is awaited."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Protocol

from ..errors import UpstreamError
from .connection import Connection


class BodyStream(Protocol):
    """A request body that arrives in pieces (aiohttp's StreamReader is one)."""

    def iter_any(self) -> AsyncIterator[bytes]: ...


Body = bytes | BodyStream | None


async def stream(conn: Connection, head: bytes, body: BodyStream, length: int | None) -> None:
    """Send the head, then the client's body as it arrives, while the answer is awaited."""
    size = 0
    try:
        conn.write(head)
        async for chunk in body.iter_any():
            size += len(chunk)
            conn.write(chunk if length is not None else b"%x\r\n%b\r\n" % (len(chunk), chunk))
            await conn.drain()
        if length is None:
            conn.write(b"0\r\n\r\n")
        elif size != length:
            raise ConnectionResetError("the request body ended short of its Content-Length")
        conn.sent()
    except UpstreamError:
        pass  # the connection failed: the reader of the answer reports it
    except Exception as exc:
        # The client's body broke off (it left mid-upload). Reset the upstream connection so
        # that the upstream never sees a complete request.
        conn.abort(ConnectionResetError(f"the client's request body broke off ({exc!r})"))


async def flush(conn: Connection) -> None:
    """Wait until a body written whole has left, then start the wait for the answer."""
    with contextlib.suppress(UpstreamError):  # the reader of the answer reports it
        await conn.drain()
        conn.sent()
