"""Reading the command line: the parser run, and its errors worded with the nearest match."""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from typing import NoReturn

from .commandline import (
    BY_NAME,
    COMMAND_OPTIONS,
    COMMANDS,
    EXIT_USAGE,
    PROG,
    Parser,
    UsageError,
    build_parser,
)


def suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _unknown_option(message: str, command: str, parser: Parser) -> str | None:
    """Word argparse's 'unrecognized arguments' with the nearest option of ``command``."""
    prefix = "unrecognized arguments: "
    if not message.startswith(prefix):
        return None
    word = message[len(prefix) :].split()[0]
    if word in COMMANDS:  # "remoteit-proxy --config x.ini check": serve was implied
        return f"put the command first: {PROG} {word} [OPTIONS]"
    if not word.startswith("-"):
        return f"unexpected argument '{word}' for {command}"
    name = word.partition("=")[0]
    if name.removeprefix("--") in BY_NAME:
        users = [c for c, names in COMMAND_OPTIONS.items() if name.removeprefix("--") in names]
        return f"{command} has no option {name} (it is an option of {', '.join(users)})"
    return f"{command} has no option {name}{suggest(name, _options_of(parser, command))}"


def _options_of(parser: Parser, command: str) -> list[str]:
    """The option strings of one command's own parser."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            sub = action.choices[command]
            return [string for own in sub._actions for string in own.option_strings]
    return []


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line; print a one-line reason and exit 2 when it is wrong."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0].startswith("-") and args[0] not in ("-h", "--help", "--version"):
        args.insert(0, "serve")  # serve is the default command, options and all
    elif args[0] not in (*COMMANDS, "-h", "--help", "--version"):
        _exit(f"'{args[0]}' is not a command{suggest(args[0], COMMANDS)}", None)
    command = args[0] if args[0] in COMMANDS else None
    parser = build_parser(only=command)
    try:
        return parser.parse_args(args)
    except UsageError as exc:
        message = str(exc)
        worded = _unknown_option(message, command, parser) if command else None
        _exit(worded or message, command)


def _exit(message: str, command: str | None) -> NoReturn:
    print(f"{PROG}: {message}", file=sys.stderr)
    if command:
        print(f"run '{PROG} {command} --help' for its options", file=sys.stderr)
    else:
        print(f"run '{PROG} --help' for the commands", file=sys.stderr)
    sys.exit(EXIT_USAGE)
