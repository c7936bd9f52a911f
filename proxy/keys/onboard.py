"""The import and configure commands: an access key, downloaded or typed in, stored in a profile."""

from __future__ import annotations

import dataclasses
import os
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path

from ..errors import ConfigError, ProxyError
from . import keychain
from .credentials import FILE, Credentials, default_credentials_path
from .credfile import CredentialsFile, Profile, Written
from .downloads import read_developer_key_file, read_download
from .profiles import ACCESS_KEY_ID, DEVELOPER_API_KEY, KEYS, SECRET_ACCESS_KEY
from .store import store_of, write_key
from .terminal import Terminal, ask, read_values, require
from .values import decode_secret, mask, value_problem

FETCHED = "fetched from your account"
# Asks the API for the account's developer key with a key just given (None: it has none).
Fetch = Callable[[Credentials], "str | None"]


def run_import(
    source: Path,
    *,
    credentials: Path,
    profile: str,
    force: bool,
    developer_key_file: Path | None,
    terminal: Terminal,
    environ: Mapping[str, str] | None = None,
    store_in: str = FILE,
    fetch: Fetch | None = None,
) -> list[str]:
    """``import FILE``: store the key of an account page download in profile ``profile``
    (its secret in the file or the OS keychain); with no developer key given, ``fetch`` it."""
    download = read_download(source)
    key_id = require(ACCESS_KEY_ID, download.access_key_id, str(source), download.ini)
    secret = require(SECRET_ACCESS_KEY, download.secret, str(source), download.ini)
    store = CredentialsFile.read(credentials)
    _may_replace(store, profile, force, None, key_id)
    developer_key: str | None = None
    fetched: str | None = None
    if developer_key_file is not None:
        where = f"--developer-key-file {developer_key_file}"
        text = read_developer_key_file(developer_key_file, where)
        developer_key = require(DEVELOPER_API_KEY, text, where, omit="leave the option out")
    elif download.developer_key:
        value, where = download.developer_key, str(source)
        developer_key = require(DEVELOPER_API_KEY, value, where, download.ini, "remove the line")
    else:
        developer_key, fetched = _fetch(fetch, key_id, secret, profile)
        if developer_key is None and terminal.interactive:
            developer_key = ask(terminal, DEVELOPER_API_KEY, _developer_prompt(store, profile))
    new = Profile(key_id, secret, developer_key, download.email, store_in)
    return _store(store, profile, new, os.environ if environ is None else environ, fetched)


def run_configure(
    *,
    credentials: Path,
    profile: str,
    force: bool,
    terminal: Terminal,
    environ: Mapping[str, str] | None = None,
    store_in: str = FILE,
    fetch: Fetch | None = None,
) -> list[str]:
    """``configure``: store an access key typed in (or given on standard input, one per line);
    with no developer key given, ``fetch`` it."""
    store = CredentialsFile.read(credentials)
    _may_replace(store, profile, force, terminal)
    fetched: str | None = None
    if terminal.interactive:
        prompts = ("Access key ID: ", "Secret access key (not shown): ")
        key_id = ask(terminal, ACCESS_KEY_ID, prompts[0]) or ""
        secret = ask(terminal, SECRET_ACCESS_KEY, prompts[1]) or ""
        developer_key, fetched = _fetch(fetch, key_id, secret, profile)
        if developer_key is None:
            developer_key = ask(terminal, DEVELOPER_API_KEY, _developer_prompt(store, profile))
    else:
        key_id, secret, developer_key = read_values(terminal)
        if developer_key is None:
            developer_key, fetched = _fetch(fetch, key_id, secret, profile)
    new = Profile(key_id, secret, developer_key, store=store_in)
    return _store(store, profile, new, os.environ if environ is None else environ, fetched)


def _fetch(
    fetch: Fetch | None, key_id: str, secret: str, profile: str
) -> tuple[str | None, str | None]:
    """The account's developer key, asked of the API with the new key, and what to say of it
    (None: nothing was asked)."""
    if fetch is None:
        return None, None
    creds = Credentials(key_id, decode_secret(secret, "the secret"), profile=profile)
    try:
        found = fetch(creds)
    except ProxyError as exc:
        return None, f"could not be fetched from your account ({exc})"
    if found is None:
        return None, "is not set on your account"
    try:
        return require(DEVELOPER_API_KEY, found, "the API's answer"), FETCHED
    except ConfigError as exc:
        return None, f"from your account was not used ({exc})"


def _may_replace(
    store: CredentialsFile, name: str, force: bool, ask: Terminal | None, key_id: str = ""
) -> None:
    """Refuse to replace an existing profile unless forced, or confirmed on a terminal; the
    same key again (moved to or from the keychain) is no replacement."""
    existing = store.find(name)
    if existing is None or force:
        return
    if key_id and store.profiles[existing].get(ACCESS_KEY_ID.lower()) == key_id:
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


def _store(
    store: CredentialsFile,
    name: str,
    new: Profile,
    environ: Mapping[str, str],
    fetched: str | None,
) -> list[str]:
    """Write the profile, keeping the developer key of the one it replaces when none is given
    (it belongs to the account, not to the access key rotated), unless serve would refuse it."""
    existing = store.find(name)
    old = store.profiles[existing] if existing is not None else {}
    kept, dropped = _old_developer_key(store, name) if not new.developer_key else (None, None)
    if kept:
        new = dataclasses.replace(new, developer_key=kept)
    written = write_key(store, name, new)
    lines = _report(written, new, old.get(ACCESS_KEY_ID.lower()), kept, dropped, fetched)
    return lines[:1] + _secret_lines(old, new) + lines[1:] + _warnings(written, environ)


def _secret_lines(old: Mapping[str, str], new: Profile) -> list[str]:
    lines = []
    if new.store == keychain.STORE:
        backend = keychain.backend_name()
        lines.append(f"Secret access key: in the OS keychain ({backend}), not in the file.")
    old_id = old.get(ACCESS_KEY_ID.lower(), "")
    if (
        old_id
        and store_of(old) == keychain.STORE
        and (new.store != keychain.STORE or new.access_key_id.casefold() != old_id.casefold())
    ):
        # Not removed here: a profile of another credentials file may use the same entry.
        lines.append(
            f"Note: the keychain still holds the secret of {mask(old_id)}; once nothing uses "
            f"it, remove it with: python -m keyring del {keychain.SERVICE} {old_id}"
        )
    return lines


def _report(
    written: Written,
    new: Profile,
    old_key_id: str | None,
    kept: str | None,
    dropped: str | None,
    fetched: str | None,
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
    if fetched == FETCHED:
        said = FETCHED
    elif kept or new.developer_key:
        said = "kept from the profile replaced" if kept else "stored"
    elif dropped:
        said = f"the one in the profile replaced was not valid ({dropped}), not kept"
    else:
        said = "none (optional; the REST API needs one)"
    if fetched is not None and fetched != FETCHED:
        lines.append(f"Note: the developer API key {fetched}.")
    lines.append(f"Developer API key: {said}.")
    return lines


def _warnings(written: Written, environ: Mapping[str, str]) -> list[str]:
    path, name = written.real, written.profile
    lines = []
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
