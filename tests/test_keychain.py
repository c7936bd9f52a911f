"""The secret in the OS keychain: import and configure --store keychain, serve and reloads."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import aiohttp
import pytest
from conftest import KEY_ID, SECRET, SECRET_B64, write_credentials
from fake_account import AccountUpstream, FakeAccount
from secret_service import SecretService, secret_service_fixture  # noqa: F401
from test_cli import base_env, proxy_process
from test_onboard import INI_DOWNLOAD, download
from test_rotation import key_of

ALT_BACKEND = "keyrings.alt.file.PlaintextKeyring"
DEVELOPER_KEY = "DEVKEY-0123456789"  # the fake account's
T = TypeVar("T")
LOGIN = b'{"query":"{ login { email } }"}'
SECRET_FORMS = (SECRET_B64, SECRET_B64.rstrip("="), base64.urlsafe_b64encode(SECRET).decode())


@pytest.fixture
def upstream(account_upstream: AccountUpstream) -> AccountUpstream:
    return account_upstream  # this module's upstream also answers for the account


def alt_env(home: Path, upstream: str, **extra: str) -> dict[str, str]:
    """A user's environment whose keychain is keyrings.alt's file backend, under ``home``."""
    env = base_env(home) | {
        "PYTHON_KEYRING_BACKEND": ALT_BACKEND,
        "XDG_DATA_HOME": str(home / "data"),
        "REMOTEIT_PROXY_UPSTREAM": upstream,
    }
    return env | extra


async def cli(env: dict[str, str], *args: str, stdin: str = "") -> tuple[int, str, str]:
    """``python -m proxy ARGS`` while the fake API answers in this event loop."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxy",
        *args,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), 60)
    assert process.returncode is not None
    text = out.decode() + err.decode()
    assert "Traceback" not in text
    assert not any(form in text for form in SECRET_FORMS), text
    return process.returncode, out.decode(), err.decode()


