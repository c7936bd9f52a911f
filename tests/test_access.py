"""Who may use the proxy and what it refuses: no open proxy, tokens, exposure, unix sockets,
and malformed requests answered as JSON without being forwarded."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
import socket
import stat
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web_protocol
from aiohttp.http_parser import HttpRequestParserPy
from conftest import KEY_ID, ProxyClient, ProxyFactory
from fake_upstream import FakeUpstream, Received
from test_cli import base_env, run_failing, running_proxy
from yarl import URL

from proxy.config.resolve import resolve
from proxy.errors import ListenError
from proxy.keys.credentials import load_credentials
from proxy.serve.server import ProxyService

TOKEN = "s3cret-token-value"
MARKER = b"MARKER-sensitive-value-"
POSIX = pytest.mark.skipif(
    sys.platform == "win32" or not hasattr(socket, "AF_UNIX"), reason="unix sockets are POSIX"
)


# --- helpers ---------------------------------------------------------------------------------


@dataclass
class RawResponse:
    """An HTTP/1.1 response read off a raw socket."""

    status: int
    headers: dict[str, str]
    body: bytes

    def error_code(self) -> str:
        """The proxy's own JSON error code, after checking the answer's shape."""
        assert self.headers.get("content-type", "").startswith("application/json"), self.headers
        document = json.loads(self.body)
        assert set(document) == {"error"}, document
        assert set(document["error"]) == {"code", "message"}, document
        return str(document["error"]["code"])


async def raw_request(host: str, port: int, data: bytes) -> RawResponse:
    """Write ``data`` on a fresh TCP connection and read one response (until close)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(data)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers: dict[str, str] = {}
        for line in lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = await asyncio.wait_for(reader.readexactly(length), 5)
        return RawResponse(int(status_line.split(" ")[1]), headers, body)
    finally:
        writer.close()


def request_bytes(request_line: bytes, *headers: bytes) -> bytes:
    return (
        b"\r\n".join([request_line, b"Host: localhost", *headers, b"Connection: close"])
        + b"\r\n\r\n"
    )


async def json_error(response: aiohttp.ClientResponse) -> tuple[int, str]:
    """Status and code of one of the proxy's own JSON error answers."""
    assert response.content_type == "application/json"
    document = await response.json()
    assert set(document) == {"error"} and set(document["error"]) == {"code", "message"}
    return response.status, str(document["error"]["code"])


def signed(received: Received) -> Received:
    assert received.verified, received.reason
    return received


async def still_serves(proxy: ProxyClient, upstream: FakeUpstream) -> None:
    """After a refusal, the proxy answers a normal request, signed."""
    before = len(upstream.received)
    async with proxy.get("/graphql/v1") as response:
        assert response.status == 200
    assert len(upstream.received) == before + 1
    signed(upstream.received[-1])


# --- 1. not an open proxy ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_line", "status", "code"),
    [
        (b"GET http://other.example/x HTTP/1.1", 400, "bad_request_target"),
        (b"GET https://other.example:8443/graphql/v1 HTTP/1.1", 400, "bad_request_target"),
        (b"OPTIONS * HTTP/1.1", 400, "bad_request_target"),
        (b"CONNECT other.example:443 HTTP/1.1", 405, "method_not_allowed"),
    ],
    ids=["absolute-form", "absolute-form-https", "asterisk-form", "connect"],
)
async def test_requests_naming_another_destination_are_refused(
    proxy: ProxyClient, upstream: FakeUpstream, request_line: bytes, status: int, code: str
) -> None:
    sent = request_bytes(request_line).replace(b"Host: localhost", b"Host: other.example")
    response = await raw_request(proxy.host, proxy.port, sent)
    assert (response.status, response.error_code()) == (status, code)
    assert b"other.example" not in response.body
    if status == 405:
        allowed = {m.strip() for m in response.headers["allow"].split(",")}
        assert "CONNECT" not in allowed and {"GET", "POST"} <= allowed
    assert upstream.received == []
    await still_serves(proxy, upstream)


