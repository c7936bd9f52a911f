"""SIGHUP reloads the config file: whole and valid, swapped at once, or the old one kept."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from aiohttp import web
from conftest import KEY_ID, SECRET, SECRET_B64, write_credentials
from fake_upstream import FakeUpstream, Received
from prometheus_client.parser import text_string_to_metric_families
from test_cli import base_env, proxy_process
from test_credential_process import Command as KeyCommand
from test_credential_process import key_json
from test_faults import Command, command
from test_rotation import credentials_text, key_of, wait_for

QUERY = b'{"query":"{ login { email } }"}'
OLD, NEW = "token-of-a-old-0001", "token-of-a-new-0002"
KEY_B, KEY_C = "TESTKEYID0000000BBBB", "TESTKEYID0000000CCCC"
SECRET_B = b"another secret, 32 bytes long..."
# A second profile, [other], with its own key.
OTHER = credentials_text(KEY_C, SECRET_B).replace("[DEFAULT]", "[other]")


def write_config(tmp_path: Path, text: str, token: str = OLD) -> Path:
    (tmp_path / "a.token").write_text(token + "\n")
    config = tmp_path / "proxy.ini"
    config.write_text(text.replace("@a", str(tmp_path / "a.token")))
    return config


@asynccontextmanager
async def configured(
    upstream: FakeUpstream, credentials_file: Path, config: Path, home: Path
) -> AsyncIterator[Command]:
    """A proxy process reading ``config``, on a free loopback port."""
    args = ("--listen", "127.0.0.1:0", "--upstream", upstream.url, "--config", str(config))
    async with command(*args, "--credentials", str(credentials_file), home=home) as proxy:
        yield proxy


async def status(session: aiohttp.ClientSession, proxy: Command, token: str, path: str) -> int:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with session.post(proxy.url + path, data=QUERY, headers=headers) as response:
        await response.read()
        return response.status


async def hup_and_wait(proxy: Command, expected: str, timeout: float = 10) -> str:
    """Send SIGHUP; the log line with ``expected`` that follows it."""
    seen = len(proxy.lines)
    proxy.process.send_signal(signal.SIGHUP)
    return await logged(proxy, expected, seen, timeout)


async def logged(proxy: Command, expected: str, seen: int, timeout: float = 10) -> str:
    """The first line logged after line ``seen`` with ``expected`` in it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in proxy.lines[seen:]:
            if expected in line:
                return line
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {expected!r} after SIGHUP in {proxy.lines[seen:]}")


async def reloads(session: aiohttp.ClientSession, proxy: Command) -> dict[str, float]:
    async with session.get(proxy.url + "/-/metrics") as response:
        text = await response.text()
    return {
        sample.labels["result"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "remoteit_proxy_config_reloads_total"
    }


async def test_sighup_swaps_a_clients_token_while_a_request_in_flight_finishes(
    upstream: FakeUpstream, credentials_file: Path, tmp_path: Path
) -> None:
    arrived = asyncio.Event()

    async def respond(request: web.Request, received: Received) -> web.StreamResponse:
        if request.path == "/slow":
            arrived.set()
            await asyncio.sleep(1)
        return web.json_response({"data": {}})

    upstream.respond = respond
    config = write_config(tmp_path, "[client.a]\ntoken_file = @a\n")
    async with (
        configured(upstream, credentials_file, config, tmp_path) as proxy,
        aiohttp.ClientSession() as session,
    ):
        assert await status(session, proxy, OLD, "/graphql/v1") == 200
        in_flight = asyncio.create_task(status(session, proxy, OLD, "/slow"))
        await asyncio.wait_for(arrived.wait(), 5)
        (tmp_path / "a.token").write_text(NEW + "\n")
        line = await hup_and_wait(proxy, "config reloaded")
        assert str(config) in line
        assert await status(session, proxy, OLD, "/graphql/v1") == 401
        assert await status(session, proxy, NEW, "/graphql/v1") == 200
        assert await asyncio.wait_for(in_flight, 5) == 200  # admitted under the old config
        assert (await reloads(session, proxy))["success"] == 1
        proxy.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proxy.process.wait(), 10) == 0


async def test_a_broken_file_keeps_the_old_config_and_says_what_is_wrong(
    upstream: FakeUpstream, credentials_file: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path, "[client.a]\ntoken_file = @a\n")
    async with (
        configured(upstream, credentials_file, config, tmp_path) as proxy,
        aiohttp.ClientSession() as session,
    ):
        line = await hup_and_wait(proxy, "config unchanged")  # nothing changed: said so
        write_config(tmp_path, "[client.a]\ntoken_file = @a\nread_only = perhaps\n")
        line = await hup_and_wait(proxy, "config not reloaded")
        assert f"config file {config} [client.a] read_only: 'perhaps'" in line
        assert "ERROR" in line
        assert await status(session, proxy, OLD, "/graphql/v1") == 200  # the old one stays
        assert await reloads(session, proxy) == {"success": 0, "unchanged": 1, "error": 1}
        proxy.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proxy.process.wait(), 10) == 0


