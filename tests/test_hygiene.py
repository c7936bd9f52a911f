"""Secret hygiene: the proxy at DEBUG, driven through every error path, never shows a secret."""

from __future__ import annotations

import asyncio
import base64
import re
import subprocess
import sys
from pathlib import Path

import aiohttp
from aiohttp import web
from conftest import DEVELOPER_KEY, KEY_ID, SECRET, SECRET_B64, write_credentials
from fake_upstream import FakeUpstream, Received
from test_cli import base_env, proxy_process
from test_proxy import closed_port

TOKEN = "tok-3f9a1c7e5b2d4a6f8e0c"
NEW_SECRET_B64 = base64.b64encode(b"a rotated secret that is not valid").decode()


async def raw_exchange(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), 5)
    except (ConnectionError, asyncio.TimeoutError):
        return b""
    finally:
        writer.close()


async def behave(request: web.Request, received: Received) -> web.StreamResponse:
    """The fake API's answers by path: slow, cut off, refused, or an echo."""
    if request.path == "/slow":
        await asyncio.sleep(1.0)
    if request.path == "/cut":
        response = web.StreamResponse(headers={"Content-Length": "1000"})
        await response.prepare(request)
        await response.write(b"partial")
        assert request.transport is not None
        request.transport.abort()
        return response
    if request.path == "/refused":
        return web.json_response({"message": "Forbidden"}, status=403)
    return web.json_response({"ok": True})


async def exercise(url: str, seen: list[bytes]) -> None:
    """Every request-level error path, and the successful ones, recording all answers."""
    good = {"Authorization": f"Bearer {TOKEN}"}
    plans: list[tuple[str, str, dict[str, str]]] = [
        ("GET", "/graphql/v1", good),
        ("POST", "/graphql/v1", {"Proxy-Authorization": f"Bearer {TOKEN}"}),
        ("GET", "/apv/v27/device/list/all?x=1", good),
        ("GET", "/graphql/v1", {}),
        ("GET", "/graphql/v1", {"Authorization": f"Bearer {TOKEN[:-1]}"}),
        ("GET", "/graphql/v1", {"Authorization": f"Bearer {TOKEN}x"}),
        ("GET", "/slow", good),
        ("GET", "/refused", good),
        ("CONNECT", "/", good),
    ]
    async with aiohttp.ClientSession() as session:
        for method, target, headers in plans:
            async with session.request(method, url + target, headers=headers) as response:
                seen.append(str(response.status).encode() + repr(response.headers).encode())
                seen.append(await response.read())
        try:
            async with session.get(url + "/cut", headers=good) as response:
                seen.append(await response.read())
        except aiohttp.ClientPayloadError:
            pass
    auth = f"Authorization: Bearer {TOKEN}\r\nConnection: close\r\n".encode()
    for request in (
        b"GET http://other.example/x HTTP/1.1\r\nHost: other.example\r\n" + auth + b"\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n",
        b"GET /a%zz HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n",
        b"GET /x HTTP/1.1\r\nHost: x\r\n" + auth + b"X-Bad: a\rb\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + TOKEN.encode() * 2000
        + b"\r\n\r\n",
        b"G(T /x HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n",
    ):
        seen.append(await raw_exchange(url, request))


def forbidden_values(upstream: FakeUpstream) -> list[bytes]:
    values = [
        SECRET,
        SECRET_B64.encode(),
        SECRET_B64.rstrip("=").encode(),
        base64.urlsafe_b64encode(SECRET).rstrip(b"="),
        SECRET.hex().encode(),
        repr(SECRET).encode(),
        DEVELOPER_KEY.encode(),
        TOKEN.encode(),
        NEW_SECRET_B64.encode(),
    ]
    for received in upstream.received:
        match = re.search(r'signature="([^"]+)"', received.header("Authorization") or "")
        assert match
        values.append(match.group(1).encode())
    return values


async def test_nothing_the_proxy_writes_or_answers_holds_a_secret(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.respond = behave
    path = write_credentials(
        tmp_path / "credentials",
        f"[DEFAULT]\nR3_ACCESS_KEY_ID={KEY_ID}\nR3_SECRET_ACCESS_KEY={SECRET_B64}\n"
        f"R3_DEVELOPER_API_KEY={DEVELOPER_KEY}\n",
    )
    path.chmod(0o644)  # also exercise the permissions warning
    common = ("--credentials", str(path), "--log-level", "debug", "--read-timeout", "0.3")
    env = base_env(tmp_path) | {"REMOTEIT_PROXY_TOKEN": TOKEN}
    seen: list[bytes] = []
    async with proxy_process(
        "--listen", "127.0.0.1:0", "--upstream", upstream.url, *common, env=env
    ) as running:
        await exercise(running.url, seen)
        # A rotation to a file that cannot be used: reported, values never shown.
        path.write_text(
            f"[DEFAULT]\nR3_ACCESS_KEY_ID={KEY_ID}\nR3_SECRET_ACCESS_KEY=!{NEW_SECRET_B64}\n"
        )
        await asyncio.sleep(1.5)
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                running.url + "/graphql/v1", headers={"Authorization": f"Bearer {TOKEN}"}
            ) as response,
        ):
            assert response.status == 200
    output = "".join(running.lines)
    async with proxy_process(
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        f"http://127.0.0.1:{closed_port()}",
        "--credentials",
        str(path.with_name("good")),
        "--log-level",
        "debug",
        env=env | {"R3_ACCESS_KEY_ID": KEY_ID, "R3_SECRET_ACCESS_KEY": SECRET_B64},
    ) as unreachable:
        await exercise(unreachable.url, seen)
    output += "".join(unreachable.lines)
    failures = [
        subprocess.run(
            [sys.executable, "-m", "proxy", *args],
            env=base_env(tmp_path) | extra,
            capture_output=True,
            timeout=30,
        )
        for args, extra in [
            (["--credentials", str(path)], {}),  # the unusable rotated file
            (
                ["--listen", "0.0.0.0:0"],
                {"R3_ACCESS_KEY_ID": KEY_ID, "R3_SECRET_ACCESS_KEY": SECRET_B64},
            ),
            (
                ["--token", TOKEN + " x"],
                {"R3_ACCESS_KEY_ID": KEY_ID, "R3_SECRET_ACCESS_KEY": SECRET_B64},
            ),
            (
                ["--upstream", f"https://u:{TOKEN}@api.remote.it"],
                {"R3_ACCESS_KEY_ID": KEY_ID, "R3_SECRET_ACCESS_KEY": SECRET_B64},
            ),
        ]
    ]
    assert all(f.returncode == 2 for f in failures)

    # Everything was exercised: these lines are what the search below relies on.
    for expected in (
        "401",
        "403",
        "504",
        "502",
        "405",
        "bad_request_target",
        "header_too_large",
        "bad_method",
        "bad_percent_encoding",
        "upstream_unreachable",
    ):
        assert expected.encode() in b"".join(seen) + output.encode(), expected
    assert "transfer aborted" in output and "not reloaded" in output and "chmod 600" in output
    assert len(upstream.received) >= 5

    everything = output.encode() + b"".join(seen)
    everything += b"".join(f.stdout + f.stderr for f in failures)
    for value in forbidden_values(upstream):
        assert value not in everything, value
