"""Asking the user for a key: on a terminal (the secret not echoed), or from standard input."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ConfigError
from .profiles import ACCESS_KEY_ID, DEVELOPER_API_KEY, KEYS, SECRET_ACCESS_KEY
from .values import check_value, value_problem

TRIES = 3
_STDIN_FORMAT = (
    f"without a terminal, configure reads {ACCESS_KEY_ID}, {SECRET_ACCESS_KEY} and optionally "
    f"{DEVELOPER_API_KEY} from standard input, one per line"
)


def _read_stdin_line() -> str:
    return sys.stdin.readline() if sys.stdin is not None else ""


def _ask_line(prompt: str) -> str:
    """A line typed in. The prompt goes to standard error, as getpass's goes to the terminal:
    standard output, redirected or not, gets the result lines only."""
    print(prompt, end="", file=sys.stderr, flush=True)
    line = _read_stdin_line()
    if not line:
        raise EOFError
    return line.rstrip("\r\n")


def _tell(message: str) -> None:
    print(message, file=sys.stderr)


@dataclass(frozen=True)
class Terminal:
    """How the commands talk to the user; a test builds one from scripted callables."""

    interactive: bool  # standard input is a terminal
    ask: Callable[[str], str] = _ask_line  # a line, echoed
    ask_secret: Callable[[str], str] = getpass.getpass  # a line, not echoed
    read_line: Callable[[], str] = _read_stdin_line  # the next line for scripts, '' at the end
    tell: Callable[[str], None] = _tell  # a message while asking (why an answer was refused)

    def confirm(self, prompt: str, default: bool) -> bool:
        """Ask a yes/no question; Enter, or three answers that are neither, give ``default``."""
        choices = "[Y/n]" if default else "[y/N]"
        for _ in range(TRIES):
            answer = self.ask(f"{prompt} {choices} ").strip().lower()
            if answer in ("y", "yes", "n", "no", ""):
                return answer.startswith("y") if answer else default
            self.tell("Please answer y or n.")
        return default

    @classmethod
    def from_stdio(cls) -> Terminal:
        """Interactive when standard input is a terminal, whatever standard output is: with
        ``| tee log`` or ``> out.txt`` the keyboard still answers, the secret without echo."""
        return cls(interactive=sys.stdin is not None and sys.stdin.isatty())


def clean(key: str, value: str) -> str:
    # base64 ignores white space: a secret wrapped over lines is stored as one line.
    return "".join(value.split()) if key == SECRET_ACCESS_KEY else value.strip()


def require(key: str, value: str, where: str, ini: bool = False, omit: str | None = None) -> str:
    """The value cleaned, if serve accepts it; else an error naming ``where`` it came from."""
    return check_value(key, clean(key, value), where, ini=ini, omit=omit)


def ask(terminal: Terminal, key: str, prompt: str) -> str | None:
    """Ask until the answer is valid, at most TRIES times; None for an optional key left empty."""
    ask = terminal.ask if key == ACCESS_KEY_ID else terminal.ask_secret
    reason = ""
    for attempt in range(1, TRIES + 1):
        value = clean(key, ask(prompt))
        if not value and key == DEVELOPER_API_KEY:
            return None
        found = value_problem(key, value, omit="press Enter to skip it")
        if found is None:
            return value
        reason = found
        if attempt < TRIES:
            terminal.tell(f"Not accepted: {reason}. Try again.")
    raise ConfigError(f"{reason} ({TRIES} tries); nothing was written")


def read_values(terminal: Terminal) -> tuple[str, str, str | None]:
    values: list[str] = []
    for number, key in enumerate(KEYS, 1):
        value = clean(key, terminal.read_line())
        if not value and key != DEVELOPER_API_KEY:
            raise ConfigError(f"standard input: line {number}, {key}, is missing; {_STDIN_FORMAT}")
        where, omit = f"standard input, line {number}", f"leave line {number} out"
        values.append(require(key, value, where, omit=omit) if value else "")
    return values[0], values[1], values[2] or None