def keychain_entry(env: dict[str, str], key_id: str) -> str | None:
    """What the keychain of ``env`` holds for ``key_id``, read by a separate process."""
    code = (
        "import keyring, sys; v = keyring.get_password('remoteit-proxy', sys.argv[1]); "
        "print('' if v is None else v)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, key_id], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip() or None


def holds_no_secret(path: Path) -> bool:
    text = path.read_text()
    return not any(form in text for form in SECRET_FORMS) and "R3_SECRET_ACCESS_KEY" not in text


async def requests_during(url: str, job: Awaitable[T]) -> tuple[T, int, list[int]]:
    """Send GraphQL requests through the proxy at ``url`` one after another while ``job``
    runs: its result, how many were sent, and the statuses of those that failed."""
    failures: list[int] = []
    stop = asyncio.Event()

    async def load() -> int:
        sent = 0
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                async with session.post(url + "/graphql/v1", data=LOGIN) as got:
                    await got.read()
                    if got.status != 200:
                        failures.append(got.status)
                sent += 1
        return sent

    loader = asyncio.create_task(load())
    try:
        result = await job
    finally:
        stop.set()
    return result, await loader, failures


async def signed_by(proxy_url: str, upstream: AccountUpstream) -> str:
    async with aiohttp.ClientSession() as session, session.get(proxy_url + "/graphql/v1") as got:
        assert got.status == 200, await got.text()
    return key_of(upstream.last().header("Authorization"))


async def test_import_keeps_the_secret_in_the_keychain_and_serve_signs_with_it(
    upstream: AccountUpstream, account: FakeAccount, tmp_path: Path
) -> None:
    env = alt_env(tmp_path, upstream.url)
    code, out, err = await cli(
        env, "import", str(download(tmp_path, INI_DOWNLOAD)), "--store", "keychain"
    )
    assert code == 0, err
    assert "Secret access key: in the OS keychain (" in out and ALT_BACKEND in out
    assert "Developer API key: fetched from your account." in out
    credentials = tmp_path / ".remoteit" / "credentials"
    text = credentials.read_text()
    assert f"R3_ACCESS_KEY_ID={KEY_ID}" in text and "secret_store = keychain" in text
    assert f"R3_DEVELOPER_API_KEY={DEVELOPER_KEY}" in text and holds_no_secret(credentials)
    assert keychain_entry(env, KEY_ID) == SECRET_B64
    async with proxy_process("--listen", "127.0.0.1:0", env=env) as running:
        assert await signed_by(running.url, upstream) == KEY_ID
        assert upstream.last().header("Date")


async def test_import_over_a_file_profile_moves_the_secret_and_back(
    upstream: AccountUpstream, account: FakeAccount, tmp_path: Path
) -> None:
    credentials = write_credentials(
        (tmp_path / ".remoteit").mkdir() or tmp_path / ".remoteit" / "credentials",
        "# mine\n[work]\nR3_ACCESS_KEY_ID=OTHERKEYID000000WXYZ\nR3_SECRET_ACCESS_KEY=b3RoZXI=\n\n"
        f"[DEFAULT]\nR3_ACCESS_KEY_ID={KEY_ID}\nR3_SECRET_ACCESS_KEY={SECRET_B64}\n",
    )
    env = alt_env(tmp_path, upstream.url)
    source = str(download(tmp_path, INI_DOWNLOAD))
    # The same key, moved: no --force needed, and the secret leaves the file.
    code, out, err = await cli(env, "import", source, "--store", "keychain")
    assert code == 0, err
    assert "Replaced profile [DEFAULT]" in out
    assert (
        SECRET_B64 not in credentials.read_text()
        and "secret_store = keychain" in credentials.read_text()
    )
    assert (
        "[work]\nR3_ACCESS_KEY_ID=OTHERKEYID000000WXYZ\nR3_SECRET_ACCESS_KEY=b3RoZXI="
        in credentials.read_text()
    )
    assert credentials.read_text().startswith("# mine\n")
    assert keychain_entry(env, KEY_ID) == SECRET_B64
    # And back into the file. The keychain entry stays (a profile of another file may use
    # it): the user is told how to remove it.
    code, out, err = await cli(env, "import", source, "--store", "file")
    assert code == 0, err
    assert f"R3_SECRET_ACCESS_KEY={SECRET_B64}" in credentials.read_text()
    assert "secret_store" not in credentials.read_text()
    assert f"python -m keyring del remoteit-proxy {KEY_ID}" in out
    assert keychain_entry(env, KEY_ID) == SECRET_B64


async def test_configure_store_keychain_from_standard_input(
    upstream: AccountUpstream, account: FakeAccount, tmp_path: Path
) -> None:
    env = alt_env(tmp_path, upstream.url)
    code, out, err = await cli(
        env,
        "configure",
        "--store",
        "keychain",
        "--profile",
        "ci",
        stdin=f"{KEY_ID}\n{SECRET_B64}\n",
    )
    assert code == 0, err
    credentials = tmp_path / ".remoteit" / "credentials"
    assert holds_no_secret(credentials) and "[ci]" in credentials.read_text()
    assert keychain_entry(env, KEY_ID) == SECRET_B64
    code, out, err = await cli(env, "check", "--profile", "ci")
    assert code == 0 and "OK: the API accepted" in out, out + err
    assert "devkey    matches the account's" in out


def keychain_profile(tmp_path: Path) -> Path:
    return write_credentials(
        tmp_path / "credentials",
        f"[work]\nR3_ACCESS_KEY_ID={KEY_ID}\nsecret_store = keychain\n",
    )


@pytest.mark.parametrize("command", ["serve", "check", "sign"])
async def test_a_missing_keychain_entry_names_the_profile_the_backend_and_the_fix(
    tmp_path: Path, command: str
) -> None:
    path = keychain_profile(tmp_path)
    env = alt_env(tmp_path, "http://127.0.0.1:9")
    extra = ["/graphql/v1"] if command == "sign" else []
    code, out, err = await cli(
        env, command, *extra, "--credentials", str(path), "--profile", "work"
    )
    assert code == 2 and out == ""
    assert "profile [work]" in err and ALT_BACKEND in err
    assert f"user '{KEY_ID}'" in err and "--store keychain --force" in err and "--store file" in err


async def test_no_keychain_backend_names_the_profile_and_the_fix(tmp_path: Path) -> None:
    path = keychain_profile(tmp_path)
    env = alt_env(
        tmp_path, "http://127.0.0.1:9", PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring"
    )
    code, out, err = await cli(env, "check", "--credentials", str(path), "--profile", "work")
    assert code == 2
    assert "profile [work]" in err and "no keychain backend is available" in err
    assert "--store file" in err


async def test_an_unknown_secret_store_is_refused(tmp_path: Path) -> None:
    path = write_credentials(
        tmp_path / "credentials", f"[DEFAULT]\nR3_ACCESS_KEY_ID={KEY_ID}\nsecret_store = vault\n"
    )
    code, _, err = await cli(
        alt_env(tmp_path, "http://127.0.0.1:9"), "check", "--credentials", str(path)
    )
    assert code == 2 and "secret_store = 'vault' is not a store" in err


async def test_a_profile_with_the_secret_twice_is_refused(tmp_path: Path) -> None:
    path = write_credentials(
        tmp_path / "credentials",
        f"[DEFAULT]\nR3_ACCESS_KEY_ID={KEY_ID}\nR3_SECRET_ACCESS_KEY={SECRET_B64}\n"
        "secret_store = keychain\n",
    )
    code, _, err = await cli(
        alt_env(tmp_path, "http://127.0.0.1:9"), "check", "--credentials", str(path)
    )
    assert code == 2 and "both R3_SECRET_ACCESS_KEY and secret_store = keychain" in err


def test_keyring_is_imported_only_for_a_profile_that_uses_it(tmp_path: Path) -> None:
    plain = write_credentials(
        tmp_path / "plain",
        f"[DEFAULT]\nR3_ACCESS_KEY_ID={KEY_ID}\nR3_SECRET_ACCESS_KEY={SECRET_B64}\n",
    )
    kept = keychain_profile(tmp_path)
    env = alt_env(tmp_path, "http://127.0.0.1:9")
    code = (
        "import sys\n"
        "from proxy.keys.credentials import load_credentials\n"
        "from proxy.keys.keychain import set_secret\n"
        "assert 'keyring' not in sys.modules, 'imported by the package'\n"
        f"load_credentials(__import__('pathlib').Path({str(plain)!r}), 'DEFAULT', {{}})\n"
        "assert 'keyring' not in sys.modules, 'imported for a file profile'\n"
        f"set_secret('work', {KEY_ID!r}, {SECRET_B64!r})\n"
        f"c = load_credentials(__import__('pathlib').Path({str(kept)!r}), 'work', {{}})\n"
        "assert 'keyring' in sys.modules and c.store == 'keychain'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# --- a real Secret Service (gnome-keyring on a private D-Bus) ---------------------------------


async def test_a_locked_keychain_is_named_with_the_fix(
    secret_service: SecretService, tmp_path: Path
) -> None:
    path = keychain_profile(tmp_path)
    env = secret_service.child_env(HOME=str(tmp_path))
    code, _, err = await cli(
        env,
        "import",
        str(download(tmp_path, INI_DOWNLOAD)),
        "--store",
        "keychain",
        "--credentials",
        str(path),
        "--profile",
        "work",
        "--upstream",
        "http://127.0.0.1:9",
    )
    assert code == 0, err
    secret_service.lock()
    code, out, err = await cli(env, "check", "--credentials", str(path), "--profile", "work")
    assert code == 2
    assert "profile [work]" in err and "is locked" in err and "SecretService" in err
    assert "unlock it" in err and "--store file" in err


async def test_secret_service_end_to_end_import_serve_rotate_serve(
    secret_service: SecretService, upstream: AccountUpstream, account: FakeAccount, tmp_path: Path
) -> None:
    env = secret_service.child_env(HOME=str(tmp_path), REMOTEIT_PROXY_UPSTREAM=upstream.url)
    code, out, err = await cli(
        env, "import", str(download(tmp_path, INI_DOWNLOAD)), "--store", "keychain"
    )
    assert code == 0, err
    assert "SecretService" in out
    credentials = tmp_path / ".remoteit" / "credentials"
    assert holds_no_secret(credentials)
    assert secret_service.passwords() == {KEY_ID: SECRET_B64}
    async with proxy_process("--listen", "127.0.0.1:0", env=env) as running:
        assert await signed_by(running.url, upstream) == KEY_ID
        (code, out, err), sent, failures = await requests_during(
            running.url, cli(env, "rotate", "--grace", "2")
        )
        assert code == 0, out + err
        new_key = next(k for k in account.keys if k != KEY_ID)
        assert await signed_by(running.url, upstream) == new_key
    assert failures == [] and sent > 10
    assert not account.keys[KEY_ID].enabled
    assert f"R3_ACCESS_KEY_ID={new_key}" in credentials.read_text() and holds_no_secret(credentials)
    stored = secret_service.passwords()
    assert list(stored) == [new_key]  # the old entry is gone, the new secret is the API's
    assert base64.b64decode(stored[new_key]) == account.keys[new_key].secret


@pytest.mark.skipif(sys.platform != "linux", reason="the OS keychain elsewhere is always there")
async def test_a_file_backend_keyring_picked_by_itself_is_refused(tmp_path: Path) -> None:
    # No desktop session (no D-Bus), keyrings.alt installed: keyring falls back to a plain
    # file of its own. That is no keychain: refused unless chosen on purpose.
    env = alt_env(tmp_path, "http://127.0.0.1:9")
    del env["PYTHON_KEYRING_BACKEND"]
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    code, out, err = await cli(
        env, "import", str(download(tmp_path, INI_DOWNLOAD)), "--store", "keychain"
    )
    assert code == 2 and out == ""
    assert "keyring would keep the secret in a file (keyrings.alt." in err
    assert "PYTHON_KEYRING_BACKEND=keyrings.alt." in err and "--store file" in err
    assert not (tmp_path / ".remoteit" / "credentials").exists()
    assert not (tmp_path / "data" / "python_keyring").exists()
