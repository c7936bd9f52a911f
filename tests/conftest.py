"""Shared fixtures: credentials on disk, the verifying fake upstream, the proxy in front of it."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from fake_upstream import FakeUpstream

from proxy.app import create_app
from proxy.credentials import load_credentials
from proxy.settings import resolve

KEY_ID = "TESTKEYID0000000ABCD"
# Decoded bytes include NUL and end in a newline: text handling of the key would break them.
SECRET = b"\x00test-secret\xff\x10 bytes\n"
SECRET_B64 = base64.b64encode(SECRET).decode()
DEVELOPER_KEY = "DEVKEY-0123456789"


def write_credentials(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


@pytest.fixture
def credentials_file(tmp_path: Path) -> Path:
    return write_credentials(
        tmp_path / "credentials",
        f"[DEFAULT]\nR3_ACCESS_KEY_ID={KEY_ID}\nR3_SECRET_ACCESS_KEY={SECRET_B64}\n",
    )


@pytest.fixture
async def upstream(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> FakeUpstream:
    fake = FakeUpstream(keys={KEY_ID: SECRET})
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("")).rstrip("/")
    return fake


ProxyFactory = Callable[..., Awaitable[TestClient]]


@pytest.fixture
def make_proxy(
    aiohttp_client: Callable[..., Awaitable[TestClient]],
    upstream: FakeUpstream,
    credentials_file: Path,
) -> ProxyFactory:
    """Start the proxy app in front of the fake upstream; keyword arguments are settings."""

    async def make(
        environ: dict[str, str] | None = None, clock: Callable[[], float] | None = None, **cli: str
    ) -> TestClient:
        given = {"upstream": upstream.url, "credentials": str(credentials_file)}
        given.update({k.replace("_", "-"): v for k, v in cli.items()})
        settings = resolve(given, environ or {})
        creds = load_credentials(settings.credentials, settings.profile, environ or {})
        app = create_app(settings, creds) if clock is None else create_app(settings, creds, clock)
        return await aiohttp_client(app, auto_decompress=False)

    return make


@pytest.fixture
async def proxy(make_proxy: ProxyFactory) -> TestClient:
    return await make_proxy()
