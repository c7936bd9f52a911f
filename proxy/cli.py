"""Command line: parses argv, sets up logging, runs the command and picks the exit code."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .credentials import load_credentials
from .errors import ConfigError
from .logs import setup_logging
from .parser import COMMAND_OPTIONS, parse
from .settings import CONFIG_OPTION, OPTIONS, Settings, resolve

if TYPE_CHECKING:
    from .onboard import Terminal

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2


def raise_open_file_limit() -> None:
    """Each client connection and its upstream connection take a file descriptor each."""
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            target = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))


# The commands import aiohttp and the rest of the proxy only when they run: --help, a usage
# error, import and configure answer without that start-up cost.


def _check(settings: Settings) -> int:
    import asyncio

    from .commands import check

    credentials = load_credentials(settings.credentials, settings.profile, os.environ)
    result = asyncio.run(check(settings, credentials, os.environ))
    print("\n".join(result.lines))
    return EXIT_OK if result.ok else EXIT_FAILED


def _store(args: argparse.Namespace, settings: Settings) -> int:
    """``import`` and ``configure``: write a profile, then offer ``check`` on a terminal."""
    from .onboard import Terminal  # only these two commands need it: serve starts leaner

    terminal = Terminal.from_stdio()
    try:
        return _write_profile(args, settings, terminal)
    except (KeyboardInterrupt, EOFError):
        print("\nremoteit-proxy: cancelled; the credentials file was not changed", file=sys.stderr)
        return EXIT_FAILED


def _write_profile(args: argparse.Namespace, settings: Settings, terminal: Terminal) -> int:
    from .onboard import run_configure, run_import

    if args.command == "import":
        lines = run_import(
            args.file,
            credentials=settings.credentials,
            profile=settings.profile,
            force=args.force,
            developer_key_file=args.developer_key_file,
            terminal=terminal,
        )
    else:
        lines = run_configure(
            credentials=settings.credentials,
            profile=settings.profile,
            force=args.force,
            terminal=terminal,
        )
    print("\n".join(lines))
    offer = args.command == "configure" and terminal.interactive
    if offer and terminal.confirm("Run 'remoteit-proxy check' now?", default=True):
        return _check(settings)
    return EXIT_OK


def _command(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "check":
        return _check(settings)
    if args.command in ("import", "configure"):
        return _store(args, settings)
    credentials = load_credentials(settings.credentials, settings.profile, os.environ)
    if args.command == "sign":
        from .commands import sign_request

        method = args.method or ("POST" if args.data_file else "GET")
        text, warnings = sign_request(
            settings,
            credentials,
            target=args.target,
            method=method,
            content_type=args.content_type,
            data_file=args.data_file,
            output=args.format,
            now=time.time(),
        )
        for warning in warnings:
            print(f"remoteit-proxy: warning: {warning}", file=sys.stderr)
        print(text)
        return EXIT_OK
    from .workers import run, serve, serve_workers

    raise_open_file_limit()
    if settings.workers > 1:
        return serve_workers(settings, credentials)
    run(serve(settings, credentials))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``remoteit-proxy`` and ``python -m proxy``; returns the exit code."""
    args = parse(argv)
    used = {CONFIG_OPTION.name, *COMMAND_OPTIONS[args.command]}
    given = {
        option.name: getattr(args, option.key)
        for option in (CONFIG_OPTION, *OPTIONS)
        if option.name in used and hasattr(args, option.key)
    }
    try:
        settings = resolve(given, os.environ, serving=args.command == "serve")
        setup_logging(settings.log_level, settings.log_format)
        return _command(args, settings)
    except ConfigError as exc:
        print(f"remoteit-proxy: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_OK
