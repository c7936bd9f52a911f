"""The OS keychain, through ``keyring``: one secret per access key id, loaded only when used."""

from __future__ import annotations

import os
from typing import Any

from ..errors import CredentialsError

SERVICE = "remoteit-proxy"
# Backends that keep secrets in a file of their own: used only when chosen explicitly.
_FILE_BACKENDS = ("keyrings.alt.",)
STORE = "keychain"
# What a message suggests when the keychain cannot be used at all.
_USE_FILE = (
    "or keep the secret in the credentials file instead: remoteit-proxy import FILE --store "
    "file --force (or configure --store file --force)"
)


def _keyring() -> Any:
    """The ``keyring`` module: imported here, so that only a profile that uses it pays for it
    (it loads its backends' modules, D-Bus among them, at import)."""
    try:
        import keyring
    except ImportError:  # pragma: no cover - a dependency; a broken install says so
        raise CredentialsError(
            "the keychain needs the Python package 'keyring'; reinstall remoteit-proxy"
        ) from None
    return keyring


# Any failure of a backend: besides keyring's own errors, the Secret Service backend fails
# with RuntimeError or a bare OSError when there is no D-Bus session to talk to, and other
# backends have their own. Each becomes a CredentialsError that names the fix.
_ERRORS = (Exception,)


def backend_name() -> str:
    """The backend keyring picked (e.g. 'SecretService Keyring', 'macOS Keyring')."""
    try:
        backend = _first(_keyring().get_keyring())
    except Exception:  # e.g. the Secret Service backend with no D-Bus session
        return "no usable backend"
    name = getattr(backend, "name", "") or type(backend).__name__
    return f"{name} ({type(backend).__module__}.{type(backend).__name__})"


def _first(backend: Any) -> Any:
    """The backend that stores: a chain of backends (keyring's ChainerBackend, when several
    are usable) stores into its first one."""
    return (getattr(backend, "backends", None) or [backend])[0]


def _failure(exc: Exception, profile: str, doing: str) -> CredentialsError:
    """The keyring error as a message naming the profile, the backend and the fix; never the
    exception's own text from deep in a backend, which is no help and may quote a value."""
    errors = _keyring().errors
    where = f"profile [{profile}]: cannot {doing} the OS keychain"
    if isinstance(exc, errors.NoKeyringError):
        return CredentialsError(
            f"{where}: no keychain backend is available here (keyring found none: no desktop "
            "session with a Secret Service, macOS Keychain or Windows Credential Locker); run "
            f"where one is, set PYTHON_KEYRING_BACKEND to a backend you have, {_USE_FILE}"
        )
    backend = backend_name()
    if isinstance(exc, errors.KeyringLocked):
        return CredentialsError(
            f"{where}: the keychain of {backend} is locked; unlock it (log in to the desktop "
            f"session, or unlock the 'login' keyring) and try again, {_USE_FILE}"
        )
    return CredentialsError(
        f"{where}: {backend} failed ({type(exc).__name__}); check that the keychain works "
        f"(e.g. python -m keyring get {SERVICE} KEY_ID), {_USE_FILE}"
    )


def _require_keychain(profile: str) -> None:
    """Refuse a backend that keyring picked by itself but that is a file on disk, not an OS
    keychain: keyrings.alt's, chosen when nothing better is there (a server, a container)."""
    keyring = _keyring()
    try:
        first = _first(keyring.get_keyring())
        chosen = os.environ.get("PYTHON_KEYRING_BACKEND") or keyring.core.load_config()
    except Exception:  # the call that follows reports what is wrong
        return
    kind = f"{type(first).__module__}.{type(first).__name__}"
    if chosen or not kind.startswith(_FILE_BACKENDS):
        return
    raise CredentialsError(
        f"profile [{profile}]: keyring would keep the secret in a file ({kind}), not in an "
        "OS keychain: none was found here (Secret Service, macOS Keychain, Windows "
        "Credential Locker). Run where one is; or, if a file is what you want, choose it "
        f"with PYTHON_KEYRING_BACKEND={kind}, {_USE_FILE}"
    )


def get_secret(profile: str, key_id: str) -> str:
    """The secret (base64 text, as R3_SECRET_ACCESS_KEY) stored for ``key_id``."""
    _require_keychain(profile)
    keyring = _keyring()
    try:
        secret = keyring.get_password(SERVICE, key_id)
    except _ERRORS as exc:
        raise _failure(exc, profile, "read from") from None
    if not secret:
        raise CredentialsError(
            f"profile [{profile}]: the OS keychain ({backend_name()}) has no entry for service "
            f"'{SERVICE}', user '{key_id}' (secret_store = {STORE}); store the key there "
            f"again: remoteit-proxy configure --profile {profile} --store {STORE} --force, "
            f"{_USE_FILE.removeprefix('or ')}"
        )
    return str(secret)


def existing(key_id: str) -> str | None:
    """The entry of ``key_id`` if one can be read, else None (no error: for undoing a write)."""
    keyring = _keyring()
    try:
        found = keyring.get_password(SERVICE, key_id)
    except _ERRORS:
        return None
    return str(found) if found else None


def set_secret(profile: str, key_id: str, secret: str) -> None:
    """Store ``secret`` (base64 text) for ``key_id``, replacing any entry it had."""
    _require_keychain(profile)
    keyring = _keyring()
    try:
        keyring.set_password(SERVICE, key_id, secret)
    except _ERRORS as exc:
        raise _failure(exc, profile, "store the secret in") from None


def delete_secret(key_id: str) -> bool:
    """Remove the entry of ``key_id``; False when there was none or it cannot be removed."""
    keyring = _keyring()
    try:
        keyring.delete_password(SERVICE, key_id)
    except _ERRORS:  # PasswordDeleteError included: nothing to remove
        return False
    return True
