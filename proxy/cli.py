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

from aiohttp import web

from . import __version__
from .app import create_app
from .credentials import Credentials, load_credentials
from .errors import ConfigError, ListenError
from .settings import CONFIG_OPTION, OPTIONS, Settings, resolve

log = logging.getLogger("proxy")

EXIT_OK = 0
EXIT_CONFIG = 2
SHUTDOWN_TIMEOUT = 10.0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; every option comes from the table in ``settings``."""
    parser = argparse.ArgumentParser(
        prog="remoteit-proxy",
        description="Local proxy that signs requests to the Remote.It API with your access key.",
        epilog="Every option can also be set as REMOTEIT_PROXY_<NAME> in the environment or as "
        "<name> in the [proxy] section of the --config file; the command line wins.",
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=["serve"],
        default="serve",
        help="serve (the default): run the proxy",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    for option in (CONFIG_OPTION, *OPTIONS):
        default = f" (default {option.default})" if option.default is not None else ""
        parser.add_argument(
            option.flag,
            dest=option.key,
            metavar=option.metavar,
            default=argparse.SUPPRESS,
            help=f"{option.help}{default}; env {option.env}",
        )
    return parser


def setup_logging(level: str) -> None:
    """Log to stderr, one line per record; third-party libraries only from WARNING up."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("proxy").setLevel(level.upper())


async def serve(settings: Settings, credentials: Credentials) -> None:
    """Run the proxy until SIGINT or SIGTERM, then let in-flight requests finish."""
    runner = web.AppRunner(
        create_app(settings, credentials), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.listen.host, settings.listen.port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ListenError(
            f"cannot listen on {settings.listen} ({exc.strerror or exc}): stop whatever uses it "
            "or choose another address with --listen"
        ) from None
    addresses = ", ".join(
        f"http://[{a[0]}]:{a[1]}" if ":" in a[0] else f"http://{a[0]}:{a[1]}"
        for a in runner.addresses
    )
    log.info(
        "remoteit-proxy %s listening on %s, forwarding to %s, profile %s, key %s",
        __version__,
        addresses,
        settings.upstream,
        credentials.profile,
        credentials.masked_key_id,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Windows has no add_signal_handler: there Ctrl+C raises KeyboardInterrupt instead.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``remoteit-proxy`` and ``python -m proxy``; returns the exit code."""
    args = build_parser().parse_args(argv)
    given = {key.replace("_", "-"): value for key, value in vars(args).items() if key != "command"}
    try:
        settings = resolve(given, os.environ)
        setup_logging(settings.log_level)
        credentials = load_credentials(settings.credentials, settings.profile, os.environ)
        asyncio.run(serve(settings, credentials))
    except ConfigError as exc:
        print(f"remoteit-proxy: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        pass
    return EXIT_OK
