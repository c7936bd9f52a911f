"""The import and configure commands: an access key, downloaded or typed in, stored in a profile."""

from __future__ import annotations

import dataclasses
import getpass
import os
import shlex
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from .credentials import check_value, default_credentials_path, mask, value_problem
from .credfile import CredentialsFile, Profile, Written
from .downloads import read_developer_key_file, read_download
from .profiles import ACCESS_KEY_ID, DEVELOPER_API_KEY, KEYS, SECRET_ACCESS_KEY

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


def _clean(key: str, value: str) -> str:
    # base64 ignores white space: a secret wrapped over lines is stored as one line.
    return "".join(value.split()) if key == SECRET_ACCESS_KEY else value.strip()


def _require(key: str, value: str, where: str, ini: bool = False, omit: str | None = None) -> str:
    """The value cleaned, if serve accepts it; else an error naming ``where`` it came from."""
    return check_value(key, _clean(key, value), where, ini=ini, omit=omit)


def run_import(
    source: Path,
    *,
    credentials: Path,
    profile: str,
    force: bool,
    developer_key_file: Path | None,
    terminal: Terminal,
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """``import FILE``: store the key of an account page download in profile ``profile``."""
    download = read_download(source)
    key_id = _require(ACCESS_KEY_ID, download.access_key_id, str(source), download.ini)
    secret = _require(SECRET_ACCESS_KEY, download.secret, str(source), download.ini)
    store = CredentialsFile.read(credentials)
    _may_replace(store, profile, force, None)
    developer_key: str | None = None
    if developer_key_file is not None:
        where = f"--developer-key-file {developer_key_file}"
        text = read_developer_key_file(developer_key_file, where)
        developer_key = _require(DEVELOPER_API_KEY, text, where, omit="leave the option out")
    elif download.developer_key:
        value, where = download.developer_key, str(source)
        developer_key = _require(DEVELOPER_API_KEY, value, where, download.ini, "remove the line")
    elif terminal.interactive:
        developer_key = _ask(terminal, DEVELOPER_API_KEY, _developer_prompt(store, profile))
    new = Profile(key_id, secret, developer_key, download.email)
    return _store(store, profile, new, os.environ if environ is None else environ)


def run_configure(
    *,
    credentials: Path,
    profile: str,
    force: bool,
    terminal: Terminal,
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """``configure``: store an access key typed in (or given on standard input, one per line)."""
    store = CredentialsFile.read(credentials)
    _may_replace(store, profile, force, terminal)
    if terminal.interactive:
        prompts = ("Access key ID: ", "Secret access key (not shown): ")
        key_id = _ask(terminal, ACCESS_KEY_ID, prompts[0]) or ""
        secret = _ask(terminal, SECRET_ACCESS_KEY, prompts[1]) or ""
        developer_key = _ask(terminal, DEVELOPER_API_KEY, _developer_prompt(store, profile))
    else:
        key_id, secret, developer_key = _read_values(terminal)
    new = Profile(key_id, secret, developer_key)
    return _store(store, profile, new, os.environ if environ is None else environ)


def _may_replace(store: CredentialsFile, name: str, force: bool, ask: Terminal | None) -> None:
    """Refuse to replace an existing profile unless forced, or confirmed on a terminal."""
    existing = store.find(name)
    if existing is None or force:
        return
    if ask is not None and ask.interactive:
        question = f"Profile [{existing}] exists in {store.path}; replace it?"
        if ask.confirm(question, default=False):
            return
        raise ConfigError(f"profile [{existing}] in {store.path} was left as it was")
    folded = f" (the profile serve reads for [{name}])" if existing != name else ""
    raise ConfigError(
        f"profile [{existing}] already exists in {store.path}{folded}; pass --force to "
        "replace it, or --profile NAME to store the key under another name"
    )


def _old_developer_key(store: CredentialsFile, name: str) -> tuple[str | None, str | None]:
    """The developer key of the profile a write of ``name`` replaces, if it has a valid one;
    else None and why the one it has is not valid (None: it has none)."""
    existing = store.find(name)
    old = store.profiles[existing].get(DEVELOPER_API_KEY.lower()) if existing else None
    if not old:
        return None, None
    reason = value_problem(DEVELOPER_API_KEY, old, ini=True)
    return (old, None) if reason is None else (None, reason)


def _developer_prompt(store: CredentialsFile, name: str) -> str:
    enter = "keep the current one" if _old_developer_key(store, name)[0] else "skip"
    return f"Developer API key (optional, for the REST API; Enter to {enter}): "


def _ask(terminal: Terminal, key: str, prompt: str) -> str | None:
    """Ask until the answer is valid, at most TRIES times; None for an optional key left empty."""
    ask = terminal.ask if key == ACCESS_KEY_ID else terminal.ask_secret
    reason = ""
    for attempt in range(1, TRIES + 1):
        value = _clean(key, ask(prompt))
        if not value and key == DEVELOPER_API_KEY:
            return None
        found = value_problem(key, value, omit="press Enter to skip it")
        if found is None:
            return value
        reason = found
        if attempt < TRIES:
            terminal.tell(f"Not accepted: {reason}. Try again.")
    raise ConfigError(f"{reason} ({TRIES} tries); nothing was written")


def _read_values(terminal: Terminal) -> tuple[str, str, str | None]:
    values: list[str] = []
    for number, key in enumerate(KEYS, 1):
        value = _clean(key, terminal.read_line())
        if not value and key != DEVELOPER_API_KEY:
            raise ConfigError(f"standard input: line {number}, {key}, is missing; {_STDIN_FORMAT}")
        where, omit = f"standard input, line {number}", f"leave line {number} out"
        values.append(_require(key, value, where, omit=omit) if value else "")
    return values[0], values[1], values[2] or None


def _store(
    store: CredentialsFile, name: str, new: Profile, environ: Mapping[str, str]
) -> list[str]:
    """Write the profile, keeping the developer key of the one it replaces when none is given
    (it belongs to the account, not to the access key rotated), unless serve would refuse it."""
    existing = store.find(name)
    old = store.profiles[existing] if existing is not None else {}
    kept, dropped = _old_developer_key(store, name) if not new.developer_key else (None, None)
    if kept:
        new = dataclasses.replace(new, developer_key=kept)
    written = store.write(name, new)
    return _report(written, new, old.get(ACCESS_KEY_ID.lower()), bool(kept), dropped, environ)


def _report(
    written: Written,
    new: Profile,
    old_key_id: str | None,
    kept: bool,
    dropped: str | None,
    environ: Mapping[str, str],
) -> list[str]:
    path, name = written.real, written.profile
    via = f" (reached through a symbolic link from {written.path})"
    path_text = f"{path}{via}" if path != Path(os.path.abspath(written.path)) else str(path)
    if written.created:
        done = f"Created {path_text} with profile [{name}]"
    elif written.replaced is not None:
        was = f" (was {mask(old_key_id)})" if old_key_id else ""
        done = f"Replaced profile [{name}] in {path_text}{was}"
    else:
        done = f"Added profile [{name}] to {path_text}"
    account = f" of {new.comment}" if new.comment else ""
    lines = [f"{done}: access key {mask(new.access_key_id)}{account}."]
    if kept or new.developer_key:
        said = "kept from the profile replaced" if kept else "stored"
    elif dropped:
        said = f"the one in the profile replaced was not valid ({dropped}), not kept"
    else:
        said = "none (optional; the REST API needs one)"
    lines.append(f"Developer API key: {said}.")
    if written.mode is not None and written.mode & 0o077:
        lines.append(
            f"warning: {path} can be read by other users (mode {written.mode:o}); "
            f"run: chmod 600 {shlex.quote(str(path))}"
        )
    overridden = [key for key in KEYS if environ.get(key, "").strip()]
    if overridden:
        verb, them = ("is", "it") if len(overridden) == 1 else ("are", "them")
        lines.append(
            f"warning: {' and '.join(overridden)} {verb} set in the environment: serve and check "
            f"use the environment's value instead of {path}; unset {them} to use the file"
        )
    command = ["remoteit-proxy", "check", "--profile", name]
    if Path(os.path.abspath(written.path)) != default_credentials_path():
        command += ["--credentials", str(written.path)]
    lines.append(f"Next: {shlex.join(command)}")
    return lines
