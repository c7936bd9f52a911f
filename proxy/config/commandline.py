"""The command line's grammar: commands, the options each one uses, and near-miss suggestions."""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import NoReturn

from .. import __version__
from ..signing import DEFAULT_CONTENT_TYPE
from .options import CONFIG_OPTION, OPTIONS, Option

PROG = "remoteit-proxy"
EXIT_USAGE = 2

# Which settings each command reads; --help lists these only. Every command reads --config,
# and serve reads them all.
_SIGNING = ("upstream", "credentials", "profile", "scheme", "sign-headers", "sign-content-digest")
_CHECK = (
    *_SIGNING,
    "connect-timeout",
    "read-timeout",
    "ca-bundle",
    "insecure-skip-verify",
    "clock-skew-threshold",
    "no-clock-correction",
    "log-level",
    "log-format",
)
# exec listens on 127.0.0.1 at a free port, with a token of its own, in one process.
_NOT_FOR_EXEC = ("listen", "token", "token-file", "allow-unauthenticated", "socket-mode", "workers")
# import and configure ask the API for the developer key, as check would reach it.
_STORE = _CHECK
COMMAND_OPTIONS: dict[str, tuple[str, ...]] = {
    "serve": tuple(option.name for option in OPTIONS),
    "check": _CHECK,
    "sign": _SIGNING,
    "import": _STORE,
    "configure": _STORE,
    "rotate": _CHECK,
    "exec": tuple(option.name for option in OPTIONS if option.name not in _NOT_FOR_EXEC),
    "wait": ("listen",),  # the proxy to wait for, unless --url says
    "version": (),
    "completion": (),
}
STORES = ("file", "keychain")
SHELLS = ("bash", "zsh", "fish")
COMMANDS = tuple(COMMAND_OPTIONS)
BY_NAME = {option.name: option for option in OPTIONS}

CHECK_EPILOG = """exit codes:
  0  the API accepted the signed request
  1  the API refused it, or could not be reached (the first line says why)
  2  a configuration error (credentials file, profile, option value)"""


class UsageError(Exception):
    """The command line itself is wrong: an unknown command or option, a missing argument."""


