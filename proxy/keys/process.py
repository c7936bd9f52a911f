"""``credential_process``: a command (a password manager, a vault) that prints the key as JSON."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from dataclasses import dataclass, field
from datetime import datetime

from ..errors import CredentialsError
from .profiles import ACCESS_KEY_ID, DEVELOPER_API_KEY, SECRET_ACCESS_KEY

OPTION = "credential_process"
TIMEOUT = 30.0
EXPIRATION = "Expiration"
_MAX_OUTPUT = 64 * 1024  # a key is some 100 bytes of JSON


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
        argv = shlex.split(command, posix=os.name != "nt")
    except ValueError as exc:  # an unclosed quote
        raise CredentialsError(f"{where} {OPTION}: cannot be split into words ({exc})") from None
    if not argv:
        raise CredentialsError(f"{where} {OPTION} is empty; name a command, or remove the line")
    return argv


def run(command: str, where: str, timeout: float = TIMEOUT) -> Issued:
    """Run the command, read its JSON; every failure names ``where`` (file and profile).

    Its output holds the secret: it is never logged, and no message quotes it.
    """
    argv = split_command(command, where)
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise CredentialsError(
            f"{where} {OPTION}: the command {argv[0]!r} was not found; check the line, or "
            "give the program's full path"
        ) from None
    except PermissionError:
        raise CredentialsError(
            f"{where} {OPTION}: {argv[0]!r} cannot be run (permission)"
        ) from None
    except subprocess.TimeoutExpired:
        raise CredentialsError(
            f"{where} {OPTION}: {argv[0]!r} did not finish within {timeout:g} s and was "
            "stopped; does it wait for input (a password prompt) that nobody can give here?"
        ) from None
    except OSError as exc:
        raise CredentialsError(
            f"{where} {OPTION}: {argv[0]!r} cannot be run ({exc.strerror})"
        ) from None
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").splitlines()
        first = next((line.strip() for line in lines if line.strip()), "")
        said = f": {first[:200]}" if first else " and printed nothing on standard error"
        raise CredentialsError(
            f"{where} {OPTION}: {argv[0]!r} exited with status {done.returncode}{said}"
        )
    return parse(done.stdout, f"{where} {OPTION} ({argv[0]!r})")


def parse(output: bytes, where: str) -> Issued:
    """One JSON object with R3_ACCESS_KEY_ID, R3_SECRET_ACCESS_KEY, optionally
    R3_DEVELOPER_API_KEY and Expiration (RFC 3339)."""
    shape = (
        f"print one JSON object with {ACCESS_KEY_ID} and {SECRET_ACCESS_KEY} (and optionally "
        f"{DEVELOPER_API_KEY} and {EXPIRATION}) on standard output"
    )
    try:
        data = json.loads(output) if len(output) <= _MAX_OUTPUT else None
    except ValueError:
        data = None
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
    return Issued(
        values[ACCESS_KEY_ID], values[SECRET_ACCESS_KEY], values.get(DEVELOPER_API_KEY), expires
    )


def _expiration(text: str, where: str) -> float:
    """RFC 3339 (``2026-12-07T21:30:00Z``, or with an offset): the offset is required."""
    try:
        # Before Python 3.11, fromisoformat does not read 'Z'.
        when = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise CredentialsError(
            f"{where}: {EXPIRATION} {text[:40]!r} is not an RFC 3339 time with a time zone, "
            "e.g. 2026-12-07T21:30:00Z"
        )
    return when.timestamp()
