"""The ``exec`` command: a child process gets its own proxy's URL and a token, never the key."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
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
    # Nor this proxy's own settings (a token file, a credentials path): only its URL and token.
    env = {
        name: value
        for name, value in environ.items()
        if not name.startswith(("R3_", "REMOTEIT_PROXY_"))
    }
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
    children: list[asyncio.subprocess.Process] = []
    pending: list[int] = []  # signals that came before the child existed
    hangup = getattr(signal, "SIGHUP", None)  # none on Windows
    handled = (signal.SIGINT, signal.SIGTERM, *([hangup] if hangup is not None else []))
    # Handlers first: a signal between starting the child and installing them would end this
    # process and leave the child without its proxy.
    with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, _forward, children, pending, signum)
        loop.add_signal_handler(signal.SIGHUP, service.clients.reload, "SIGHUP")
    try:
        try:
            child = await asyncio.create_subprocess_exec(
                *argv, env=child_environment(environ, url, token)
            )
        except FileNotFoundError:
            print(f"remoteit-proxy: exec: {argv[0]}: command not found", file=sys.stderr)
            return NOT_FOUND
        except OSError as exc:  # permission, not an executable format, ...
            print(f"remoteit-proxy: exec: {argv[0]}: {exc.strerror}", file=sys.stderr)
            return NOT_RUNNABLE
        children.append(child)
        for early in pending:
            _forward(children, [], early)
        status = await child.wait()
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
            for signum in handled:
                loop.remove_signal_handler(signum)
        await service.stop()  # requests the child left in flight are drained
    return 128 - status if status < 0 else status


def _forward(children: list[asyncio.subprocess.Process], pending: list[int], signum: int) -> None:
    if not children:
        pending.append(signum)
        return
    child = children[0]
    if child.returncode is not None:
        return
    if signum == signal.SIGINT and _from_terminal():
        return  # Ctrl+C reached the child too (same process group): once is enough
    with contextlib.suppress(ProcessLookupError):
        child.send_signal(signum)


def _from_terminal() -> bool:
    """Whether a SIGINT came from the terminal: this process is in its foreground group."""
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError, AttributeError):  # no terminal, or no such call (Windows)
        return False
