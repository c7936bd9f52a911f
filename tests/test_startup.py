"""Start-up: the commands scripts run once per call load only what they use (no aiohttp)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web
from fake_upstream import FakeUpstream
from test_cli import base_env

# What serving needs and these commands do not: importing them is most of a run's time
# (aiohttp alone was about three quarters of `sign`'s 0.4 s).
HEAVY = ("aiohttp", "yarl", "graphql", "prometheus_client", "keyring", "uvloop")


def loaded(home: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``python -X importtime -m proxy ARGS``: its result and the modules it imported."""
    return imports(home, "-m", "proxy", *args)


def imports(home: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        env=base_env(home),
        capture_output=True,
        text=True,
        timeout=60,
    )
    modules = {
        line.rpartition("|")[2].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    return done, modules


@pytest.fixture
def query(home: Path) -> Path:
    (home / "query.json").write_text('{"query":"{ login { email } }"}')
    return home / "query.json"


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


@pytest.mark.parametrize("output", ["headers", "curl", "json"])
def test_sign_imports_nothing_it_does_not_use(home: Path, query: Path, output: str) -> None:
    data = str(query)
    done, modules = loaded(home, "sign", "/graphql/v1", "--data-file", data, "--format", output)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Signature keyId" in done.stdout
    assert modules, "python -X importtime printed nothing: the test could not see the imports"
    assert not heavy(modules), heavy(modules)


async def test_check_imports_nothing_it_does_not_use(home: Path, upstream: FakeUpstream) -> None:
    async def login(request: web.Request, received: object) -> web.StreamResponse:
        return web.json_response({"data": {"login": {"email": "someone@example.com"}}})

    upstream.respond = login
    # (In a thread: the fake upstream answers on this test's event loop.)
    done, modules = await asyncio.to_thread(loaded, home, "check", "--upstream", upstream.url)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert "someone@example.com" in done.stdout and upstream.received[-1].verified
    assert not heavy(modules), heavy(modules)


def test_the_reading_of_imports_sees_aiohttp_where_it_is_imported(home: Path) -> None:
    done, modules = imports(home, "-c", "import proxy.serve.outgoing")
    assert done.returncode == 0, done.stderr[-2000:]
    assert {"aiohttp", "yarl"} <= set(heavy(modules))
