"""A private Secret Service for the keychain tests: gnome-keyring on a D-Bus bus of its own."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import closing, suppress
from pathlib import Path
from typing import NoReturn

import keyring
import keyring.core
import pytest
import secretstorage
import secretstorage.exceptions
from jeepney import DBusAddress, MessageType, new_method_call
from jeepney.io.blocking import DBusConnection, open_dbus_connection
from keyring.backend import KeyringBackend

# The keychain entry the proxy uses: service name, and the access key id as the user name.
SERVICE = "remoteit-proxy"
BACKEND = "keyring.backends.SecretService.Keyring"
# The login keyring's password: the daemon is unlocked with it, and so is unlock().
PASSWORD = "remoteit-proxy test keyring"
# Set to 1 (as .ci/run does) to fail, not skip, when the Secret Service cannot be started.
REQUIRE = "REMOTEIT_PROXY_REQUIRE_SECRET_SERVICE"
MISSING = (
    "needs gnome-keyring-daemon and dbus-daemon "
    "(Debian packages gnome-keyring, dbus; .ci/run installs them)"
)
STARTUP_TIMEOUT = 10.0

_SECRETS = "org.freedesktop.secrets"
_SERVICE_PATH = "/org/freedesktop/secrets"
_LOGIN = "/org/freedesktop/secrets/collection/login"
_DEFAULT = "/org/freedesktop/secrets/aliases/default"
# gnome-keyring's own interface: unlocks a collection with its password, without a prompt.
_GNOME = "org.gnome.keyring.InternalUnsupportedGuiltRiddenInterface"
# No <servicedir>: nothing on this bus is activatable, so the machine's own daemons never start
# on it, and a prompt (to unlock a locked collection) is dismissed at once instead of waiting.
_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""
# Variables of the machine's session that would point a client or the daemon elsewhere.
_FOREIGN = ("GNOME_KEYRING_CONTROL", "KEYRING_PROPERTY_")


class SecretServiceError(RuntimeError):
    """The private bus or the keyring daemon did not come up."""


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get(REQUIRE) == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Ends the process and whatever it started (its own session), then reaps it."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with suppress(subprocess.TimeoutExpired):
            process.wait(wait)
            return


class SecretService:
    """A running gnome-keyring (secrets component) on a private session bus, login unlocked.

    ``env`` holds the variables a client needs (bus address, keyring backend, HOME and XDG
    directories); ``child_env()`` is a whole environment for a subprocess; ``activate()`` points
    this process's ``keyring`` at it.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        # Short, whatever the test's name: the bus and the daemon's control are unix sockets here.
        self.runtime = Path(tempfile.mkdtemp(prefix="rss-"))
        self.bus_address = f"unix:path={self.runtime / 'bus'}"
        self.password = PASSWORD
        self.env: dict[str, str] = {
            "DBUS_SESSION_BUS_ADDRESS": self.bus_address,
            "PYTHON_KEYRING_BACKEND": BACKEND,
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "XDG_DATA_HOME": str(self.home / ".local" / "share"),
            "XDG_CACHE_HOME": str(self.home / ".cache"),
            "XDG_RUNTIME_DIR": str(self.runtime),
        }
        self._processes: list[subprocess.Popen[bytes]] = []

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def start(cls, root: Path) -> SecretService:
        """Starts the bus and the daemon under ``root``; raises SecretServiceError on failure."""
        service = cls(root)
        try:
            service._start()
        except BaseException:
            service.close()
            raise
        return service

    def _start(self) -> None:
        for name in ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
            Path(self.env[name]).mkdir(parents=True, exist_ok=True)
        config = self.root / "bus.conf"
        config.write_text(_BUS_CONFIG.format(socket=self.runtime / "bus"), encoding="utf-8")
        env = self.child_env()
        del env["PYTHON_KEYRING_BACKEND"]
        self._spawn(
            ["dbus-daemon", f"--config-file={config}", "--nofork", "--nopidfile"],
            env,
            self.root / "dbus-daemon.log",
        )
        self._wait("the private D-Bus bus", self._bus_ready)
        # --unlock reads the login keyring's password from stdin; a new keyring is created
        # with it and made the default collection.
        daemon = self._spawn(
            ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
            env,
            self.root / "gnome-keyring.log",
            stdin=subprocess.PIPE,
        )
        assert daemon.stdin is not None
        with suppress(BrokenPipeError), daemon.stdin:  # An early exit is reported just below.
            daemon.stdin.write(self.password.encode())
        self._wait("gnome-keyring-daemon's unlocked login keyring", self._keyring_ready)

    def _spawn(
        self, argv: list[str], env: dict[str, str], log: Path, stdin: int | None = None
    ) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL if stdin is None else stdin,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._processes.append(process)
        return process

    def _wait(self, what: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            for process in self._processes:
                if process.poll() is not None:
                    raise SecretServiceError(
                        f"{process.args!r} exited with {process.returncode} while waiting for "
                        f"{what}:\n{self.logs()}"
                    )
            with suppress(OSError, ValueError, secretstorage.exceptions.SecretStorageException):
                if ready():
                    return
            if time.monotonic() > deadline:
                raise SecretServiceError(f"timed out waiting for {what}:\n{self.logs()}")
            time.sleep(0.01)

    def _bus_ready(self) -> bool:
        with self.connect():
            return True

    def _keyring_ready(self) -> bool:
        with self.connect() as connection:
            bus = DBusAddress(
                "/org/freedesktop/DBus",
                bus_name="org.freedesktop.DBus",
                interface="org.freedesktop.DBus",
            )
            owned = connection.send_and_get_reply(
                new_method_call(bus, "NameHasOwner", "s", (_SECRETS,))
            )
            if not owned.body[0]:
                return False
            alias = _call(connection, "org.freedesktop.Secret.Service", "ReadAlias", "s", "default")
            if alias[0] == "/":
                return False
            return not secretstorage.Collection(connection, _DEFAULT).is_locked()

    def logs(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')}"
            for log in sorted(self.root.glob("*.log"))
        )

    def close(self) -> None:
        """Stops the daemon, then the bus; removes the runtime directory. Idempotent."""
        while self._processes:
            _stop(self._processes.pop())
        shutil.rmtree(self.runtime, ignore_errors=True)

    # -- clients -----------------------------------------------------------------------------

    def child_env(self, **extra: str) -> dict[str, str]:
        """This process's environment, less the machine's session, plus ``env`` and ``extra``."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN)}
        return env | self.env | extra

    def activate(self, monkeypatch: pytest.MonkeyPatch) -> KeyringBackend:
        """Points this process's ``keyring`` at this Secret Service until the test ends."""
        for name in os.environ:
            if name.startswith(_FOREIGN):
                monkeypatch.delenv(name)
        for name, value in self.env.items():
            monkeypatch.setenv(name, value)
        # keyring keeps the first backend it chose: forget it (monkeypatch restores it after),
        # so that the next get_keyring() reads PYTHON_KEYRING_BACKEND again.
        monkeypatch.setattr(keyring.core, "_keyring_backend", None)
        return keyring.get_keyring()

    def connect(self) -> DBusConnection:
        """A new connection to the private bus (close it: use it in a ``with``)."""
        return open_dbus_connection(bus=self.bus_address)

    # -- the default collection --------------------------------------------------------------

    def lock(self) -> None:
        """Locks the default collection: keyring's reads and writes then raise KeyringLocked."""
        with self.connect() as connection:
            secretstorage.Collection(connection, _DEFAULT).lock()

    def unlock(self, password: str | None = None) -> None:
        """Unlocks the default collection with its password, no prompt (ValueError if wrong)."""
        with self.connect() as connection:
            _, session = _call(
                connection,
                "org.freedesktop.Secret.Service",
                "OpenSession",
                "sv",
                "plain",
                ("s", ""),
            )
            secret = (session, b"", (password or self.password).encode(), "text/plain")
            _call(connection, _GNOME, "UnlockWithMasterPassword", "o(oayays)", _LOGIN, secret)

    def is_locked(self) -> bool:
        with self.connect() as connection:
            return bool(secretstorage.Collection(connection, _DEFAULT).is_locked())

    def passwords(self, service: str = SERVICE) -> dict[str, str]:
        """What keyring stored for ``service`` in the default collection: user name -> password."""
        with self.connect() as connection:
            collection = secretstorage.Collection(connection, _DEFAULT)
            return {
                item.get_attributes()["username"]: item.get_secret().decode()
                for item in collection.search_items({"service": service})
            }


def _call(
    connection: DBusConnection, interface: str, method: str, signature: str, *args: object
) -> tuple[object, ...]:
    address = DBusAddress(_SERVICE_PATH, bus_name=_SECRETS, interface=interface)
    reply = connection.send_and_get_reply(new_method_call(address, method, signature, args))
    if reply.header.message_type == MessageType.error:
        raise ValueError(f"{method}: {reply.body}")
    return tuple(reply.body)


# Named apart from its fixture name, so that a test module can import it (F401 aside) without
# its tests' argument shadowing the import; or list "secret_service" in pytest_plugins.
@pytest.fixture(name="secret_service")
def secret_service_fixture(tmp_path: Path) -> Iterator[SecretService]:
    """A fresh, empty, unlocked Secret Service for this test; stopped after it, pass or fail."""
    if not (shutil.which("gnome-keyring-daemon") and shutil.which("dbus-daemon")):
        _unavailable(MISSING)
    try:
        service = SecretService.start(tmp_path)
    except SecretServiceError as error:
        failure = str(error)
    else:
        failure = ""
    if failure:
        _unavailable(f"could not start the Secret Service: {failure}")
    with closing(service):
        yield service
