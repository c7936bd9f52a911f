"""The private Secret Service the keychain tests use is a real one: keyring stores in it."""

from __future__ import annotations

import subprocess
import sys

import keyring
import keyring.backends.SecretService
import pytest
from keyring.errors import KeyringLocked
from secret_service import SERVICE, SecretService, secret_service_fixture  # noqa: F401

KEY_ID = "TESTKEYIDSECRETSVC01"


def test_keyring_in_process(secret_service: SecretService, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = secret_service.activate(monkeypatch)
    assert isinstance(backend, keyring.backends.SecretService.Keyring)
    assert keyring.get_password(SERVICE, KEY_ID) is None
    keyring.set_password(SERVICE, KEY_ID, "c2VjcmV0\n")
    assert keyring.get_password(SERVICE, KEY_ID) == "c2VjcmV0\n"
    assert secret_service.passwords() == {KEY_ID: "c2VjcmV0\n"}
    keyring.delete_password(SERVICE, KEY_ID)
    assert keyring.get_password(SERVICE, KEY_ID) is None
    assert secret_service.passwords() == {}


CHILD = """
import sys, keyring
service, user = sys.argv[1:]
print(type(keyring.get_keyring()).__module__, keyring.get_password(service, user))
keyring.set_password(service, user, "from the child")
"""


def test_keyring_in_a_child_process(secret_service: SecretService) -> None:
    ran = subprocess.run(
        [sys.executable, "-c", CHILD, SERVICE, KEY_ID],
        env=secret_service.child_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "keyring.backends.SecretService None\n"
    assert secret_service.passwords() == {KEY_ID: "from the child"}


def test_locked_keychain(secret_service: SecretService, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_service.activate(monkeypatch)
    keyring.set_password(SERVICE, KEY_ID, "kept")
    secret_service.lock()
    assert secret_service.is_locked()
    # Unlocking needs a prompt, which nothing on the private bus answers: keyring gives up.
    with pytest.raises(KeyringLocked):
        keyring.get_password(SERVICE, KEY_ID)
    with pytest.raises(KeyringLocked):
        keyring.set_password(SERVICE, KEY_ID, "other")
    with pytest.raises(ValueError, match="password was invalid"):
        secret_service.unlock("not the password")
    assert secret_service.is_locked()
    secret_service.unlock()
    assert not secret_service.is_locked()
    assert keyring.get_password(SERVICE, KEY_ID) == "kept"
