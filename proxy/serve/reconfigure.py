"""Reloading the configuration on SIGHUP: read whole, checked, then swapped in at once."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..client import Pool
from ..config.resolve import exposed
from ..config.settings import Settings, settings_for
from ..config.upstreams import NamedUpstream
from ..errors import ConfigError
from ..keys.credentials import Credentials
from .activation import Activated, check_exposure
from .clients import Clients, load_profiles
from .pools import create_pool
from .throttle import Throttle

if TYPE_CHECKING:
    from .server import ProxyService

log = logging.getLogger("proxy.config")

# What a running proxy cannot change: its listeners, processes, connection limits and
# timers, where the credentials are, the default upstream's connections and the clock skew
# rules (the service's clock is built once). A new value there is named in the log and takes
# effect at the next start.
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
    "clock_skew_threshold",
    "no_clock_correction",
)
Mount = tuple[str, Settings, Pool]


@dataclass
class Plan:
    """A configuration read and checked whole, nothing of the running one changed yet: the
    settings, every profile's key, what waits for the next start, and the pools of the named
    upstreams that are new (``close`` them if the plan is not used)."""

    settings: Settings
    profiles: dict[str, Credentials]
    later: list[str]
    pools: dict[NamedUpstream, Pool] = field(default_factory=dict)

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()
        self.pools.clear()


def prepare(
    old: Settings,
    reread: Callable[[], Settings],
    known: Mapping[str, Credentials],
    environ: Mapping[str, str],
    activated: Sequence[Activated] = (),
) -> Plan:
    """Read the configuration again and check it as a start would, building everything that
    can fail (keys of new profiles, pools of new named upstreams) without touching the running
    one; raises ConfigError (OSError, ValueError) when it cannot be used. ``known``: the keys
    in use, by profile (not read again: their watchers keep them current). It may block (a
    ``credential_process``): run it off the event loop."""
    new = reread()
    later = [key for key in AT_RESTART if _differs(key, old, new)]
    # Before anything reads them: a new profile's key comes from the credentials file in use.
    new = dataclasses.replace(new, **{key: getattr(old, key) for key in AT_RESTART})
    # Checked again with what stays in use: a file that drops the token must not open a
    # listener others can reach (resolve checked the address the file names).
    check_exposure(new, activated)
    _check_listen_exposure(new)
    try:
        # As the start loads them: a file the next start would refuse is refused now.
        plan = Plan(new, load_profiles(new, environ, known), later)
    except ConfigError as exc:
        if "credentials" not in later:
            raise
        raise ConfigError(
            f"{exc} (the credentials file the config now names is read from the next start)"
        ) from None
    try:
        for named in new.upstreams:
            if named not in old.upstreams:
                plan.pools[named] = _pool(new, named, environ)
    except BaseException:
        plan.close()
        raise
    return plan


def _differs(key: str, old: Settings, new: Settings) -> bool:
    if key == "listen" and new.listen.port == 0 and new.listen.unix is None:
        # Port 0 asks for any free port: the one --workers chose at the start is that.
        return new.listen.host != old.listen.host
    return bool(getattr(new, key) != getattr(old, key))


def _pool(settings: Settings, named: NamedUpstream, environ: Mapping[str, str]) -> Pool:
    try:
        return create_pool(settings_for(settings, named), environ)
    except ConfigError as exc:  # (its message names the option, not the section)
        raise ConfigError(f"config file {settings.config} [upstream.{named.name}]: {exc}") from None


async def reconfigure(service: ProxyService, reread: Callable[[], Settings]) -> str:
    """Read the configuration again and, if it is whole and valid, use it from now on: client
    sections and their tokens, policies, limits, named upstreams, the log level. Requests in
    flight finish under the configuration they began with. One reload at a time (serve runs
    them in turn). Returns the result counted: ``success``, ``unchanged`` or ``error`` (then
    the previous configuration stays); ``stopping`` (not counted) when a stop began meanwhile."""
    old = service.settings
    known = {name: watcher.current for name, watcher in service.clients.watchers.items()}
    environ, activated = service.environ, service.activated
    try:
        # In a thread: a new profile's key may come from a command or the keychain, and
        # requests go on meanwhile.
        plan = await asyncio.to_thread(prepare, old, reread, known, environ, activated)
    except (ConfigError, OSError, ValueError) as exc:
        return _refused(service, str(exc))
    except Exception as exc:  # a bug: still no half-applied config, and the reload counted
        return _refused(service, f"unexpected {type(exc).__name__}", trace=True)
    if service.stopping.is_set():  # began while the file was read: the old config serves on
        plan.close()
        return "stopping"
    new = plan.settings
    if plan.later:
        log.warning(
            "config: %s changed: takes effect at the next start (the rest is reloaded)",
            ", ".join(key.replace("_", "-") for key in plan.later),
        )
    if new == old:
        service.metrics.config_reload("unchanged")
        log.info("config unchanged")
        return "unchanged"
    _swap(service, plan)
    service.metrics.config_reload("success")
    log.info("config reloaded%s", f" from {new.config}" if new.config else "")
    logging.getLogger("proxy").setLevel(new.log_level.upper())  # after the line: it is said
    return "success"


def _refused(service: ProxyService, why: str, trace: bool = False) -> str:
    service.metrics.config_reload("error")
    log.error("config not reloaded, the previous one stays in use: %s", why, exc_info=trace)
    return "error"


def _check_listen_exposure(settings: Settings) -> None:
    """--listen's rule, for the address still listened on."""
    listen = settings.listen
    if exposed(listen, settings.token, settings.allow_unauthenticated, bool(settings.clients)):
        raise ConfigError(
            f"the proxy listens on {listen} and the config file sets no token and no client "
            "sections: anyone who can reach it could use your Remote.It account; set a token"
        )


def _swap(service: ProxyService, plan: Plan) -> None:
    """Everything a request reads, replaced between two requests (the event loop runs one
    thing at a time): a request already past admission keeps what it took. Nothing here can
    fail: whatever could was built by ``prepare``."""
    new, state = plan.settings, service.state
    old_watchers = service.clients.watchers
    clients = Clients(new, plan.profiles, service.environ, keep=old_watchers)
    throttle = Throttle(new, clients, service.metrics)
    mounts = _mounts(state.mounts, service.settings, new, plan.pools, service.retire)
    for name, watcher in old_watchers.items():
        if clients.watchers.get(name) is not watcher:
            service.unwatch(watcher)
    for name, watcher in clients.watchers.items():
        if old_watchers.get(name) is not watcher:
            service.watch(watcher)
    state.mounts = mounts
    service.settings = state.settings = new
    service.clients = state.clients = clients
    state.token = new.token.encode() if new.token is not None else None
    state.throttle = throttle


def _mounts(
    mounts: tuple[Mount, ...],
    old: Settings,
    new: Settings,
    built: Mapping[NamedUpstream, Pool],
    retire: Callable[[Pool], None],
) -> tuple[Mount, ...]:
    """The named upstreams' mounts: an unchanged upstream keeps its pool (and connections);
    a new one gets the pool ``prepare`` built; one removed is retired (closed once requests in
    flight had their time, or at the stop)."""
    pools = {named: pool for named in old.upstreams for m, _, pool in mounts if m in named.mounts}
    result: list[Mount] = []
    for named in new.upstreams:
        pool = pools.pop(named, None) or built[named]
        result += [(mount, settings_for(new, named), pool) for mount in named.mounts]
    for pool in set(pools.values()):
        retire(pool)
    return tuple(sorted(result, key=lambda mount: -len(mount[0])))
