"""Flights: requests at the upstream that identical ones wait for, and the answer they share."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web
from multidict import CIMultiDict

from .headers import REQUEST_ID
from .responses import ADDED_WHEN_MISSING, RelayedWhole, error_response

if TYPE_CHECKING:
    from ..errors import UpstreamError

# What makes two requests the same question: the upstream, the profile that signs, the method
# and target, the header lines forwarded (Content-Type, X-R3-User...) and the body.
Key = tuple[str, str, str, bytes, bytes]
# The largest answer shared: a bigger one is streamed to its own client only.
SHARED_ANSWER = 1024 * 1024


@dataclass(frozen=True)
class Shared:
    """An answer as the first request's client got it, to be given to the others."""

    status: int
    reason: str
    headers: CIMultiDict[str]
    body: bytes
    request_id: str  # the request that got it from the upstream
    code: str | None = None  # the proxy's own error code, when it is one of its answers

    def answer(self, request_id: str) -> web.Response:
        """The same answer for another request, with its own request id."""
        if self.code is not None:
            return error_response(self.status, self.code, self.body.decode())
        headers = CIMultiDict(self.headers)
        headers[REQUEST_ID] = request_id
        whole = RelayedWhole(
            status=self.status, reason=self.reason, headers=headers, body=self.body
        )
        whole.unsent = tuple(name for name in ADDED_WHEN_MISSING if name not in headers)
        return whole


class Flight:
    """One request at the upstream that identical ones wait for."""

    __slots__ = ("_future", "_flights", "_key")

    def __init__(
        self, flights: dict[Key, Flight], key: Key, future: asyncio.Future[Shared | None]
    ) -> None:
        self._flights, self._key, self._future = flights, key, future

    async def wait(self) -> Shared | None:
        """The leader's answer; None when it has none to share (then send your own)."""
        return await asyncio.shield(self._future)

    def share(self, shared: Shared | None) -> None:
        """The leader's answer (None: nothing to share): given to every request waiting."""
        if self._flights.get(self._key) is self:
            del self._flights[self._key]  # a request from now on is a new question
        if not self._future.done():
            self._future.set_result(shared)

    def failed(self, error: UpstreamError, request_id: str) -> None:
        """The leader's upstream failure, told to the others as it would have been to them."""
        message = error.message.encode()
        self.share(Shared(error.status, "", CIMultiDict(), message, request_id, error.code))


class Coalescer:
    """The queries in flight, by what they ask."""

    def __init__(self) -> None:
        self._flights: dict[Key, Flight] = {}

    def join(self, key: Key) -> tuple[Flight, bool]:
        """The flight for ``key``, and whether it is new (then the caller sends the request
        and shares its answer) rather than already in the air (then it waits)."""
        flight = self._flights.get(key)
        if flight is not None:
            return flight, False
        flight = Flight(self._flights, key, asyncio.get_running_loop().create_future())
        self._flights[key] = flight
        return flight, True
