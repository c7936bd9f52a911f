"""Credentials: the key to sign with, from the environment, the file, the keychain or a command."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CredentialsError
from . import keychain, process
from .profiles import (
    ACCESS_KEY_ID,
    DEFAULT_PROFILE,
    DEVELOPER_API_KEY,
    SECRET_ACCESS_KEY,
    parse_profiles,
    read_text,
    select_profile,
)
from .values import check_value, decode_secret, mask

__all__ = ["DEFAULT_PROFILE", "ENVIRONMENT", "FILE", "PROCESS", "SECRET_STORE", "Credentials"]
__all__ += ["default_credentials_path", "load_credentials"]

ENVIRONMENT = "environment"
FILE = "file"
PROCESS = "process"
SECRET_STORE = "secret_store"  # the profile's key: where its secret is kept


@dataclass(frozen=True)
class Credentials:
    """One access key: id, decoded secret bytes and optional developer key."""

    access_key_id: str
    secret: bytes = field(repr=False)
    developer_key: str | None = field(default=None, repr=False)
    profile: str = DEFAULT_PROFILE
    source: str = ENVIRONMENT  # the credentials file's path, or ENVIRONMENT
    store: str = ENVIRONMENT  # where the secret came from: FILE, keychain.STORE, PROCESS, ...
    expires: float | None = None  # when a credential_process's key expires (epoch seconds)

    @property
    def masked_key_id(self) -> str:
        """The key id with all but its last 4 characters replaced by ``*``."""
        return mask(self.access_key_id)


def default_credentials_path() -> Path:
    """``~/.remoteit/credentials`` (``Path.home()``: ``C:\\Users\\<user>`` on Windows)."""
    return Path.home() / ".remoteit" / "credentials"


def _from_environment(environ: Mapping[str, str]) -> tuple[str, str] | None:
    key_id = environ.get(ACCESS_KEY_ID, "").strip()
    secret = environ.get(SECRET_ACCESS_KEY, "").strip()
    if key_id and secret:
        return key_id, secret
    if key_id or secret:
        present = ACCESS_KEY_ID if key_id else SECRET_ACCESS_KEY
        absent = SECRET_ACCESS_KEY if key_id else ACCESS_KEY_ID
        raise CredentialsError(
            f"the environment variable {present} is set but {absent} is not: set both to use "
            f"credentials from the environment, or unset {present} to use the credentials file"
        )
    return None


def load_credentials(path: Path, profile: str, environ: Mapping[str, str]) -> Credentials:
    """Load the credentials to sign with.

    ``R3_ACCESS_KEY_ID`` and ``R3_SECRET_ACCESS_KEY`` in ``environ`` (both set) take precedence
    over the file, which then need not exist; ``R3_DEVELOPER_API_KEY`` likewise. Otherwise the
    profile holds the key id and the secret, or the key id and ``secret_store = keychain``
    (the secret is in the OS keychain), or ``credential_process = COMMAND`` (a command prints
    the key).
    """
    env_developer_key = environ.get(DEVELOPER_API_KEY, "").strip() or None
    pair = _from_environment(environ)
    store, expires = ENVIRONMENT, None
    if pair is not None:
        where = ENVIRONMENT
        key_id, secret_text = pair
        profile_name, source, developer_key = ENVIRONMENT, ENVIRONMENT, None
        ini = False
    else:
        profile_name, values = select_profile(parse_profiles(read_text(path), path), profile, path)
        where = f"{path}, profile [{profile_name}]"
        source, ini = str(path), True
        store = _store_of(values, where)
        developer_key = values.get(DEVELOPER_API_KEY.lower()) or None
        if store == PROCESS:
            issued = process.run(values[process.OPTION], where)
            key_id, secret_text, expires = issued.access_key_id, issued.secret, issued.expires
            developer_key = issued.developer_key or developer_key
            where, ini = f"{where} {process.OPTION}", False
        else:
            key_id = values.get(ACCESS_KEY_ID.lower(), "")
            _require(where, ACCESS_KEY_ID, key_id)
            if store == keychain.STORE:
                key_id = check_value(ACCESS_KEY_ID, key_id, where, ini=True)
                secret_text = keychain.get_secret(profile_name, key_id)
            else:
                secret_text = values.get(SECRET_ACCESS_KEY.lower(), "")
                _require(where, SECRET_ACCESS_KEY, secret_text)
    access_key_id = check_value(ACCESS_KEY_ID, key_id, where, ini=ini)
    secret_where = f"{where} (the secret in the OS keychain)" if store == keychain.STORE else where
    secret = decode_secret(secret_text, secret_where, ini=ini and store == FILE)
    if env_developer_key is not None:
        where, ini, developer_key = ENVIRONMENT, False, env_developer_key
    if developer_key:
        omit = "remove the line" if ini else f"unset {DEVELOPER_API_KEY}"
        developer_key = check_value(DEVELOPER_API_KEY, developer_key, where, ini=ini, omit=omit)
    return Credentials(
        access_key_id=access_key_id,
        secret=secret,
        developer_key=developer_key,
        profile=profile_name,
        source=source,
        store=store,
        expires=expires,
    )


def _require(where: str, key: str, value: str) -> None:
    if not value:
        raise CredentialsError(
            f"{where}: {key} is missing or empty; add a line '{key}=...' "
            "with the value from the Remote.It account page"
        )


def _store_of(values: Mapping[str, str], where: str) -> str:
    """Where the profile keeps its secret: the file, the keychain, or a command's output."""
    chosen = values.get(SECRET_STORE, "").strip().lower() or FILE
    if chosen not in (FILE, keychain.STORE):
        raise CredentialsError(
            f"{where}: {SECRET_STORE} = {chosen[:40]!r} is not a store; use "
            f"{SECRET_STORE} = {keychain.STORE} (the OS keychain) or remove the line (the file)"
        )
    if process.OPTION not in values:
        if chosen == keychain.STORE and values.get(SECRET_ACCESS_KEY.lower()):
            raise CredentialsError(
                f"{where}: has both {SECRET_ACCESS_KEY} and {SECRET_STORE} = {keychain.STORE}; "
                f"remove the {SECRET_ACCESS_KEY} line (the keychain holds the secret) or the "
                f"{SECRET_STORE} line"
            )
        return chosen
    extra = [k.upper() for k in (ACCESS_KEY_ID.lower(), SECRET_ACCESS_KEY.lower()) if k in values]
    if SECRET_STORE in values:
        extra.append(SECRET_STORE)
    if extra:
        raise CredentialsError(
            f"{where}: has {process.OPTION} and also {', '.join(extra)}; the command gives the "
            f"key, so remove {'that line' if len(extra) == 1 else 'those lines'}, or remove "
            f"{process.OPTION}"
        )
    return PROCESS
