"""An HTTP/1.1 client for one origin: strict answer parsing, a keep-alive pool, streaming.

It knows nothing of the proxy above it, like httpcore under httpx: the request path hands it
a method, a target, header lines and a body, and gets back an answer to stream.

May import: proxy.errors.
"""

from __future__ import annotations

from .dial import Dialer, Origin, OutboundProxy
from .pool import Answer, Pool
from .sending import Body, BodyStream
from .tunnel import Tunnel
from .wire import Framing, Head, ParseError, request_head

__all__ = [
    "Answer",
    "Body",
    "BodyStream",
    "Dialer",
    "Framing",
    "Head",
    "Origin",
    "OutboundProxy",
    "ParseError",
    "Pool",
    "Tunnel",
    "request_head",
]