class Parser(argparse.ArgumentParser):
    """argparse, but errors are raised for ``parse`` to word, not printed with the usage."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _add_setting(group: argparse._ArgumentGroup, option: Option) -> None:
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
        return
    default = f" (default {option.default})" if option.default is not None else ""
    group.add_argument(
        option.flag,
        dest=option.key,
        metavar=option.metavar,
        default=argparse.SUPPRESS,
        help=f"{option.help}{default}; {env}",
    )


def _command(
    commands: argparse._SubParsersAction[Parser],
    name: str,
    summary: str,
    description: str,
    *,
    only: str | None,
) -> Parser:
    parser = commands.add_parser(
        name,
        help=summary,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if only is not None and only != name:
        return parser  # never parsed: its settings would only cost `sign` start-up time
    group = parser.add_argument_group("settings")
    for option in (CONFIG_OPTION, *(BY_NAME[n] for n in COMMAND_OPTIONS[name])):
        _add_setting(group, option)
    return parser


def build_parser(only: str | None = None) -> Parser:
    """The parser of ``remoteit-proxy [COMMAND] [OPTIONS]``; each command has its own options
    (with ``only``, that command's alone: the others are listed but take none)."""
    parser = Parser(
        prog=PROG,
        description="Local proxy that signs requests to the Remote.It API with your access key.",
        epilog="Without a command, serve. Every setting can also be given as "
        "REMOTEIT_PROXY_<NAME> in the environment or as <name> in the [proxy] section of the "
        "--config file; the command line wins. 'remoteit-proxy COMMAND --help' lists the "
        "options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    add = functools.partial(_command, commands, only=only)
    add(
        "serve",
        "run the proxy (the default)",
        "Listen for plain requests, sign them with the profile's access key and forward them "
        "to the upstream (https://api.remote.it). Stops on SIGTERM or Ctrl+C after the requests "
        "in flight have finished.",
    )
    check = add(
        "check",
        "send one signed { login { email } } query and diagnose the answer",
        "Send one signed { login { email } } query with the same settings serve would use, "
        "and print the account, profile, masked key id, status, latency and clock offset.",
    )
    check.epilog = CHECK_EPILOG
    sign = add(
        "sign",
        "print the signed headers for one request",
        "Print the Date and Authorization (and DeveloperKey) headers for one request; "
        "--format headers works with curl -H @-.",
    )
    sign.add_argument("target", metavar="PATH_OR_URL", help="/graphql/v1, or a full URL")
    sign.add_argument("--method", help="HTTP method (default POST with --data-file, else GET)")
    sign.add_argument(
        "--content-type",
        default=DEFAULT_CONTENT_TYPE,
        help="the Content-Type to sign and send (default %(default)s)",
    )
    sign.add_argument("--data-file", type=Path, help="the request body (signed with rfc9421)")
    sign.add_argument(
        "--format",
        choices=("headers", "curl", "json"),
        default="headers",
        help="header lines for curl -H @-, a whole curl command, or JSON (default headers)",
    )
    imported = add(
        "import",
        "store a downloaded access key in the credentials file",
        "Read the file the Remote.It account page downloads for a new access key (the "
        "'credentials' INI file or the CSV) and write it as a profile of the credentials file "
        "(~/.remoteit/credentials, mode 0600). Other profiles and comments are kept as they are.",
    )
    imported.add_argument("file", metavar="FILE", type=Path, help="the downloaded file")
    imported.add_argument(
        "--developer-key-file",
        metavar="PATH",
        type=Path,
        help="a file holding the developer API key (else asked for on a terminal)",
    )
    imported.add_argument("--force", action="store_true", help="replace an existing profile")
    _store_option(imported)
    configure = add(
        "configure",
        "type in an access key and store it in the credentials file",
        "Ask for the access key id, the secret access key (not echoed) and the optional "
        "developer API key, check them and write them as a profile of the credentials file. "
        "Without a terminal the three values are read from standard input, one a line.",
    )
    configure.add_argument("--force", action="store_true", help="replace an existing profile")
    _store_option(configure)
    rotate = add(
        "rotate",
        "replace the profile's access key with a new one, through the API",
        "Create a new access key, check that the API accepts it, store it where the profile "
        "keeps its key (the file or the OS keychain), wait --grace seconds for running "
        "proxies to pick it up, then disable the old key (and delete it with --delete-old). "
        "The account allows 2 keys: with 2 already, nothing is created.",
    )
    rotate.add_argument("--delete-old", action="store_true", help="delete the old key too")
    rotate.add_argument(
        "--grace",
        metavar="S",
        type=_seconds,
        default=10.0,
        help="seconds between storing the new key and disabling the old one (default 10)",
    )
    run = add(
        "exec",
        "run a command with its own proxy: a URL and a token, never the key",
        "Start the proxy in this process on 127.0.0.1 at a free port with a new random "
        "token, run COMMAND with REMOTEIT_PROXY_URL and REMOTEIT_PROXY_TOKEN set and every "
        "R3_* variable removed, and exit with its status. Serve's options apply (--profile, "
        "--read-only, --client NAME for a [client.NAME] section's profile and allow-lists).",
    )
    run.add_argument("--client", metavar="NAME", help="use the policy and profile of [client.NAME]")
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS]")
    waiting = add(
        "wait",
        "wait until a proxy answers /-/ready (exit 0), or the timeout passes (exit 1)",
        "Ask GET /-/ready of the proxy at --url (default: the --listen address) until it "
        "answers 200, for scripts and init containers.",
    )
    waiting.add_argument("--url", help="http://HOST:PORT or unix:PATH of the proxy")
    waiting.add_argument(
        "--timeout", metavar="S", type=_seconds, default=30.0, help="seconds (default 30)"
    )
    add("version", "print the version", "Print the versions that matter.")
    shells = add(
        "completion",
        "print a shell completion script",
        "Print the completion script for SHELL: e.g. 'source <(remoteit-proxy completion "
        "bash)' in ~/.bashrc, 'remoteit-proxy completion fish | source'.",
    )
    shells.add_argument("shell", choices=SHELLS, metavar="SHELL", help="bash, zsh or fish")
    return parser


def _store_option(parser: Parser) -> None:
    parser.add_argument(
        "--store",
        choices=STORES,
        default="file",
        help="where the secret goes: the credentials file, or the OS keychain (default file)",
    )


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 or more)")
    return value
