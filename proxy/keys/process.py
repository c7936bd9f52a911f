"""``credential_process``: a command (a password manager, a vault) that prints the key as JSON."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from ..errors import CredentialsError
from .profiles import ACCESS_KEY_ID, DEVELOPER_API_KEY, SECRET_ACCESS_KEY

if TYPE_CHECKING:
    import subprocess

OPTION = "credential_process"
TIMEOUT = 30.0
EXPIRATION = "Expiration"
_MAX_OUTPUT = 64 * 1024  # a key is some 100 bytes of JSON
_FRACTION = re.compile(r"\.(\d+)(?=[+-]\d\d:\d\d$)")
# In a failing command's standard error, anything that could be a key or a secret is elided.
_LONG_TOKEN = re.compile(r"[A-Za-z0-9+/=_-]{20,}")


@dataclass(frozen=True)
class Issued:
    """What the command printed: the key's values as text, and when they expire (epoch)."""

    access_key_id: str
    secret: str = field(repr=False)
    developer_key: str | None = field(default=None, repr=False)
    expires: float | None = None


def split_command(command: str, where: str) -> list[str]:
    """The command line split as a POSIX shell would (quotes, backslashes), run without one."""
    try:
        argv = shlex.split(command, posix=True)
    except ValueError as exc:  # an unclosed quote
        raise CredentialsError(f"{where} {OPTION}: cannot be split into words ({exc})") from None
    if not argv or not argv[0]:
        raise CredentialsError(f"{where} {OPTION} is empty; name a command, or remove the line")
    return argv


def run(command: str, where: str, timeout: float = TIMEOUT) -> Issued:
    """Run the command, read its JSON; every failure names ``where`` (file and profile).

    Its output holds the secret: it is never logged, and no message quotes it.
    """
    import subprocess  # here: `sign` and `check` start faster without it

    argv = split_command(command, where)
    name = argv[0]
    try:
        # Windows parses the command line itself (its quoting is not POSIX's): give it whole.
        # Its own session (POSIX): a timeout ends the command and anything it started.
        child = subprocess.Popen(
            command if os.name == "nt" else argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=os.name != "nt",
        )
    except FileNotFoundError:
        raise CredentialsError(
            f"{where} {OPTION}: the command {name!r} was not found; check the line, or "
            "give the program's full path"
        ) from None
    except OSError as exc:
        raise CredentialsError(
            f"{where} {OPTION}: {name!r} cannot be run ({exc.strerror})"
        ) from None
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(child)
        raise CredentialsError(
            f"{where} {OPTION}: {name!r} did not finish within {timeout:g} s and was "
            "stopped; does it wait for input (a password prompt) that nobody can give here?"
        ) from None
    if child.returncode != 0:
        lines = err.decode(errors="replace").splitlines()
        first = _LONG_TOKEN.sub(_elide, next((ln.strip() for ln in lines if ln.strip()), ""))
        said = f": {first[:200]}" if first else " and printed nothing on standard error"
        ended = (
            f"was killed by signal {-child.returncode}"
            if child.returncode < 0
            else f"exited with status {child.returncode}"
        )
        raise CredentialsError(f"{where} {OPTION}: {name!r} {ended}{said}")
    return parse(out, f"{where} {OPTION} ({name!r})")


def _elide(match: re.Match[str]) -> str:
    """A long run of letters and digits may be a key or a secret; a long word or path not."""
    run = match.group()
    return "..." if any(c.isdigit() for c in run) and any(c.isalpha() for c in run) else run


def _kill(child: subprocess.Popen[bytes]) -> None:
    """End the command and its session (what it started, which may hold the pipes open)."""
    import subprocess

    with contextlib.suppress(OSError):
        if os.name == "nt":
            child.kill()
        else:
            os.killpg(child.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.communicate(timeout=5)


def parse(output: bytes, where: str) -> Issued:
    """One JSON object with R3_ACCESS_KEY_ID, R3_SECRET_ACCESS_KEY, optionally
    R3_DEVELOPER_API_KEY and Expiration (RFC 3339)."""
    shape = (
        f"print one JSON object with {ACCESS_KEY_ID} and {SECRET_ACCESS_KEY} (and optionally "
        f"{DEVELOPER_API_KEY} and {EXPIRATION}) on standard output"
    )
    try:
        data = json.loads(output) if len(output) <= _MAX_OUTPUT else None
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested too deep
        data = None
    if len(output) > _MAX_OUTPUT:
        raise CredentialsError(
            f"{where}: its output is over {_MAX_OUTPUT // 1024} KiB; it must {shape}"
        )
    if not isinstance(data, dict):
        raise CredentialsError(f"{where}: its output is not a JSON object; it must {shape}")
    values: dict[str, str] = {}
    for key in (ACCESS_KEY_ID, SECRET_ACCESS_KEY, DEVELOPER_API_KEY, EXPIRATION):
        value = data.get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise CredentialsError(f"{where}: {key} is not a string; it must {shape}")
        values[key] = value.strip()
    for key in (ACCESS_KEY_ID, SECRET_ACCESS_KEY):
        if key not in values:
            raise CredentialsError(f"{where}: {key} is missing from its output; it must {shape}")
    expires = _expiration(values[EXPIRATION], where) if EXPIRATION in values else None
    if expires is not None and expires <= time.time():
        raise CredentialsError(
            f"{where}: {EXPIRATION} {values[EXPIRATION][:40]!r} has passed: the key it gave "
            "has expired; renew it where the command reads it"
        )
    return Issued(
        values[ACCESS_KEY_ID], values[SECRET_ACCESS_KEY], values.get(DEVELOPER_API_KEY), expires
    )


def _expiration(text: str, where: str) -> float:
    """RFC 3339 (``2026-12-07T21:30:00Z``, or with an offset): the offset is required."""
    # Before Python 3.11, fromisoformat reads neither 'Z' nor fractions other than 3 or 6
    # digits (Go's tools print 9).
    text = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    text = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise CredentialsError(
            f"{where}: {EXPIRATION} {text[:40]!r} is not an RFC 3339 time with a time zone, "
            "e.g. 2026-12-07T21:30:00Z"
        )
    return when.timestamp()
