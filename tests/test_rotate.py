"""``rotate``: a new key through the API, stored where the old one was, the old one disabled."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from conftest import KEY_ID, SECRET, SECRET_B64, write_credentials
from fake_account import AccountUpstream, FakeAccount
from test_cli import base_env, proxy_process
from test_keychain import cli, requests_during, signed_by
from test_rotation import credentials_text

from proxy.commands.api import Account
from proxy.config.resolve import resolve
from proxy.errors import AccountError
from proxy.keys.rotation import Rotation


@pytest.fixture
def upstream(account_upstream: AccountUpstream) -> AccountUpstream:
    return account_upstream  # this module's upstream also answers for the account


@pytest.fixture
def credentials(tmp_path: Path) -> Path:
    text = credentials_text(KEY_ID, SECRET) + "R3_DEVELOPER_API_KEY=DEVKEY-0123456789\n"
    return write_credentials(tmp_path / "credentials", text)


def env_for(tmp_path: Path, upstream: AccountUpstream, credentials: Path) -> dict[str, str]:
    return base_env(tmp_path) | {
        "REMOTEIT_PROXY_UPSTREAM": upstream.url,
        "REMOTEIT_PROXY_CREDENTIALS": str(credentials),
    }


def rotation(upstream: AccountUpstream, credentials: Path, said: list[str]) -> Rotation:
    """The rotation rotate runs, in this process, to time a failure between two steps."""
    settings = resolve({"upstream": upstream.url, "credentials": str(credentials)}, {}, False)
    return Rotation(Account(settings, {}), credentials, "DEFAULT", {}, said.append, verify_for=0.6)


async def test_rotation_while_a_proxy_serves_fails_no_request(
    upstream: AccountUpstream, account: FakeAccount, credentials: Path, tmp_path: Path
) -> None:
    env = env_for(tmp_path, upstream, credentials)
    async with proxy_process("--listen", "127.0.0.1:0", env=env) as running:
        (code, out, err), sent, failures = await requests_during(
            running.url, cli(env, "rotate", "--grace", "2", "--delete-old")
        )
        assert code == 0, out + err
        new_key = next(key for key in account.keys if key != KEY_ID)
        assert await signed_by(running.url, upstream) == new_key
        assert any("credentials reloaded" in line for line in running.lines)
    assert failures == [] and sent > 20
    assert list(account.keys) == [new_key]  # the old one disabled, then deleted
    assert account.calls.index("updateAccessKey") < account.calls.index("deleteAccessKey")
    text = credentials.read_text()
    assert f"R3_ACCESS_KEY_ID={new_key}" in text and SECRET_B64 not in text
    assert "R3_DEVELOPER_API_KEY=DEVKEY-0123456789" in text  # the account's, kept
    lines = out.splitlines()
    assert lines[0].startswith("Rotating profile [DEFAULT] of you@example.com: key ****")
    assert f"Done: profile [DEFAULT] now signs with {'*' * 16}{new_key[-4:]}." in lines[-1]
    assert new_key not in out  # masked, as everywhere


async def test_without_delete_old_the_old_key_is_disabled_not_deleted(
    upstream: AccountUpstream, account: FakeAccount, credentials: Path, tmp_path: Path
) -> None:
    code, out, err = await cli(env_for(tmp_path, upstream, credentials), "rotate", "--grace", "0")
    assert code == 0, err
    assert not account.keys[KEY_ID].enabled and len(account.keys) == 2
    assert "deleteAccessKey" not in account.calls


async def test_two_keys_already_refused_before_anything_is_created(
    upstream: AccountUpstream, account: FakeAccount, credentials: Path, tmp_path: Path
) -> None:
    other = account.add_key("OTHERKEY000000001234", enabled=False)
    before = credentials.read_bytes()
    code, out, err = await cli(env_for(tmp_path, upstream, credentials), "rotate")
    assert code == 1
    assert "already has 2 access keys" in err and "no new key was created" in err
    assert "****************1234, disabled, last used never" in err
    assert "createAccessKey" not in account.calls and set(account.keys) == {KEY_ID, other.key}
    assert credentials.read_bytes() == before


async def test_a_new_key_the_api_never_accepts_is_deleted_again(
    upstream: AccountUpstream, account: FakeAccount, credentials: Path
) -> None:
    account.propagation = 30.0  # longer than rotation waits for it
    before = credentials.read_bytes()
    said: list[str] = []
    with pytest.raises(AccountError) as info:
        await rotation(upstream, credentials, said).run(grace=0)
    message = info.value.message
    assert "did not accept the new key" in message and "was deleted again" in message
    assert list(account.keys) == [KEY_ID] and account.keys[KEY_ID].enabled
    assert credentials.read_bytes() == before


async def test_a_new_key_that_cannot_be_stored_is_deleted_again(
    upstream: AccountUpstream, account: FakeAccount, credentials: Path
) -> None:
    said: list[str] = []

    def edit_meanwhile(line: str) -> None:
        said.append(line)
        if line.startswith("Created key"):  # another program writes the file meanwhile
            with credentials.open("a") as file:
                file.write("# edited by hand\n")

    job = rotation(upstream, credentials, said)
    job.say = edit_meanwhile
    with pytest.raises(AccountError) as info:
        await job.run(grace=0)
    message = info.value.message
    assert message.startswith("the new key could not be stored:") and "deleted again" in message
    assert list(account.keys) == [KEY_ID] and account.keys[KEY_ID].enabled
    assert f"R3_ACCESS_KEY_ID={KEY_ID}" in credentials.read_text()
    assert credentials.read_text().endswith("# edited by hand\n")


async def test_disabling_the_old_key_failing_exits_1_with_the_new_key_in_use(
    upstream: AccountUpstream, account: FakeAccount, credentials: Path, tmp_path: Path
) -> None:
    account.fail_next["updateAccessKey"] = "internal error"
    env = env_for(tmp_path, upstream, credentials)
    code, out, err = await cli(env, "rotate", "--grace", "0")
    assert code == 1
    assert "is stored and works, but disabling the old key" in err and "internal error" in err
    new_key = next(key for key in account.keys if key != KEY_ID)
    assert f"R3_ACCESS_KEY_ID={new_key}" in credentials.read_text()
    assert all(key.enabled for key in account.keys.values())


async def test_the_environment_s_key_is_not_rotated(
    upstream: AccountUpstream, account: FakeAccount, credentials: Path, tmp_path: Path
) -> None:
    env = env_for(tmp_path, upstream, credentials)
    env |= {"R3_ACCESS_KEY_ID": KEY_ID, "R3_SECRET_ACCESS_KEY": SECRET_B64}
    code, _, err = await cli(env, "rotate")
    assert code == 2 and "set in the environment" in err
    assert account.calls == []


async def test_a_refused_old_key_stops_before_creating_anything(
    upstream: AccountUpstream, account: FakeAccount, credentials: Path, tmp_path: Path
) -> None:
    account.keys[KEY_ID].enabled = False
    account.upstream.keys.clear()  # as the fake keeps them: only enabled keys verify
    code, _, err = await cli(env_for(tmp_path, upstream, credentials), "rotate")
    assert code == 1 and "refused the signature (401)" in err
    assert "createAccessKey" not in account.calls


async def test_an_interruption_while_verifying_deletes_the_new_key(
    upstream: AccountUpstream, account: FakeAccount, credentials: Path
) -> None:
    account.propagation = 30.0  # the new key is being waited for when the user presses Ctrl+C
    said: list[str] = []
    job = asyncio.create_task(rotation(upstream, credentials, said).run(grace=0))
    while not any(line.startswith("Created key") for line in said):
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert said[-1].startswith("Interrupted; the new key ****") and "deleted again" in said[-1]
    assert list(account.keys) == [KEY_ID] and account.keys[KEY_ID].enabled
    assert f"R3_ACCESS_KEY_ID={KEY_ID}" in credentials.read_text()


async def test_other_profiles_holding_the_same_key_are_named_and_nothing_is_created(
    upstream: AccountUpstream, account: FakeAccount, credentials: Path, tmp_path: Path
) -> None:
    copy = credentials_text(KEY_ID, SECRET).replace("[DEFAULT]", "[copy]")
    credentials.write_text(credentials.read_text() + "\n" + copy)
    code, _, err = await cli(env_for(tmp_path, upstream, credentials), "rotate")
    assert code == 2 and "profiles [copy] of" in err and "would be left with a disabled key" in err
    assert account.calls == []
