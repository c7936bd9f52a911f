"""aiohttp's server as the proxy needs it: its own errors as JSON, no added fields, sockets."""

from __future__ import annotations

import logging
import traceback
from typing import Any

from aiohttp import http_exceptions, web
from aiohttp.web_protocol import RequestHandler

from .responses import drop_added_fields, error_response
from .websocket import ClientBytes

log = logging.getLogger("proxy.protocol")  # the name log lines have always had


class JSONErrorHandler(RequestHandler):
    """aiohttp's connection handler, answering its own errors (bad requests) as short JSON.

    The default text answer and log line quote the offending bytes, which may hold a token.
    """

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if isinstance(exc, http_exceptions.LineTooLong):
            status, code, text = 431, "header_too_large", "a request line or header is too long"
        elif isinstance(exc, http_exceptions.BadHttpMethod):
            code, text = "bad_method", "the request method is not a valid HTTP token"
        elif status == 400:
            code, text = "bad_request", "the request is not valid HTTP/1.1"
        else:
            code, text = "internal_error", "the proxy failed to handle the request"
        if status >= 500 and exc is not None:
            # The stack only: exception messages from libraries may quote header values.
            stack = "".join(traceback.format_tb(exc.__traceback__))
            log.error("internal error (%s):\n%s", type(exc).__name__, stack)
        else:
            log.info("bad request from %s: %s", request.remote, code)
        if request.writer.output_size > 0:
            raise ConnectionError("the response was already started")
        response = error_response(status, code, text)
        response.force_close()
        return response

    def data_received(self, data: bytes) -> None:
        parser = self._payload_parser
        if data and isinstance(parser, ClientBytes):
            # An open WebSocket's bytes. aiohttp drops what arrives once it begins to shut
            # down; a socket is relayed both ways until it is closed (at the deadline, 1001).
            parser.feed_data(data)
            return
        super().data_received(data)


class ProxyRequest(web.BaseRequest):
    async def _prepare_hook(self, response: web.StreamResponse) -> None:
        # aiohttp's hook between filling in the answer's head and writing it.
        drop_added_fields(response)


class ProxyServer(web.Server):
    def __call__(self) -> RequestHandler:
        return JSONErrorHandler(self, loop=self._loop, **self._kwargs)

    def _make_request(
        self, message: Any, payload: Any, protocol: Any, writer: Any, task: Any
    ) -> web.BaseRequest:
        return ProxyRequest(message, payload, protocol, writer, task, self._loop)