async def test_what_needs_a_restart_is_named_and_the_rest_applies(
    upstream: FakeUpstream, credentials_file: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path, "[proxy]\nlog_level = info\n[client.a]\ntoken_file = @a\n")
    async with (
        configured(upstream, credentials_file, config, tmp_path) as proxy,
        aiohttp.ClientSession() as session,
    ):
        assert await status(session, proxy, OLD, "/graphql/v1") == 200
        config.write_text(
            f"[proxy]\nlog_level = warning\nread_timeout = 5\n"
            f"[client.a]\ntoken_file = {tmp_path / 'a.token'}\nread_only = true\n"
        )
        before = len(proxy.lines)
        warning = await hup_and_wait(proxy, "takes effect at the next start")
        assert "read-timeout changed" in warning
        await logged(proxy, "config reloaded", before)
        seen = len(proxy.lines)
        mutation = b'{"query":"mutation { deleteDevice(id: \\"x\\") { id } }"}'
        headers = {"Authorization": f"Bearer {OLD}", "Content-Type": "application/json"}
        async with session.post(
            proxy.url + "/graphql/v1", data=mutation, headers=headers
        ) as response:
            assert response.status == 403  # read_only now
        await asyncio.sleep(0.2)
        assert not any("proxy.access" in line for line in proxy.lines[seen:])  # warning now
        proxy.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proxy.process.wait(), 10) == 0


async def test_a_reload_that_drops_the_token_of_a_reachable_listener_is_refused(
    upstream: FakeUpstream, credentials_file: Path, tmp_path: Path
) -> None:
    # The file moves the listener to loopback and drops the token: the listener stays where
    # it is until a restart, so dropping the token would open it to the network.
    config = tmp_path / "proxy.ini"
    config.write_text("[proxy]\nlisten = 0.0.0.0:0\ntoken = a-token-0001\n")
    args = ("--upstream", upstream.url, "--config", str(config))
    async with command(*args, "--credentials", str(credentials_file), home=tmp_path) as proxy:
        config.write_text("[proxy]\nlisten = 127.0.0.1:0\n")
        line = await hup_and_wait(proxy, "config not reloaded")
        assert "listens on 0.0.0.0:0 and the config file sets no token" in line
        async with aiohttp.ClientSession() as session:
            url = proxy.url.replace("0.0.0.0", "127.0.0.1") + "/graphql/v1"
            async with session.post(url, data=QUERY) as response:
                assert response.status == 401  # the token is still asked for
        proxy.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proxy.process.wait(), 10) == 0


async def test_a_reload_that_cannot_build_a_named_upstream_changes_nothing(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    # Everything that can fail is built before anything is swapped: here the last thing, the
    # named upstream's pool (its CA bundle is not PEM), after a new profile was loaded.
    credentials = tmp_path / "credentials"
    write_credentials(credentials, credentials_text(KEY_ID, SECRET) + OTHER)
    (tmp_path / "bad.pem").write_text("not a certificate\n")
    config = write_config(tmp_path, "[client.a]\ntoken_file = @a\n")
    async with (
        configured(upstream, credentials, config, tmp_path) as proxy,
        aiohttp.ClientSession() as session,
    ):
        config.write_text(
            f"[client.a]\ntoken_file = {tmp_path / 'a.token'}\nprofile = other\n"
            f"[upstream.ev]\nurl = https://127.0.0.1:9\nmount = /ev\n"
            f"ca_bundle = {tmp_path / 'bad.pem'}\n"
        )
        seen = len(proxy.lines)
        line = await hup_and_wait(proxy, "config not reloaded")
        assert f"config file {config} [upstream.ev]" in line and "bad.pem" in line, line
        assert "ERROR" in line and "Traceback" not in "".join(proxy.lines[seen:])
        # The keys are read again all the same, as on every SIGHUP.
        await logged(proxy, "credentials unchanged (SIGHUP): profile DEFAULT", seen)
        assert await reloads(session, proxy) == {"success": 0, "unchanged": 0, "error": 1}
        assert await status(session, proxy, OLD, "/graphql/v1") == 200
        assert key_of(upstream.last().header("Authorization")) == KEY_ID  # not [other]'s
        # The profile in use is still watched: a rotation is picked up without a signal.
        upstream.keys[KEY_B] = SECRET_B
        write_credentials(credentials, credentials_text(KEY_B, SECRET_B) + OTHER)
        await logged(proxy, "credentials reloaded (the file changed)", seen)
        assert await status(session, proxy, OLD, "/graphql/v1") == 200
        assert key_of(upstream.last().header("Authorization")) == KEY_B
        proxy.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proxy.process.wait(), 10) == 0


