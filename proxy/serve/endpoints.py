"""The proxy's own endpoints under the reserved prefix ``/-/``: health, readiness, metrics, quit."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .. import __version__
from ..ops.metrics import CONTENT_TYPE
from .admit import admit
from .responses import error_response

if TYPE_CHECKING:
    from .clients import Client
    from .state import ProxyState

PREFIX = "/-/"


def _key(client: Client) -> dict[str, Any]:
    """One client's key as health shows it: the key id masked, never a secret."""
    creds = client.credentials.current
    loaded = datetime.fromtimestamp(client.credentials.loaded_at, timezone.utc)
    return {
        "profile": creds.profile,
        "key_id": creds.masked_key_id,
        "developer_key": creds.developer_key is not None,  # whether one is loaded, never it
        "read_only": client.policy is not None and client.policy.read_only,
        "credentials_loaded_at": loaded.isoformat(timespec="seconds"),
    }


def health(state: ProxyState) -> web.Response:
    """Liveness, and what an operator checks first. Never a secret: the key id is masked."""
    clients = state.clients
    body: dict[str, Any] = {"status": "ok", "version": __version__, "pid": os.getpid()}
    if clients.default is not None:
        body.update(_key(clients.default))
    else:
        body["clients"] = {client.label: _key(client) for client in clients.all}
    body.update(
        {
            "upstream": str(state.settings.upstream),
            # This machine's clock minus the API's: positive when this machine is ahead.
            "clock_offset_seconds": state.skew.offset,
            "clock_correction": state.skew.correcting,
        }
    )
    return web.json_response(body)


def ready(state: ProxyState) -> web.Response:
    """200 while credentials are loaded and requests are taken; 503 otherwise (e.g. draining)."""
    if state.pool is None or state.draining:
        return error_response(503, "not_ready", "the proxy is starting or shutting down")
    return web.json_response({"status": "ready"})


def metrics(state: ProxyState) -> web.Response:
    text = state.scrape() if state.scrape is not None else state.metrics.render()
    return web.Response(body=text, headers={"Content-Type": CONTENT_TYPE})


ROUTES = {"health": health, "ready": ready, "metrics": metrics}
QUIT = "quitquitquit"  # as Envoy and cloud-sql-proxy name it, for sidecars in Kubernetes Jobs


def quit_asked(request: web.Request, state: ProxyState) -> web.Response:
    """``POST /-/quitquitquit`` (with --admin-endpoints): start the graceful shutdown, as
    SIGTERM would; when a token is set, only for a request that presents one, and never for
    a web page (admit's rules, as for a forwarded request)."""
    if request.method != "POST":
        response = error_response(405, "method_not_allowed", f"/-/{QUIT} answers POST only")
        response.headers["Allow"] = "POST"
        return response
    admitted = admit(request, state)
    if isinstance(admitted, web.Response):
        return admitted
    if admitted.policy is not None:  # least privilege: stopping the service is not reading
        return error_response(
            403, "policy_denied", "a client with read_only or allow-lists may not stop the proxy"
        )
    assert state.quit is not None, "serve sets how to stop before it listens"
    state.quit(f"{request.method} /-/{QUIT}")
    return web.json_response({"status": "stopping"}, status=202)


def is_endpoint(raw_path: str) -> bool:
    """Whether a request is for one of the proxy's own endpoints (not a named upstream's)."""
    if not raw_path.startswith(PREFIX):
        return False
    name = raw_path[len(PREFIX) :].partition("?")[0]
    return name in ROUTES or name == QUIT


def answer(request: web.Request, state: ProxyState) -> web.Response:
    """Answer a ``/-/`` request; these are never forwarded and need no token."""
    name = request.raw_path[len(PREFIX) :].partition("?")[0]
    if name == QUIT and state.settings.admin_endpoints:
        return quit_asked(request, state)
    route = ROUTES.get(name)
    if route is None:
        return error_response(
            404,
            "not_found",
            "paths under /-/ are the proxy's own: health, ready, metrics, and /-/to/NAME for "
            "the [upstream.NAME] sections of the config file",
        )
    if request.method not in ("GET", "HEAD"):
        response = error_response(405, "method_not_allowed", f"/-/{name} answers GET only")
        response.headers["Allow"] = "GET, HEAD"
        return response
    return route(state)
