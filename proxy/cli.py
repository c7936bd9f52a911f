"""Command line: parses argv, sets up logging, runs the command and picks the exit code."""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .config.argv import parse
from .config.commandline import COMMAND_OPTIONS, build_parser
from .config.options import CONFIG_OPTION, OPTIONS
from .config.resolve import resolve
from .config.settings import Settings
from .errors import ConfigError
from .keys.credentials import load_credentials
from .ops.logs import setup_logging

if TYPE_CHECKING:
    from .keys.credentials import Credentials
    from .keys.terminal import Terminal

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130


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

    from .commands.check import check

    credentials = load_credentials(settings.credentials, settings.profile, os.environ)
    result = asyncio.run(check(settings, credentials, os.environ))
    print("\n".join(result.lines))
    return EXIT_OK if result.ok else EXIT_FAILED


def _store(args: argparse.Namespace, settings: Settings) -> int:
    """``import`` and ``configure``: write a profile, then offer ``check`` on a terminal."""
    from .keys.terminal import Terminal  # only these two commands need it: serve starts leaner

    terminal = Terminal.from_stdio()
    try:
        lines = _write_profile(args, settings, terminal)
    except (KeyboardInterrupt, EOFError):
        print("\nremoteit-proxy: cancelled; the credentials file was not changed", file=sys.stderr)
        return EXIT_INTERRUPTED
    print("\n".join(lines))
    if args.command != "configure" or not terminal.interactive:
        return EXIT_OK
    try:
        run_check = terminal.confirm("Run 'remoteit-proxy check' now?", default=True)
    except (KeyboardInterrupt, EOFError):  # the profile is written: a no to the offer
        print(file=sys.stderr)
        return EXIT_OK
    return _check(settings) if run_check else EXIT_OK


def _write_profile(args: argparse.Namespace, settings: Settings, terminal: Terminal) -> list[str]:
    from .keys.onboard import run_configure, run_import

    def fetch(creds: Credentials) -> str | None:
        from .commands.api import fetch_developer_key  # aiohttp only when it is asked

        return fetch_developer_key(settings, os.environ, creds)

    if args.command == "import":
        return run_import(
            args.file,
            credentials=settings.credentials,
            profile=settings.profile,
            force=args.force,
            developer_key_file=args.developer_key_file,
            terminal=terminal,
            store_in=args.store,
            fetch=fetch,
        )
    return run_configure(
        credentials=settings.credentials,
        profile=settings.profile,
        force=args.force,
        terminal=terminal,
        store_in=args.store,
        fetch=fetch,
    )


def _rotate(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from .commands.rotate import rotate
    from .errors import AccountError

    def say(line: str) -> None:
        # A reader that left ('rotate | head -1') must not stop a rotation half way.
        with contextlib.suppress(OSError):
            print(line, flush=True)

    try:
        new = asyncio.run(
            rotate(settings, os.environ, grace=args.grace, delete_old=args.delete_old, say=say)
        )
    except AccountError as exc:
        print(f"remoteit-proxy: rotate failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"Done: profile [{settings.profile}] now signs with {new}.")
    return EXIT_OK


def _exec(args: argparse.Namespace, settings: Settings) -> int:
    from .commands.execute import run_exec
    from .serve.workers import run

    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    raise_open_file_limit()
    return run(run_exec(settings, argv, args.client, os.environ))


def _tool(args: argparse.Namespace, settings: Settings) -> int:
    """``wait``, ``version``, ``completion``: no key, no network but the proxy's own."""
    if args.command == "version":
        from .commands.version import version_text

        print(version_text())
        return EXIT_OK
    if args.command == "completion":
        from .commands.completion import completion_script

        print(completion_script(build_parser(), args.shell), end="")
        return EXIT_OK
    from .commands.wait import ready_url, wait

    ready, line = wait(ready_url(args.url, settings.listen), args.timeout)
    print(line, file=sys.stdout if ready else sys.stderr)
    return EXIT_OK if ready else EXIT_FAILED


def _command(
    args: argparse.Namespace, settings: Settings, reread: Callable[[], Settings] | None = None
) -> int:
    if args.command == "check":
        return _check(settings)
    if args.command in ("import", "configure"):
        return _store(args, settings)
    if args.command == "rotate":
        return _rotate(args, settings)
    if args.command == "exec":
        return _exec(args, settings)
    if args.command in ("wait", "version", "completion"):
        return _tool(args, settings)
    if args.command == "sign":
        credentials = load_credentials(settings.credentials, settings.profile, os.environ)
        from .commands.sign import sign_request

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
    from .serve.clients import load_profiles
    from .serve.supervisor import serve_main

    profiles = load_profiles(settings, os.environ)
    raise_open_file_limit()
    return serve_main(settings, profiles, reread)


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
        # exec's child shares the terminal: by default the proxy says only what goes wrong.
        defaults = {"log-level": "warning"} if args.command == "exec" else {}
        serving = args.command in ("serve", "exec")
        # version and completion read no configuration: they work whatever state it is in.
        reads = args.command not in ("version", "completion")
        settings = resolve(
            given, os.environ, serving=serving, used=used, defaults=defaults, read_default=reads
        )
        setup_logging(settings.log_level, settings.log_format)
        # serve reads its configuration again on SIGHUP, as it was read now.
        reread = functools.partial(
            resolve,
            given,
            os.environ,
            serving=serving,
            used=used,
            defaults=defaults,
            read_default=reads,
        )
        return _command(args, settings, reread)
    except ConfigError as exc:
        print(f"remoteit-proxy: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        # Ctrl+C is how serve stops on Windows (no signal handlers there): a normal end.
        # Anything else was cut short: 130, as shells report an interrupted command.
        return EXIT_OK if args.command == "serve" else EXIT_INTERRUPTED
    except BrokenPipeError:
        # 'check | head -1': the reader left. Quietly, as other command-line tools do; stdout
        # is pointed at devnull so that the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
