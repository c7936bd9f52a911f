"""Reloading the configuration on SIGHUP: read whole, checked, then swapped in at once."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from ..client import Pool
from ..config.resolve import exposed
from ..config.settings import Settings, settings_for
from ..errors import ConfigError
from ..keys.credentials import Credentials, load_credentials
from .activation import check_exposure
from .clients import Clients
from .pools import create_pool
from .throttle import Throttle

if TYPE_CHECKING:
    from .server import ProxyService

log = logging.getLogger("proxy.config")

# What a running proxy cannot change: its listeners, processes, connection limits and
# timers, where the credentials are, and the default upstream's connections. A new value
# there is named in the log and takes effect at the next start.
AT_RESTART = (
    "listen",
    "socket_mode",
    "workers",
    "max_connections",
    "header_timeout",
    "client_timeout",
    "shutdown_timeout",
    "credentials",
    "upstream",
    "ca_bundle",
    "insecure_skip_verify",
    "connect_timeout",
    "read_timeout",
    "log_format",
    "allow_unauthenticated",
)


def reconfigure(service: ProxyService, reread: Callable[[], Settings]) -> str:
    """Read the configuration again and, if it is whole and valid, use it from now on: client
    sections and their tokens, policies, limits, named upstreams, the log level. Requests in
    flight finish under the configuration they began with. Returns the result counted:
    ``success``, ``unchanged`` or ``error`` (then the previous configuration stays)."""
    old = service.settings
    try:
        new = reread()
        names = {client.profile for client in new.clients} or {new.profile}
        environ = service.environ
        profiles: dict[str, Credentials] = {
            name: service.clients.watchers[name].current
            if name in service.clients.watchers
            else load_credentials(new.credentials, name, environ)
            for name in sorted(names)
        }
        later = [key for key in AT_RESTART if getattr(new, key) != getattr(old, key)]
        new = dataclasses.replace(new, **{key: getattr(old, key) for key in later})
        # Checked again with what stays in use: a file that drops the token must not open a
        # listener others can reach (resolve checked the address the file names).
        check_exposure(new, service.activated)
        _check_listen_exposure(new)
    except (ConfigError, OSError, ValueError) as exc:
        service.metrics.config_reload("error")
        log.error("config not reloaded, the previous one stays in use: %s", exc)
        return "error"
    if later:
        log.warning(
            "config: %s changed: takes effect at the next start (the rest is reloaded)",
            ", ".join(key.replace("_", "-") for key in later),
        )
    if new == old:
        service.metrics.config_reload("unchanged")
        log.info("config unchanged")
        return "unchanged"
    _swap(service, new, profiles)
    service.metrics.config_reload("success")
    log.info("config reloaded%s", f" from {new.config}" if new.config else "")
    logging.getLogger("proxy").setLevel(new.log_level.upper())  # after the line: it is said
    return "success"


def _check_listen_exposure(settings: Settings) -> None:
    """--listen's rule, for the address still listened on."""
    listen = settings.listen
    if exposed(listen, settings.token, settings.allow_unauthenticated, bool(settings.clients)):
        raise ConfigError(
            f"the proxy listens on {listen} and the config file sets no token and no client "
            "sections: anyone who can reach it could use your Remote.It account; set a token"
        )


def _swap(service: ProxyService, new: Settings, profiles: dict[str, Credentials]) -> None:
    """Everything a request reads, replaced between two requests (the event loop runs one
    thing at a time): a request already past admission keeps what it took."""
    state = service.state
    old_watchers = service.clients.watchers
    clients = Clients(new, profiles, service.environ, keep=old_watchers)
    for name, watcher in old_watchers.items():
        if clients.watchers.get(name) is not watcher:
            service.unwatch(watcher)
    for name, watcher in clients.watchers.items():
        if old_watchers.get(name) is not watcher:
            service.watch(watcher)
    state.mounts = _mounts(state.mounts, service.settings, new, service.environ, service.retire)
    service.settings = state.settings = new
    service.clients = state.clients = clients
    state.token = new.token.encode() if new.token is not None else None
    state.throttle = Throttle(new, clients, service.metrics)


Mount = tuple[str, Settings, Pool]


def _mounts(
    mounts: tuple[Mount, ...],
    old: Settings,
    new: Settings,
    environ: Mapping[str, str],
    retire: Callable[[Pool], None],
) -> tuple[Mount, ...]:
    """The named upstreams' mounts: an unchanged upstream keeps its pool (and connections);
    a new one gets a pool; one removed is retired (closed once requests in flight had their
    time, or at the stop)."""
    pools = {named: pool for named in old.upstreams for m, _, pool in mounts if m in named.mounts}
    built: list[Mount] = []
    for named in new.upstreams:
        settings = settings_for(new, named)
        pool = pools.pop(named, None) or create_pool(settings, environ)
        built += [(mount, settings, pool) for mount in named.mounts]
    for pool in set(pools.values()):
        retire(pool)
    return tuple(sorted(built, key=lambda mount: -len(mount[0])))
