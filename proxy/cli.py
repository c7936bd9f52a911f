"""Command line: parses argv, sets up logging, runs the server and picks the exit code."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence

from . import __version__
from .credentials import Credentials, load_credentials
from .errors import ConfigError
from .logs import setup_logging
from .server import ProxyService
from .settings import CONFIG_OPTION, OPTIONS, Settings, resolve

log = logging.getLogger("proxy")

EXIT_OK = 0
EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; every option comes from the table in ``settings``."""
    parser = argparse.ArgumentParser(
        prog="remoteit-proxy",
        description="Local proxy that signs requests to the Remote.It API with your access key.",
        epilog="Every option can also be set as REMOTEIT_PROXY_<NAME> in the environment or as "
        "<name> in the [proxy] section of the --config file; the command line wins.",
    )
    parser.add_argument(
        "command", nargs="?", choices=["serve"], default="serve", help="serve (default): run"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    for option in (CONFIG_OPTION, *OPTIONS):
        env = f"env {option.env}"
        if option.is_flag:
            parser.add_argument(
                option.flag,
                dest=option.key,
                action="store_const",
                const="true",
                default=argparse.SUPPRESS,
                help=f"{option.help}; {env}=true",
            )
            continue
        default = f" (default {option.default})" if option.default is not None else ""
        parser.add_argument(
            option.flag,
            dest=option.key,
            metavar=option.metavar,
            default=argparse.SUPPRESS,
            help=f"{option.help}{default}; {env}",
        )
    return parser


def raise_open_file_limit() -> None:
    """Each client connection and its upstream connection take a file descriptor each."""
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            target = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))


async def serve(settings: Settings, credentials: Credentials) -> None:
    """Run the proxy until SIGINT or SIGTERM, then let in-flight requests finish."""
    service = ProxyService(settings, credentials)
    addresses = await service.start()
    log.info(
        "remoteit-proxy %s listening on %s, forwarding to %s, profile %s, key %s",
        __version__,
        ", ".join(addresses),
        settings.upstream,
        credentials.profile,
        credentials.masked_key_id,
    )
    if settings.token is None and not settings.listen.is_loopback:
        log.warning(
            "--allow-unauthenticated: anyone who can reach %s can use your Remote.It account",
            settings.listen,
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Windows has no add_signal_handler: there Ctrl+C raises KeyboardInterrupt instead.
    with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGHUP, service.watcher.reload, "SIGHUP")
    try:
        await stop.wait()
    finally:
        log.info(
            "shutting down: finishing requests in flight (up to %gs)", settings.shutdown_timeout
        )
        await service.stop()
        log.info("stopped")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``remoteit-proxy`` and ``python -m proxy``; returns the exit code."""
    args = build_parser().parse_args(argv)
    given = {key.replace("_", "-"): value for key, value in vars(args).items() if key != "command"}
    try:
        settings = resolve(given, os.environ)
        setup_logging(settings.log_level, settings.log_format)
        credentials = load_credentials(settings.credentials, settings.profile, os.environ)
        raise_open_file_limit()
        asyncio.run(serve(settings, credentials))
    except ConfigError as exc:
        print(f"remoteit-proxy: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        pass
    return EXIT_OK
