"""Request handling: own endpoints, refusals, the token check, forwarding, the access line."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time

import aiohttp
from aiohttp import web

from ..keys.credentials import ENVIRONMENT, default_credentials_path
from ..keys.profiles import DEVELOPER_API_KEY
from ..ops.logs import log_access
from . import endpoints, websocket
from .admit import admit
from .forward import forward
from .gate import gate, graphql_path
from .headers import REQUEST_ID
from .responses import CLIENT_CLOSED, ErrorResponse, error_response
from .state import Exchange, ProxyState

log = logging.getLogger("proxy.app")  # the name log lines have always had

# A client's own request id is kept if it is a short token; anything else is replaced.
_CLIENT_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")
# New ids: 64 random bits. They need to be unique, not unguessable, so a generator seeded
# once from the OS replaces a system call per request (secrets.token_hex asks the kernel).
_new_id = random.Random().getrandbits


async def _expectation(request: web.Request) -> web.Response | None:
    """Answer ``Expect: 100-continue`` (RFC 9110 10.1.1) now that the request is accepted, so
    the client sends its body; any other expectation cannot be met (417)."""
    expect = request.headers.get("Expect")
    if expect is None:
        return None
    if expect.lower() != "100-continue":
        return error_response(417, "expectation_failed", "only Expect: 100-continue is supported")
    if request.version >= aiohttp.HttpVersion11:
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    return None


async def _answer(
    request: web.Request, state: ProxyState, exchange: Exchange
) -> web.StreamResponse:
    """An admitted request: an upgrade's checks, expectations, the client's policy, then
    forwarded."""
    upgrade = websocket.upgrade_asked(request)
    if upgrade is not None and (refused := websocket.refuse_upgrade(request, state, upgrade)):
        return refused
    client = exchange.client
    assert client is not None, "an admitted request has a client"
    if state.throttle.rated and (over := state.throttle.over_rate(client)) is not None:
        if not request.content.at_eof():
            over.force_close()  # its body is not read
        return over
    answer = await _expectation(request)
    if answer is None and client.policy is not None:
        answer = await gate(request, state, client.policy, exchange)
    if answer is not None:
        return answer
    return await forward(request, state, exchange, upgrade is not None)


def _logged_path(raw_path: str) -> str:
    """The path for the access line: raw, without the query; bytes that are not ASCII (refused,
    but still logged) shown as escapes, so that no log reader meets undecodable text."""
    path = raw_path.partition("?")[0]
    if path.isascii():
        return path
    return path.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")


def _request_id(request: web.Request) -> str:
    given = request.headers.get(REQUEST_ID, "")
    if given and _CLIENT_REQUEST_ID.fullmatch(given):
        return given
    return f"{_new_id(64):016x}"


def _no_developer_key(state: ProxyState, exchange: Exchange, raw_path: str) -> str:
    """The cause of a REST request's refusal when its key has no developer key (the REST API
    needs one, GraphQL does not), with how to add one; "" when that is not the case."""
    creds = exchange.signed_with
    if (
        creds is None
        or creds.developer_key
        or state.named(raw_path)  # another upstream: what it needs is not known here
        or graphql_path(raw_path.partition("?")[0], state.settings.graphql_paths)
    ):
        return ""
    need = "has no developer key, which REST requests need"
    if creds.source == ENVIRONMENT:
        return f"the key from the environment {need}: set {DEVELOPER_API_KEY} too"
    configure = f"remoteit-proxy configure --profile {creds.profile} --force"
    if creds.source != str(default_credentials_path()):
        configure += f" --credentials {creds.source}"
    return (
        f"the profile [{creds.profile}] {need}: add {DEVELOPER_API_KEY} to it in {creds.source} "
        f"(the Developer API key of the account's Access keys page), or run {configure}, "
        "which fetches it"
    )


async def handle(state: ProxyState, request: web.Request) -> web.StreamResponse:
    """Answer one client request: from the proxy itself, a refusal, or forwarded signed."""
    started = time.perf_counter()
    if request.raw_path.startswith(endpoints.PREFIX) and not state.named(request.raw_path):
        # Probes and scrapes: no token needed, not counted as traffic, and logged at DEBUG so
        # that a probe every few seconds does not bury the requests in the log.
        own = endpoints.answer(request, state)
        log_access(
            method=request.method,
            path=_logged_path(request.raw_path),
            status=own.status,
            bytes_in=0,
            bytes_out=len(own.body or b""),  # type: ignore[arg-type]
            seconds=time.perf_counter() - started,
            upstream_seconds=None,
            request_id="-",
            code=own.code if isinstance(own, ErrorResponse) else None,
            level=logging.DEBUG,
        )
        return own
    exchange = Exchange(_request_id(request))
    status, code = CLIENT_CLOSED, None
    state.metrics.in_flight += 1
    try:
        admitted = admit(request, state)
        if isinstance(admitted, web.Response):
            response: web.StreamResponse = admitted
        else:
            exchange.client = admitted
            response = await _answer(request, state, exchange)
        status = exchange.aborted or response.status
        if isinstance(response, ErrorResponse):
            code = response.code
        if not response.prepared:
            response.headers[REQUEST_ID] = exchange.request_id
            if isinstance(response, web.Response) and status != CLIENT_CLOSED and response.body:
                exchange.bytes_out = len(response.body)  # type: ignore[arg-type]
        return response
    finally:
        deadline = state.drain_deadline  # on the loop's clock
        if (
            status == CLIENT_CLOSED
            and deadline is not None
            and asyncio.get_running_loop().time() >= deadline
        ):
            # Unanswered when the shutdown deadline came: cut by the proxy (a 503 when nothing
            # was sent yet), not left by its client.
            status, code = 503, "shutdown_deadline"
        seconds = time.perf_counter() - started
        state.metrics.in_flight -= 1
        state.metrics.observe(request.method, status, seconds, exchange.upstream_seconds)
        upstream_refused = status in (401, 403) and exchange.upstream_seconds is not None
        log_access(
            method=request.method,
            # Raw (still percent-encoded) and without the query: no decoded control characters
            # can forge log lines, and no query values reach the log.
            path=_logged_path(request.raw_path),
            status=status,
            bytes_in=(
                request.content.total_bytes if exchange.bytes_in is None else exchange.bytes_in
            ),
            bytes_out=exchange.bytes_out,
            seconds=seconds,
            upstream_seconds=exchange.upstream_seconds,
            request_id=exchange.request_id,
            code=code,
            client=exchange.client.name if exchange.client is not None else None,
            profile=exchange.client.credentials.current.profile if exchange.client else None,
            operations=exchange.operations,
            rule=exchange.rule,
            attempts=exchange.attempts,
            coalesced=exchange.coalesced,
            hint=(
                state.skew.refusal_hints(
                    status,
                    exchange.signed_corrected,
                    _no_developer_key(state, exchange, request.raw_path),
                )
                if upstream_refused
                else ""
            ),
        )
