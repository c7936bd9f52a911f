"""Named upstreams: [upstream.NAME] sections, reached through their mounts, each signed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from conftest import KEY_ID, SECRET, ProxyClient, ProxyFactory
from fake_upstream import FakeUpstream, Received
from test_websocket import echo_socket

from proxy.config.resolve import resolve
from proxy.errors import ConfigError

ServerFactory = Callable[..., Awaitable[TestServer]]


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "proxy.ini"
    path.write_text(text)
    return path


async def proxy_with(make_proxy: ProxyFactory, tmp_path: Path, text: str) -> ProxyClient:
    """The proxy started with a config file holding ``text``."""
    return await make_proxy(config=str(config(tmp_path, text)))


def settings_error(path: Path) -> str:
    with pytest.raises(ConfigError) as exc:
        resolve({"config": str(path)}, {})
    return str(exc.value)


@pytest.fixture
async def events(aiohttp_server: ServerFactory) -> FakeUpstream:
    """A second upstream, verifying on its own too."""
    fake = FakeUpstream(keys={KEY_ID: SECRET})
    server = await aiohttp_server(fake.app())
    fake.url = f"http://127.0.0.1:{server.port}"
    return fake


def test_a_section_gives_a_name_an_origin_and_mounts(tmp_path: Path) -> None:
    path = config(
        tmp_path,
        "[upstream.events]\nurl = wss://ws.remote.it/v1\nmount = /events/\nscheme = rfc9421\n"
        "[upstream.legacy]\nurl = https://api.remot3.it\n",
    )
    events, legacy = resolve({"config": str(path)}, {}).upstreams
    assert str(events.upstream) == "https://ws.remote.it/v1"  # wss is https's origin
    assert events.mounts == ("/-/to/events", "/events") and events.scheme == "rfc9421"
    assert legacy.mounts == ("/-/to/legacy",) and legacy.scheme is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[upstream.a]\nmount = /a\n", "[upstream.a] has no url"),
        ("[upstream.a]\nurl = ftp://x\n", "[upstream.a] url: 'ftp://x' is not an http"),
        ("[upstream.a]\nurl = https://x\nmount = a\n", "mount: 'a' is not a path"),
        ("[upstream.a]\nurl = https://x\nmount = /-/a\n", "nothing under /-/"),
        ("[upstream.a]\nurl = https://x\nmount = /a/../b\n", "no '.' or '..'"),
        ("[upstream.a]\nurl = https://x\nscheme = aws\n", "[upstream.a] scheme"),
        ("[upstream.a]\nurl = https://x\nhost = y\n", "unknown setting host in [upstream.a]"),
        ("[upstream.a b]\nurl = https://x\n", "[upstream.a b] is not a valid name"),
        (
            "[upstream.a]\nurl = https://x\nmount = /e\n[upstream.b]\nurl = https://y\n"
            "mount = /e/v1\n",
            "the mount /e/v1 of [upstream.b] overlaps /e of [upstream.a]",
        ),
    ],
    ids=["no-url", "scheme", "relative", "own", "dots", "sig", "unknown", "name", "overlap"],
)
def test_a_bad_section_names_the_file_section_and_key(tmp_path: Path, text: str, says: str) -> None:
    path = config(tmp_path, text)
    message = settings_error(path)
    assert str(path) in message and says in message, message


async def test_each_upstream_is_reached_through_its_mount_and_signed_for_its_host(
    make_proxy: ProxyFactory, upstream: FakeUpstream, events: FakeUpstream, tmp_path: Path
) -> None:
    client = await proxy_with(
        make_proxy, tmp_path, f"[upstream.events]\nurl = {events.url}/api\nmount = /events\n"
    )
    for target, expected in [
        ("/-/to/events/v1/x?a=1", "/api/v1/x?a=1"),
        ("/events?a=2", "/api/?a=2"),
        ("/events", "/api/"),
    ]:
        async with client.get(target) as response:
            assert response.status == 200, await response.text()
        received = events.last()  # verified against its own Host
        assert received.raw_path == expected
        assert received.header("Host") == events.url.removeprefix("http://")
    async with client.get("/eventsX/y") as response:  # not under the mount: the default
        assert response.status == 200
    assert upstream.last().raw_path == "/eventsX/y" and len(events.received) == 3


async def test_a_named_upstream_can_sign_with_its_own_scheme(
    make_proxy: ProxyFactory, upstream: FakeUpstream, events: FakeUpstream, tmp_path: Path
) -> None:
    client = await proxy_with(
        make_proxy, tmp_path, f"[upstream.events]\nurl = {events.url}\nscheme = rfc9421\n"
    )
    async with client.get("/-/to/events/v1") as response:
        assert response.status == 200
    async with client.get("/v1") as response:
        assert response.status == 200
    assert events.last().header("Signature-Input") is not None
    assert upstream.last().header("Signature-Input") is None  # cavage, as configured


async def test_a_websocket_reaches_a_named_upstream(
    make_proxy: ProxyFactory, events: FakeUpstream, tmp_path: Path
) -> None:
    events.respond = echo_socket
    client = await proxy_with(
        make_proxy, tmp_path, f"[upstream.events]\nurl = {events.url.replace('http', 'ws')}\n"
    )
    async with client.session.ws_connect(f"ws://{client.host}:{client.port}/-/to/events/v1") as ws:
        await ws.send_str("hi")
        assert (await ws.receive()).data == "hi"
    assert events.last().raw_path == "/v1"


async def test_unknown_names_and_climbing_out_of_a_mount_are_refused(
    make_proxy: ProxyFactory, upstream: FakeUpstream, events: FakeUpstream, tmp_path: Path
) -> None:
    client = await proxy_with(make_proxy, tmp_path, f"[upstream.events]\nurl = {events.url}\n")
    async with client.get("/-/to/other/v1") as response:
        assert response.status == 404 and "upstream.NAME" in await response.text()
    async with client.get("/-/to/events/../../graphql/v1") as response:
        assert response.status == 400
    assert not upstream.received and not events.received


async def test_a_named_upstream_has_its_own_connections(
    make_proxy: ProxyFactory, upstream: FakeUpstream, events: FakeUpstream, tmp_path: Path
) -> None:
    seen: set[int] = set()

    async def where(request: web.Request, received: Received) -> web.StreamResponse:
        seen.add(received.peer_port)
        return web.Response(text="ok")

    events.respond = upstream.respond = where
    client = await proxy_with(make_proxy, tmp_path, f"[upstream.events]\nurl = {events.url}\n")
    for target in ["/-/to/events/a", "/b", "/-/to/events/c", "/d"]:
        async with client.get(target) as response:
            assert response.status == 200
    assert len(seen) == 2  # one kept connection to each upstream, reused
    assert [r.raw_path for r in events.received] == ["/a", "/c"]
    assert [r.raw_path for r in upstream.received] == ["/b", "/d"]
