"""The developer key: fetched from the account by import and configure, compared by check."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import KEY_ID, SECRET_B64, write_credentials
from fake_account import AccountUpstream, FakeAccount
from test_cli import base_env
from test_keychain import cli
from test_onboard import CSV_DOWNLOAD, INI_DOWNLOAD, download
from test_proxy import closed_port

ACCOUNT_KEY = "DEVKEY-0123456789"  # the fake account's


@pytest.fixture
def upstream(account_upstream: AccountUpstream) -> AccountUpstream:
    return account_upstream  # this module's upstream also answers for the account


def env_for(home: Path, url: str) -> dict[str, str]:
    return base_env(home) | {"REMOTEIT_PROXY_UPSTREAM": url}


async def test_import_without_a_developer_key_fetches_the_account_s(
    upstream: AccountUpstream, account: FakeAccount, tmp_path: Path
) -> None:
    code, out, err = await cli(
        env_for(tmp_path, upstream.url), "import", str(download(tmp_path, CSV_DOWNLOAD, "k.csv"))
    )
    assert code == 0, err
    assert "Developer API key: fetched from your account." in out.splitlines()
    text = (tmp_path / ".remoteit" / "credentials").read_text()
    assert f"R3_DEVELOPER_API_KEY={ACCOUNT_KEY}" in text
    assert ACCOUNT_KEY not in out + err
    fetch = upstream.received[-1]
    assert fetch.verified and KEY_ID in (fetch.header("Authorization") or "")  # the new key


async def test_configure_from_standard_input_fetches_it_too(
    upstream: AccountUpstream, account: FakeAccount, tmp_path: Path
) -> None:
    env = env_for(tmp_path, upstream.url)
    code, out, err = await cli(env, "configure", stdin=f"{KEY_ID}\n{SECRET_B64}\n")
    assert code == 0, err
    assert "Developer API key: fetched from your account." in out
    assert (
        f"R3_DEVELOPER_API_KEY={ACCOUNT_KEY}"
        in (tmp_path / ".remoteit" / "credentials").read_text()
    )


async def test_a_developer_key_given_is_stored_and_nothing_is_asked(
    upstream: AccountUpstream, account: FakeAccount, tmp_path: Path
) -> None:
    env = env_for(tmp_path, upstream.url)
    code, out, err = await cli(env, "configure", stdin=f"{KEY_ID}\n{SECRET_B64}\nMYDEVKEY-1\n")
    assert code == 0, err
    assert "Developer API key: stored." in out and upstream.received == []


async def test_offline_import_says_it_could_not_fetch_and_goes_on(tmp_path: Path) -> None:
    env = env_for(tmp_path, f"http://127.0.0.1:{closed_port()}")
    code, out, err = await cli(env, "import", str(download(tmp_path, INI_DOWNLOAD)))
    assert code == 0, err
    lines = out.splitlines()
    note = next(line for line in lines if line.startswith("Note:"))
    assert note.startswith("Note: the developer API key could not be fetched from your account (")
    assert "Developer API key: none (optional; the REST API needs one)." in lines
    assert f"R3_ACCESS_KEY_ID={KEY_ID}" in (tmp_path / ".remoteit" / "credentials").read_text()


async def test_check_says_whether_the_stored_developer_key_is_the_account_s(
    upstream: AccountUpstream, account: FakeAccount, tmp_path: Path
) -> None:
    env = env_for(tmp_path, upstream.url)
    base = f"[DEFAULT]\nR3_ACCESS_KEY_ID={KEY_ID}\nR3_SECRET_ACCESS_KEY={SECRET_B64}\n"
    path = tmp_path / "credentials"
    for stored, expected in [
        (ACCOUNT_KEY, "devkey    matches the account's"),
        ("DEVKEY-OLD", "devkey    DIFFERS from the account's"),
        (None, "devkey    none stored; the REST API needs the account's"),
    ]:
        extra = f"R3_DEVELOPER_API_KEY={stored}\n" if stored else ""
        write_credentials(path, base + extra)
        code, out, err = await cli(env, "check", "--credentials", str(path))
        assert code == 0, out + err
        assert expected in out, out
        assert ACCOUNT_KEY not in out and "DEVKEY-OLD" not in out
