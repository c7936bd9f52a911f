"""Storing a key in a profile, secret where the profile keeps it: the file or the OS keychain."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from . import keychain
from .credentials import FILE, SECRET_STORE
from .credfile import CredentialsFile, Profile, Written
from .profiles import ACCESS_KEY_ID

STORES = (FILE, keychain.STORE)


def store_of(values: Mapping[str, str]) -> str:
    """Where an existing profile (as parse_profiles reads it) keeps its secret."""
    return (
        FILE if values.get(SECRET_STORE, "").strip().lower() != keychain.STORE else keychain.STORE
    )


def write_key(file: CredentialsFile, name: str, profile: Profile) -> Written:
    """Write profile ``name``. A keychain secret is stored first, so that the file, once
    written, is checked by loading it as serve does (the keychain included); if the file
    cannot be written, the keychain entry is put back as it was."""
    key_id = profile.access_key_id
    before = None
    if profile.store == keychain.STORE:
        before = keychain.existing(key_id)
        keychain.set_secret(name, key_id, profile.secret)
    try:
        return file.write(name, profile)
    except BaseException:
        if profile.store == keychain.STORE:
            if before is None:
                keychain.delete_secret(key_id)
            else:
                keychain.set_secret(name, key_id, before)
        raise


def forget_old(old: Mapping[str, str], path: Path) -> bool:
    """After profile ``old`` was replaced in the file at ``path``: remove its keychain entry
    if no profile there uses it any more. True if one was removed."""
    old_id = old.get(ACCESS_KEY_ID.lower(), "")
    if not old_id or store_of(old) != keychain.STORE:
        return False
    for values in CredentialsFile.read(path).profiles.values():
        # Some backends fold the case of the user name (keyrings.alt, Windows): so do we.
        same = values.get(ACCESS_KEY_ID.lower(), "").casefold() == old_id.casefold()
        if same and store_of(values) == keychain.STORE:
            return False
    return keychain.delete_secret(old_id)