async def test_client_host_header_changes_neither_destination_nor_signature(
    proxy: ProxyClient, upstream: FakeUpstream
) -> None:
    sent = request_bytes(b"GET /graphql/v1 HTTP/1.1").replace(b"localhost", b"evil.example")
    response = await raw_request(proxy.host, proxy.port, sent)
    assert response.status == 200
    received = signed(upstream.received[-1])
    assert len(upstream.received) == 1
    assert received.header("Host") == URL(upstream.url).raw_authority
    assert "evil.example" not in repr(received.headers)
    authorization = received.header("Authorization") or ""
    assert authorization.startswith("Signature ") and f'keyId="{KEY_ID}"' in authorization


# --- 2. token ----------------------------------------------------------------------------------


@pytest.fixture
async def guarded(make_proxy: ProxyFactory) -> ProxyClient:
    return await make_proxy(token=TOKEN)


def assert_token_not_forwarded(received: Received) -> None:
    signed(received)
    assert (received.header("Authorization") or "").startswith("Signature ")
    assert received.header("Proxy-Authorization") is None
    assert TOKEN not in repr(received.headers)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-value"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Authorization": f"Bearer{TOKEN}"},
        {"Proxy-Authorization": f"Bearer {TOKEN[:-1]}"},
        {"X-Token": TOKEN},
    ],
    ids=[
        "none",
        "wrong",
        "prefix",
        "extension",
        "empty",
        "basic-scheme",
        "no-scheme",
        "no-space",
        "proxy-prefix",
        "other-header",
    ],
)
async def test_requests_without_the_right_token_are_refused(
    guarded: ProxyClient,
    upstream: FakeUpstream,
    caplog: pytest.LogCaptureFixture,
    headers: dict[str, str],
) -> None:
    caplog.set_level(logging.DEBUG)
    async with guarded.get("/graphql/v1", headers=headers) as response:
        assert await json_error(response) == (401, "unauthorized")
        challenge = response.headers["WWW-Authenticate"]
        assert challenge.startswith("Bearer ")
        assert TOKEN not in challenge
    assert upstream.received == []
    # Neither the real token nor what was presented is logged.
    assert "token-value" not in caplog.text and TOKEN[:-1] not in caplog.text


