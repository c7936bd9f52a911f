"""Command line: parses argv, sets up logging, runs the server and picks the exit code."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .commands import check, sign_request
from .credentials import load_credentials
from .errors import ConfigError
from .logs import setup_logging
from .outgoing import DEFAULT_CONTENT_TYPE
from .settings import CONFIG_OPTION, OPTIONS, resolve
from .workers import run, serve, serve_workers

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
COMMANDS = ("serve", "check", "sign")


def _settings_parser() -> argparse.ArgumentParser:
    """The options every command shares; each comes from the table in ``settings``."""
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("settings")
    for option in (CONFIG_OPTION, *OPTIONS):
        env = f"env {option.env}"
        if option.is_flag:
            group.add_argument(
                option.flag,
                dest=option.key,
                action="store_const",
                const="true",
                default=argparse.SUPPRESS,
                help=f"{option.help}; {env}=true",
            )
            continue
        default = f" (default {option.default})" if option.default is not None else ""
        group.add_argument(
            option.flag,
            dest=option.key,
            metavar=option.metavar,
            default=argparse.SUPPRESS,
            help=f"{option.help}{default}; {env}",
        )
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: commands ``serve`` (the default), ``check`` and ``sign``."""
    parser = argparse.ArgumentParser(
        prog="remoteit-proxy",
        description="Local proxy that signs requests to the Remote.It API with your access key.",
        epilog="Without a command, serve. Every setting can also be given as "
        "REMOTEIT_PROXY_<NAME> in the environment or as <name> in the [proxy] section of the "
        "--config file; the command line wins.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    shared = [_settings_parser()]
    commands.add_parser("serve", parents=shared, help="run the proxy (the default)")
    commands.add_parser(
        "check",
        parents=shared,
        help="send one signed { login { email } } query and diagnose the answer",
    )
    sign = commands.add_parser(
        "sign",
        parents=shared,
        help="print the signed headers for one request",
        description="Print the Date and Authorization (and DeveloperKey) headers for one "
        "request; --format headers works with curl -H @-.",
    )
    sign.add_argument("target", metavar="PATH_OR_URL", help="/graphql/v1, or a full URL")
    sign.add_argument("--method", help="HTTP method (default POST with --data-file, else GET)")
    sign.add_argument("--content-type", default=DEFAULT_CONTENT_TYPE, help="(default %(default)s)")
    sign.add_argument("--data-file", type=Path, help="the body (for --format curl)")
    sign.add_argument("--format", choices=("headers", "curl", "json"), default="headers")
    return parser


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS + ("-h", "--help", "--version"):
        args.insert(0, "serve")
    return build_parser().parse_args(args)


def raise_open_file_limit() -> None:
    """Each client connection and its upstream connection take a file descriptor each."""
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            target = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``remoteit-proxy`` and ``python -m proxy``; returns the exit code."""
    args = _parse(argv)
    given = {
        option.name: getattr(args, option.key)
        for option in (CONFIG_OPTION, *OPTIONS)
        if hasattr(args, option.key)
    }
    try:
        settings = resolve(given, os.environ, serving=args.command == "serve")
        setup_logging(settings.log_level, settings.log_format)
        credentials = load_credentials(settings.credentials, settings.profile, os.environ)
        if args.command == "check":
            result = asyncio.run(check(settings, credentials, os.environ))
            print("\n".join(result.lines))
            return EXIT_OK if result.ok else EXIT_FAILED
        if args.command == "sign":
            method = args.method or ("POST" if args.data_file else "GET")
            print(
                sign_request(
                    settings,
                    credentials,
                    target=args.target,
                    method=method,
                    content_type=args.content_type,
                    data_file=args.data_file,
                    output=args.format,
                    now=time.time(),
                )
            )
            return EXIT_OK
        raise_open_file_limit()
        if settings.workers > 1:
            return serve_workers(settings, credentials)
        run(serve(settings, credentials))
    except ConfigError as exc:
        print(f"remoteit-proxy: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        pass
    return EXIT_OK
