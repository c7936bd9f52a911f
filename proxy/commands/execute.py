"""The ``exec`` command: a child process gets its own proxy's URL and a token, never the key."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import signal
import sys
from collections.abc import Mapping, Sequence

from ..config.addresses import parse_listen
from ..config.settings import Settings
from ..errors import ConfigError
from ..serve.clients import load_profiles
from ..serve.server import ProxyService

URL_VARIABLE = "REMOTEIT_PROXY_URL"
TOKEN_VARIABLE = "REMOTEIT_PROXY_TOKEN"
NOT_FOUND, NOT_RUNNABLE = 127, 126  # as POSIX shells report them


def for_exec(settings: Settings, client: str | None, token: str) -> Settings:
    """Serve's settings as exec uses them: 127.0.0.1 at a free port, one process, one client
    whose token is ``token``: the ``[client.NAME]`` named, or the profile and --read-only."""
    listen = parse_listen("127.0.0.1:0", "exec")
    base = dataclasses.replace(settings, listen=listen, workers=1, token=token, token_file=None)
    if client is None:
        return dataclasses.replace(base, clients=())
    chosen = [config for config in settings.clients if config.name == client]
    if not chosen:
        known = ", ".join(f"[client.{c.name}]" for c in settings.clients) or "none"
        raise ConfigError(
            f"--client {client}: there is no [client.{client}] section in the config file "
            f"({settings.config or 'none given'}; sections there: {known}); add one, or pass "
            "--config FILE"
        )
    return dataclasses.replace(base, clients=(dataclasses.replace(chosen[0], token=token),))


def child_environment(environ: Mapping[str, str], url: str, token: str) -> dict[str, str]:
    """The child's environment: the proxy's URL and token, and no R3_* variable (no key)."""
    env = {name: value for name, value in environ.items() if not name.startswith("R3_")}
    env[URL_VARIABLE], env[TOKEN_VARIABLE] = url, token
    return env


async def run_exec(
    settings: Settings, argv: Sequence[str], client: str | None, environ: Mapping[str, str]
) -> int:
    """Serve while ``argv`` runs; its exit status (128+N when signal N ended it)."""
    if not argv:
        raise ConfigError("exec needs a command to run: remoteit-proxy exec [OPTIONS] -- COMMAND")
    token = secrets.token_urlsafe(32)
    settings = for_exec(settings, client, token)
    service = ProxyService(settings, load_profiles(settings, environ), environ=environ)
    url = (await service.start())[0]
    loop = asyncio.get_running_loop()
    try:
        try:
            child = await asyncio.create_subprocess_exec(
                *argv, env=child_environment(environ, url, token)
            )
        except FileNotFoundError:
            print(f"remoteit-proxy: exec: {argv[0]}: command not found", file=sys.stderr)
            return NOT_FOUND
        except PermissionError:
            print(f"remoteit-proxy: exec: {argv[0]}: permission denied", file=sys.stderr)
            return NOT_RUNNABLE
        forwarded = (signal.SIGINT, signal.SIGTERM)
        with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
            for signum in forwarded:
                loop.add_signal_handler(signum, _forward, child, signum)
            loop.add_signal_handler(signal.SIGHUP, service.clients.reload, "SIGHUP")
        try:
            status = await child.wait()
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
                for signum in (*forwarded, signal.SIGHUP):
                    loop.remove_signal_handler(signum)
    finally:
        await service.stop()  # requests the child left in flight are drained
    return 128 - status if status < 0 else status


def _forward(child: asyncio.subprocess.Process, signum: int) -> None:
    if child.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)