async def test_a_reload_refuses_client_sections_while_the_key_is_in_the_environment(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    # The start refuses [client.NAME] sections while R3_* set the one key: so does a reload.
    config = tmp_path / "proxy.ini"
    config.write_text("[proxy]\nlog_level = info\n")
    env = base_env(tmp_path) | {"R3_ACCESS_KEY_ID": KEY_ID, "R3_SECRET_ACCESS_KEY": SECRET_B64}
    args = ("serve", "--listen", "127.0.0.1:0", "--upstream", upstream.url)
    async with (
        proxy_process(*args, "--config", str(config), env=env) as running,
        aiohttp.ClientSession() as session,
    ):
        proxy = Command(running.process, running.url, "", 0, running.lines)
        write_config(tmp_path, "[proxy]\nlog_level = info\n[client.a]\ntoken_file = @a\n")
        line = await hup_and_wait(proxy, "config not reloaded")
        assert (
            "R3_ACCESS_KEY_ID and R3_SECRET_ACCESS_KEY set in the environment would replace the "
            "key of every [client.NAME] profile; unset them" in line
        ), line
        async with session.post(proxy.url + "/graphql/v1", data=QUERY) as response:
            assert response.status == 200  # no token asked for: the old config stays
        assert (await reloads(session, proxy))["error"] == 1


async def test_clock_skew_options_changed_by_a_reload_are_named_for_the_next_start(
    upstream: FakeUpstream, credentials_file: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path, "[client.a]\ntoken_file = @a\n")
    async with configured(upstream, credentials_file, config, tmp_path) as proxy:
        config.write_text(
            "[proxy]\nclock_skew_threshold = 60\nno_clock_correction = true\n"
            f"[client.a]\ntoken_file = {tmp_path / 'a.token'}\n"
        )
        line = await hup_and_wait(proxy, "takes effect at the next start")
        assert "clock-skew-threshold, no-clock-correction changed" in line, line
        proxy.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proxy.process.wait(), 10) == 0


async def test_a_new_profile_comes_from_the_credentials_file_in_use(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    # The file names another credentials file: that waits for the next start, so a client
    # added by the same reload needs its profile in the file in use (the one watched).
    in_use, named = tmp_path / "credentials", tmp_path / "elsewhere"
    write_credentials(in_use, credentials_text(KEY_ID, SECRET))
    write_credentials(named, credentials_text(KEY_ID, SECRET) + OTHER)
    upstream.keys[KEY_C] = SECRET_B
    config = write_config(
        tmp_path, f"[proxy]\ncredentials = {in_use}\n[client.a]\ntoken_file = @a\n"
    )
    args = ("--listen", "127.0.0.1:0", "--upstream", upstream.url, "--config", str(config))
    async with command(*args, home=tmp_path) as proxy, aiohttp.ClientSession() as session:
        (tmp_path / "b.token").write_text(NEW + "\n")
        config.write_text(
            f"[proxy]\ncredentials = {named}\n[client.a]\ntoken_file = {tmp_path / 'a.token'}\n"
            f"[client.b]\ntoken_file = {tmp_path / 'b.token'}\nprofile = other\n"
        )
        line = await hup_and_wait(proxy, "config not reloaded")
        assert f"profile [other] is not in {in_use}" in line, line
        assert "the credentials file the config now names is read from the next start" in line
        assert await status(session, proxy, NEW, "/graphql/v1") == 401  # client b: not added
        assert await status(session, proxy, OLD, "/graphql/v1") == 200
        proxy.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proxy.process.wait(), 10) == 0


async def test_a_new_profiles_command_runs_while_requests_are_answered(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    # The reload adds a client whose profile's key comes from a slow credential_process: the
    # proxy answers meanwhile, and the new client is in once the command has printed its key.
    issuer = KeyCommand(tmp_path / "key-issuer")
    credentials = tmp_path / "credentials"
    slow = f"[slow]\ncredential_process = {issuer.line}\n"
    write_credentials(credentials, credentials_text(KEY_ID, SECRET) + slow)
    upstream.keys[KEY_B] = SECRET_B
    config = write_config(tmp_path, "[client.a]\ntoken_file = @a\n")
    async with (
        configured(upstream, credentials, config, tmp_path) as proxy,
        aiohttp.ClientSession() as session,
    ):
        issuer.prints(key_json(KEY_B, SECRET_B), sleep=2)
        (tmp_path / "b.token").write_text(NEW + "\n")
        config.write_text(
            f"[client.a]\ntoken_file = {tmp_path / 'a.token'}\n"
            f"[client.b]\ntoken_file = {tmp_path / 'b.token'}\nprofile = slow\n"
        )
        seen = len(proxy.lines)
        proxy.process.send_signal(signal.SIGHUP)
        await wait_for(lambda: issuer.runs == 1)
        began = time.monotonic()
        assert await status(session, proxy, OLD, "/graphql/v1") == 200
        assert time.monotonic() - began < 1, "the reload held up the request"
        await logged(proxy, "config reloaded", seen)
        assert await status(session, proxy, NEW, "/graphql/v1") == 200
        assert key_of(upstream.last().header("Authorization")) == KEY_B
        proxy.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proxy.process.wait(), 10) == 0