async def test_body_of_a_refused_request_is_not_read_as_a_request(
    guarded: ProxyClient, upstream: FakeUpstream
) -> None:
    smuggled = f"GET /smuggled HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    refused = (
        f"POST /graphql/v1 HTTP/1.1\r\nHost: x\r\nContent-Length: {len(smuggled)}\r\n\r\n{smuggled}"
    )
    good = (
        "GET /graphql/v1 HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection(guarded.host, guarded.port)
    try:
        writer.write((refused + good).encode())
        data = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    assert data.startswith(b"HTTP/1.1 401 ")
    assert data.count(b"HTTP/1.1 ") == 2 and b"HTTP/1.1 200 " in data
    assert [r.raw_path for r in upstream.received] == ["/graphql/v1"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Authorization", f"Bearer {TOKEN}"),
        ("Authorization", f"bearer {TOKEN}"),
        ("Authorization", f"BEARER {TOKEN}"),
        ("Proxy-Authorization", f"Bearer {TOKEN}"),
        ("Proxy-Authorization", f"bEaReR {TOKEN}"),
    ],
)
async def test_the_right_token_is_accepted_and_never_forwarded(
    guarded: ProxyClient,
    upstream: FakeUpstream,
    caplog: pytest.LogCaptureFixture,
    name: str,
    value: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with guarded.post("/graphql/v1", data=b"{}", headers={name: value}) as response:
        assert response.status == 200
        assert (await response.json())["path"] == "/graphql/v1"
    assert len(upstream.received) == 1
    assert_token_not_forwarded(upstream.received[0])
    assert "POST /graphql/v1 200" in caplog.text and TOKEN not in caplog.text


@pytest.mark.parametrize(
    "value",
    [b"Bearer s3cret-t\xc3\xb6ken-value", b"Bearer s3cret-token-valu\xff", b"Bearer \x80"],
)
async def test_non_ascii_tokens_are_refused_not_crashing(
    guarded: ProxyClient, upstream: FakeUpstream, value: bytes
) -> None:
    sent = request_bytes(b"GET /graphql/v1 HTTP/1.1", b"Authorization: " + value)
    response = await raw_request(guarded.host, guarded.port, sent)
    assert (response.status, response.error_code()) == (401, "unauthorized")
    assert upstream.received == []


async def test_token_does_not_reach_upstream_when_sent_in_both_headers(
    guarded: ProxyClient, upstream: FakeUpstream
) -> None:
    bearer = f"Bearer {TOKEN}"
    headers = {"Authorization": bearer, "Proxy-Authorization": bearer}
    async with guarded.get("/graphql/v1", headers=headers) as response:
        assert response.status == 200
    assert_token_not_forwarded(upstream.received[-1])


async def test_token_file_with_trailing_newline(
    make_proxy: ProxyFactory, upstream: FakeUpstream, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    client = await make_proxy(token_file=str(token_file))
    async with client.get("/graphql/v1", headers={"Authorization": f"Bearer {TOKEN}"}) as ok:
        assert ok.status == 200
    # The newline is not part of the token: the bare token is what clients send.
    async with client.get("/graphql/v1") as refused:
        assert await json_error(refused) == (401, "unauthorized")
    assert len(upstream.received) == 1
    assert_token_not_forwarded(upstream.received[0])


@pytest.mark.parametrize("content", [None, "", "\n  \n"], ids=["missing", "empty", "blank"])
def test_unusable_token_file_is_a_configuration_error(home: Path, content: str | None) -> None:
    token_file = home / "token"
    if content is not None:
        token_file.write_text(content)
    line = run_failing(["--token-file", str(token_file)], base_env(home))
    assert "--token-file" in line and str(token_file) in line


def test_token_file_with_an_invalid_token_does_not_print_it(home: Path) -> None:
    token_file = home / "token"
    token_file.write_text("s3cret token\n")  # a space: not a valid token
    line = run_failing(["--token-file", str(token_file)], base_env(home))
    assert "--token-file" in line
    assert "s3cret" not in line


def test_token_and_token_file_together_are_an_error(home: Path) -> None:
    token_file = home / "token"
    token_file.write_text("another-token-value\n")
    line = run_failing(["--token", TOKEN, "--token-file", str(token_file)], base_env(home))
    assert "--token" in line and "--token-file" in line
    assert TOKEN not in line and "another-token-value" not in line


# --- 3. exposure -------------------------------------------------------------------------------


@pytest.mark.parametrize("listen", ["0.0.0.0:0", "[::]:0", "192.0.2.1:0", "proxy.example:0"])
def test_non_loopback_listen_without_token_is_refused(home: Path, listen: str) -> None:
    line = run_failing(["--listen", listen], base_env(home))
    assert listen in line and "without a token" in line
    assert "anyone" in line and "Remote.It account" in line
    assert "--token" in line and "--allow-unauthenticated" in line


def test_non_loopback_listen_from_environment_is_refused(home: Path) -> None:
    env = base_env(home) | {"REMOTEIT_PROXY_LISTEN": "0.0.0.0:0"}
    line = run_failing([], env)
    assert "without a token" in line and "--allow-unauthenticated" in line


def local_url(url: str) -> str:
    """The URL logged for 0.0.0.0:PORT, reached over loopback."""
    return f"http://127.0.0.1:{URL(url).port}"


async def test_allow_unauthenticated_starts_with_a_warning(
    home: Path, upstream: FakeUpstream
) -> None:
    args = ("--listen", "0.0.0.0:0", "--upstream", upstream.url, "--allow-unauthenticated")
    async with (
        running_proxy(*args, env=base_env(home)) as (url, lines),
        aiohttp.ClientSession() as client,
        client.get(local_url(url) + "/graphql/v1") as response,
    ):
        assert response.status == 200
        warnings = [line for line in lines if " WARNING " in line]
    assert len(warnings) == 1, lines
    assert "--allow-unauthenticated" in warnings[0]
    assert "anyone" in warnings[0] and "Remote.It account" in warnings[0]
    signed(upstream.received[-1])


async def test_token_starts_without_the_warning(home: Path, upstream: FakeUpstream) -> None:
    args = ("--listen", "0.0.0.0:0", "--upstream", upstream.url, "--token", TOKEN)
    async with (
        running_proxy(*args, env=base_env(home)) as (url, lines),
        aiohttp.ClientSession() as client,
    ):
        target = local_url(url) + "/graphql/v1"
        async with client.get(target) as refused:
            assert await json_error(refused) == (401, "unauthorized")
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        async with client.get(target, headers=bearer) as response:
            assert response.status == 200
    output = "".join(lines)
    assert " WARNING " not in output and "allow-unauthenticated" not in output
    assert TOKEN not in output
    assert len(upstream.received) == 1
    assert_token_not_forwarded(upstream.received[0])


# --- 4. unix socket ----------------------------------------------------------------------------


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory: unix socket paths are limited to about 100 bytes."""
    with tempfile.TemporaryDirectory(prefix="rp-") as name:
        yield Path(name)


@pytest.fixture
def known_umask() -> Iterator[int]:
    """A usual umask (group and others may read) during the test, the old one restored after."""
    old = os.umask(0o022)
    try:
        yield 0o022
    finally:
        os.umask(old)


@POSIX
async def test_unix_socket_is_private_and_forwards_signed(
    make_proxy: ProxyFactory, upstream: FakeUpstream, sock_dir: Path
) -> None:
    path = sock_dir / "p.sock"
    client = await make_proxy(listen=f"unix:{path}")
    assert client.service.addresses == [f"unix:{path}"]
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    async with (
        aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(path))) as session,
        session.post("http://localhost/graphql/v1?x=1", data=b"{}") as response,
    ):
        assert response.status == 200
        assert (await response.json())["path"] == "/graphql/v1?x=1"
    received = signed(upstream.received[-1])
    assert received.header("Host") == URL(upstream.url).raw_authority
    # Stopped twice (here and by the fixture at teardown): the socket file goes, no error.
    await client.service.stop()
    assert not path.exists()
    await client.service.stop()


@POSIX
async def test_unix_socket_mode_can_be_widened(
    make_proxy: ProxyFactory, sock_dir: Path, monkeypatch: pytest.MonkeyPatch, known_umask: int
) -> None:
    path = sock_dir / "p.sock"
    modes_before_chmod: list[int] = []
    real_chmod = os.chmod

    def chmod(target: Any, mode: int, **kwargs: Any) -> None:
        if os.fspath(target) == str(path):
            modes_before_chmod.append(stat.S_IMODE(os.stat(target).st_mode))
        real_chmod(target, mode, **kwargs)

    monkeypatch.setattr(os, "chmod", chmod)
    await make_proxy(listen=f"unix:{path}", socket_mode="0660")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    # Private from the moment it exists: never readable by others before the chmod widens it.
    assert modes_before_chmod == [0o600]
    assert os.umask(known_umask) == known_umask  # the process umask is put back


@POSIX
async def test_stale_unix_socket_is_replaced(
    make_proxy: ProxyFactory, upstream: FakeUpstream, sock_dir: Path
) -> None:
    path = sock_dir / "p.sock"
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(path))  # closed without unlinking, as after a crash
    os.chmod(path, 0o777)
    await make_proxy(listen=f"unix:{path}")
    st = os.stat(path)
    # A new socket (inode numbers may be reused, so the mode tells): private again.
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    async with (
        aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(path))) as session,
        session.get("http://localhost/graphql/v1") as response,
    ):
        assert response.status == 200
    signed(upstream.received[-1])


@POSIX
async def test_regular_file_at_socket_path_is_left_alone(
    make_proxy: ProxyFactory, sock_dir: Path
) -> None:
    path = sock_dir / "p.sock"
    path.write_text("precious data\n")
    with pytest.raises(ListenError) as raised:
        await make_proxy(listen=f"unix:{path}")
    assert str(path) in str(raised.value)
    assert path.read_text() == "precious data\n"


@POSIX
async def test_directory_or_symlink_at_socket_path_is_left_alone(
    make_proxy: ProxyFactory, sock_dir: Path
) -> None:
    directory = sock_dir / "d.sock"
    directory.mkdir()
    (directory / "kept").write_text("x")
    with pytest.raises(ListenError) as raised:
        await make_proxy(listen=f"unix:{directory}")
    assert str(directory) in str(raised.value)
    assert (directory / "kept").read_text() == "x"
    # A symlink is not followed, even to a stale socket: the link stays as it is.
    target = sock_dir / "stale.sock"
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(target))
    link = sock_dir / "link.sock"
    link.symlink_to(target)
    with pytest.raises(ListenError) as raised:
        await make_proxy(listen=f"unix:{link}")
    assert str(link) in str(raised.value)
    assert link.is_symlink() and stat.S_ISSOCK(os.stat(target).st_mode)


@POSIX
async def test_socket_in_missing_directory_is_a_listen_error(
    make_proxy: ProxyFactory, sock_dir: Path, known_umask: int
) -> None:
    path = sock_dir / "missing" / "p.sock"
    with pytest.raises(ListenError) as raised:
        await make_proxy(listen=f"unix:{path}")
    assert str(path) in str(raised.value)
    assert not path.parent.exists()
    assert os.umask(known_umask) == known_umask  # put back after the failed bind too


@POSIX
async def test_socket_in_use_by_another_proxy_is_not_taken_over(
    make_proxy: ProxyFactory, upstream: FakeUpstream, sock_dir: Path
) -> None:
    path = sock_dir / "p.sock"
    await make_proxy(listen=f"unix:{path}")
    with pytest.raises(ListenError) as raised:
        await make_proxy(listen=f"unix:{path}")
    assert str(path) in str(raised.value)
    # The first proxy still owns and serves the socket.
    async with (
        aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(path))) as session,
        session.get("http://localhost/graphql/v1") as response,
    ):
        assert response.status == 200


@POSIX
async def test_stop_leaves_a_socket_another_process_put_there(
    upstream: FakeUpstream, credentials_file: Path, sock_dir: Path
) -> None:
    path = sock_dir / "p.sock"
    settings = resolve(
        {"listen": f"unix:{path}", "upstream": upstream.url, "credentials": str(credentials_file)},
        {},
    )
    service = ProxyService(settings, load_credentials(settings.credentials, settings.profile, {}))
    await service.start()
    try:
        os.unlink(path)
        with socket.socket(socket.AF_UNIX) as other:
            other.bind(str(path))
            await service.stop()
            assert path.exists()  # not ours any more: left in place
    finally:
        await service.stop()


@POSIX
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_curl_over_the_unix_socket(
    make_proxy: ProxyFactory, upstream: FakeUpstream, sock_dir: Path
) -> None:
    path = sock_dir / "p.sock"
    await make_proxy(listen=f"unix:{path}")
    process = await asyncio.create_subprocess_exec(
        "curl",
        "-s",
        "--unix-socket",
        str(path),
        "http://localhost/graphql/v1",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode == 0
    assert json.loads(out) == {
        "method": "GET",
        "path": "/graphql/v1",
        "sha256": hashlib.sha256(b"").hexdigest(),
        "size": 0,
    }
    signed(upstream.received[-1])


# --- 5. malformed requests ---------------------------------------------------------------------


@pytest.fixture
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which HTTP parser the servers use: aiohttp's default (llhttp, a C extension) or its
    pure-Python one, which aiohttp falls back to when the extension is not available (PyPy,
    platforms without wheels, AIOHTTP_NO_EXTENSIONS=1)."""
    name: str = getattr(request, "param", "default")
    if name == "llhttp" and HttpRequestParserPy is web_protocol.HttpRequestParser:
        pytest.skip("aiohttp's C parser is not available")
    if name == "python":
        monkeypatch.setattr(web_protocol, "HttpRequestParser", HttpRequestParserPy)
    return name


BOTH_PARSERS = pytest.mark.parametrize("parser", ["llhttp", "python"], indirect=True)


async def assert_refused_as_json(
    proxy: ProxyClient,
    upstream: FakeUpstream,
    caplog: pytest.LogCaptureFixture,
    sent: bytes,
    status: int,
    code: str | None,
) -> None:
    """``sent`` is answered with a JSON error (``code``: any when None), nothing is forwarded,
    nothing of it is echoed or logged, and the proxy goes on serving."""
    caplog.set_level(logging.DEBUG)
    response = await raw_request(proxy.host, proxy.port, sent)
    assert response.status == status, (response.status, response.body[:300])
    answered = response.error_code()
    assert code is None or answered == code
    assert MARKER not in response.body
    assert MARKER.decode() not in caplog.text  # nor is it logged
    assert upstream.received == []
    await still_serves(proxy, upstream)


@BOTH_PARSERS
@pytest.mark.parametrize(
    ("sent", "status", "code"),
    [
        (
            request_bytes(b"GET /graphql/v1 HTTP/1.1", b"X-A: " + MARKER + b"\rtwo"),
            400,
            "bad_request",
        ),
        (
            request_bytes(b"GET /graphql/v1 HTTP/1.1", b"X-A: " + MARKER + b"\ntwo"),
            400,
            "bad_request",
        ),
        (
            request_bytes(b"GET /graphql/v1 HTTP/1.1", b"X-A: " + MARKER * 1000),
            431,
            "header_too_large",
        ),
        (
            request_bytes(b"GET /graphql/v1?" + MARKER * 1000 + b" HTTP/1.1"),
            431,
            "header_too_large",
        ),
        (request_bytes(b"G(T /graphql/v1 HTTP/1.1"), 400, "bad_method"),
        (request_bytes(b"GET /a%zz HTTP/1.1"), 400, "bad_percent_encoding"),
        (request_bytes(b"GET /a%4 HTTP/1.1"), 400, "bad_percent_encoding"),
        (request_bytes(b"GET /a?x=%g0 HTTP/1.1"), 400, "bad_percent_encoding"),
        (request_bytes(b"GET /graphql/v1 HTTP/1.1", b"X-A\x00: 1"), 400, "bad_request"),
        (request_bytes(b"GET /graphql/v1 HTTP/1.1", b"X-A: 1\x00" + MARKER), 400, "bad_request"),
    ],
    ids=[
        "cr-in-value",
        "lf-in-value",
        "huge-header",
        "huge-request-line",
        "bad-method",
        "percent-zz",
        "percent-truncated",
        "percent-in-query",
        "nul-in-name",
        "nul-in-value",
    ],
)
async def test_malformed_requests_are_json_errors_and_never_forwarded(
    parser: str,
    proxy: ProxyClient,
    upstream: FakeUpstream,
    caplog: pytest.LogCaptureFixture,
    sent: bytes,
    status: int,
    code: str,
) -> None:
    await assert_refused_as_json(proxy, upstream, caplog, sent, status, code)


@pytest.mark.parametrize(
    "parser",
    ["llhttp", "python"],
    indirect=True,
)
@pytest.mark.parametrize(
    "target",
    [b"/caf\xc3\xa9", b"/a\xff", b"/graphql/v1?q=caf\xc3\xa9", b"/graphql/v1?q=\x80"],
    ids=["utf8-in-path", "high-byte-in-path", "utf8-in-query", "high-byte-in-query"],
)
async def test_non_ascii_bytes_in_the_target_are_refused(
    parser: str,
    proxy: ProxyClient,
    upstream: FakeUpstream,
    caplog: pytest.LogCaptureFixture,
    target: bytes,
) -> None:
    sent = request_bytes(b"GET " + target + b" HTTP/1.1")
    # llhttp answers bad_request; a check in the proxy itself may choose its own code.
    await assert_refused_as_json(proxy, upstream, caplog, sent, 400, None)
    # Logged, if at all, as escapes: no log reader meets undecodable text.
    access = [r.getMessage() for r in caplog.records if r.name == "proxy.access"]
    assert all(line.isascii() for line in access), access
    if parser == "python" and b"/a\xff" in target:
        assert any("/a\\xff" in line for line in access), access


@BOTH_PARSERS
async def test_malformed_request_after_a_good_one_on_the_same_connection(
    parser: str, proxy: ProxyClient, upstream: FakeUpstream
) -> None:
    good = b"GET /graphql/v1 HTTP/1.1\r\nHost: localhost\r\n\r\n"
    reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
    try:
        writer.write(good + b"GET /a%zz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"HTTP/1.1 400 " in data and b"bad_percent_encoding" in data
    assert len(upstream.received) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-origin"},  # a page on a name rebound to 127.0.0.1
    ],
)
async def test_web_pages_cannot_use_a_proxy_without_a_token(
    make_proxy: ProxyFactory, upstream: FakeUpstream, headers: dict[str, str]
) -> None:
    client = await make_proxy()
    async with client.post("/graphql/v1", data=b"{}", headers=headers) as response:
        assert response.status == 403
        assert (await response.json())["error"]["code"] == "browser_request_refused"
    assert upstream.received == []
    # The address typed by the user (Sec-Fetch-Site: none), and a token, are fine.
    async with client.get("/graphql/v1", headers={"Sec-Fetch-Site": "none"}) as response:
        assert response.status == 200
    with_token = await make_proxy(token="page-token-123")
    auth = {"Authorization": "Bearer page-token-123", **headers}
    async with with_token.post("/graphql/v1", data=b"{}", headers=auth) as response:
        assert response.status == 200


@pytest.mark.parametrize("target", ["/../admin", "/a/%2e%2e/b", "/a/.%2E/b", "/x/..?q=1"])
async def test_dot_segments_cannot_leave_the_upstream_prefix(
    make_proxy: ProxyFactory, upstream: FakeUpstream, target: str
) -> None:
    client = await make_proxy(upstream=upstream.url + "/remoteit")
    async with client.get(target) as response:
        assert response.status == 400
    assert upstream.received == []
    async with client.get("/graphql/v1/..x/y") as response:  # not a dot segment
        assert response.status == 200


async def test_expect_100_continue_is_answered(proxy: ProxyClient, upstream: FakeUpstream) -> None:
    reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
    body = b'{"query":"{ login { email } }"}'
    writer.write(
        b"POST /graphql/v1 HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n"
    )
    await writer.drain()
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
    assert interim.startswith(b"HTTP/1.1 100 Continue")
    writer.write(body)
    final = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert final.startswith(b"HTTP/1.1 200")
    received = upstream.last()
    assert received.body_size == len(body) and received.header("Expect") is None


async def test_other_expectations_get_417(proxy: ProxyClient, upstream: FakeUpstream) -> None:
    async with proxy.post("/graphql/v1", data=b"{}", headers={"Expect": "magic"}) as response:
        assert response.status == 417
    assert upstream.received == []
