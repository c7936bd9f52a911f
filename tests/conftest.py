"""Shared fixtures: credentials on disk, the verifying fake upstream, the proxy in front of it."""

from __future__ import annotations

import base64
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp.test_utils import TestServer
from fake_account import AccountUpstream, FakeAccount
from fake_upstream import FakeUpstream
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL

from proxy.config.resolve import resolve
from proxy.serve.clients import load_profiles
from proxy.serve.server import ProxyService

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
def home(tmp_path: Path) -> Path:
    """A HOME whose ~/.remoteit/credentials holds the test key (for a real process's env)."""
    (tmp_path / ".remoteit").mkdir()
    write_credentials(
        tmp_path / ".remoteit" / "credentials",
        f"[DEFAULT]\nR3_ACCESS_KEY_ID={KEY_ID}\nR3_SECRET_ACCESS_KEY={SECRET_B64}\n",
    )
    return tmp_path


@pytest.fixture
def credentials_file(tmp_path: Path) -> Path:
    return write_credentials(
        tmp_path / "credentials",
        f"[DEFAULT]\nR3_ACCESS_KEY_ID={KEY_ID}\nR3_SECRET_ACCESS_KEY={SECRET_B64}\n",
    )


@pytest.fixture
def creds(tmp_path: Path) -> Path:
    """A credentials file whose profile also has a developer key."""
    return write_credentials(
        tmp_path / "credentials",
        f"[DEFAULT]\nR3_ACCESS_KEY_ID={KEY_ID}\nR3_SECRET_ACCESS_KEY={SECRET_B64}\n"
        f"R3_DEVELOPER_API_KEY={DEVELOPER_KEY}\n",
    )


@pytest.fixture
async def upstream(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> FakeUpstream:
    fake = FakeUpstream(keys={KEY_ID: SECRET})
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("")).rstrip("/")
    return fake


class ProxyClient:
    """A client session aimed at a running proxy, with the request helpers the tests use."""

    def __init__(self, service: ProxyService, session: aiohttp.ClientSession) -> None:
        self.service = service
        self.session = session
        url = URL(service.addresses[0])
        self.host, self.port = url.host or "", url.port or 0

    def url(self, target: str) -> URL:
        """A URL whose path and query are sent exactly as written."""
        return URL(f"http://{self.host}:{self.port}{target}", encoded=True)

    def request(self, method: str, target: str, **kwargs: Any) -> Any:
        return self.session.request(method, self.url(target), **kwargs)

    def get(self, target: str, **kwargs: Any) -> Any:
        return self.request("GET", target, **kwargs)

    def head(self, target: str, **kwargs: Any) -> Any:
        return self.request("HEAD", target, **kwargs)

    def post(self, target: str, **kwargs: Any) -> Any:
        return self.request("POST", target, **kwargs)

    async def metric(self, name: str, **labels: str) -> float:
        """A sample of ``/-/metrics`` by name and labels; 0 when none is shown (a counter
        with labels appears once counted)."""
        async with self.get("/-/metrics") as response:
            text = await response.text()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and labels.items() <= sample.labels.items():
                    return float(sample.value)
        return 0.0


ProxyFactory = Callable[..., Awaitable[ProxyClient]]


@pytest.fixture
async def make_proxy(upstream: FakeUpstream, credentials_file: Path) -> AsyncIterator[ProxyFactory]:
    """Start the proxy in front of the fake upstream; keyword arguments are settings."""
    started: list[tuple[ProxyService, aiohttp.ClientSession]] = []

    async def make(
        environ: dict[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        reload_interval: float = 1.0,
        **cli: str,
    ) -> ProxyClient:
        given = {
            "listen": "127.0.0.1:0",
            "upstream": upstream.url,
            "credentials": str(credentials_file),
        }
        given.update({k.replace("_", "-"): v for k, v in cli.items()})
        env = environ or {}
        settings = resolve(given, env)
        creds = load_profiles(settings, env)
        service = ProxyService(
            settings, creds, environ=env, clock=clock, reload_interval=reload_interval
        )
        await service.start()
        session = aiohttp.ClientSession(auto_decompress=False)
        started.append((service, session))
        return ProxyClient(service, session)

    yield make
    for service, session in started:
        await session.close()
        await service.stop()


@pytest.fixture
async def proxy(make_proxy: ProxyFactory) -> ProxyClient:
    return await make_proxy()


# --- an upstream behind TLS ------------------------------------------------------------------

ServerFactory = Callable[..., Awaitable[TestServer]]


@pytest.fixture(scope="module")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_pem(tls_ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "corporate-ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return path


async def start_https_upstream(
    aiohttp_server: ServerFactory, tls_ca: trustme.CA, *names: str
) -> FakeUpstream:
    """A verifying fake upstream behind TLS, its certificate issued by ``tls_ca`` for names."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert(*names).configure_cert(context)
    fake = FakeUpstream(keys={KEY_ID: SECRET})
    server = await aiohttp_server(fake.app(), ssl=context)
    fake.url = f"https://127.0.0.1:{server.port}"
    return fake


@pytest.fixture
async def https_upstream(aiohttp_server: ServerFactory, tls_ca: trustme.CA) -> FakeUpstream:
    return await start_https_upstream(aiohttp_server, tls_ca, "127.0.0.1", "localhost")


# --- the account's key-management API ----------------------------------------------------------


@pytest.fixture
async def account_upstream(aiohttp_server: ServerFactory) -> AccountUpstream:
    """A verifying upstream that a FakeAccount can answer for (it replays request bodies)."""
    fake = AccountUpstream(keys={KEY_ID: SECRET})
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("")).rstrip("/")
    return fake


@pytest.fixture
def account(account_upstream: AccountUpstream) -> FakeAccount:
    """The account behind ``account_upstream``: its keys, its developer key, its limits."""
    return FakeAccount(account_upstream)
