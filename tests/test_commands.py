"""The ``check`` and ``sign`` commands, run as a user would, against the verifying fake API."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from conftest import DEVELOPER_KEY, KEY_ID, SECRET_B64
from fake_upstream import FakeUpstream, Received
from test_cli import base_env
from test_proxy import closed_port


async def run(*args: str, home: Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxy",
        *args,
        env=base_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def login(request: web.Request, received: Received) -> web.StreamResponse:
    body = {"data": {"login": {"email": "someone@example.com"}}}
    return web.json_response(body)


def leaks(text: str) -> bool:
    return KEY_ID in text or SECRET_B64 in text or DEVELOPER_KEY in text


async def test_check_reports_the_account(upstream: FakeUpstream, creds: Path) -> None:
    upstream.respond = login
    code, out, err = await run(
        "check", "--upstream", upstream.url, "--credentials", str(creds), home=creds.parent
    )
    assert code == 0, out + err
    assert "someone@example.com" in out
    assert "profile   DEFAULT" in out and "key       " + "*" * 16 + KEY_ID[-4:] in out
    assert "status    200" in out and "latency" in out and "clock     +0 s" in out
    received = upstream.received[-1]
    assert received.verified and received.method == "POST" and received.raw_path == "/graphql/v1"
    assert not leaks(out + err)


async def test_check_diagnoses_a_refused_key(upstream: FakeUpstream, creds: Path) -> None:
    upstream.keys = {KEY_ID: b"not the secret"}
    code, out, err = await run(
        "check", "--upstream", upstream.url, "--credentials", str(creds), home=creds.parent
    )
    assert code == 1
    assert "refused the signature (401)" in out
    assert "--profile" in out and "disabled" in out
    assert not leaks(out + err)


@pytest.mark.parametrize("correction", [True, False])
async def test_check_with_a_clock_two_minutes_off(
    upstream: FakeUpstream, creds: Path, correction: bool
) -> None:
    upstream.respond = login
    upstream.clock = lambda: time.time() + 120
    upstream.max_skew = 60
    args = ["check", "--upstream", upstream.url, "--credentials", str(creds)]
    code, out, _ = await run(
        *args, *([] if correction else ["--no-clock-correction"]), home=creds.parent
    )
    if correction:
        assert code == 0, out
        assert "(corrected)" in out and "someone@example.com" in out
    else:
        assert code == 1
        causes = out.split("Likely causes:", 1)[1]
        assert causes.index("clock") < causes.index("--profile")
    assert "-120 s off" in out or "-119 s off" in out or "-121 s off" in out


async def test_check_diagnoses_throttling(upstream: FakeUpstream, creds: Path) -> None:
    async def throttled(request: web.Request, received: Received) -> web.StreamResponse:
        return web.json_response({"message": "Too Many Requests"}, status=429)

    upstream.respond = throttled
    code, out, _ = await run(
        "check", "--upstream", upstream.url, "--credentials", str(creds), home=creds.parent
    )
    assert code == 1 and "throttling" in out


async def test_check_diagnoses_an_unreachable_api(creds: Path) -> None:
    code, out, _ = await run(
        "check",
        "--upstream",
        f"http://127.0.0.1:{closed_port()}",
        "--credentials",
        str(creds),
        home=creds.parent,
    )
    assert code == 1 and "could not be reached" in out and "upstream_unreachable" in out


async def test_check_configuration_error_is_exit_2(tmp_path: Path) -> None:
    code, out, err = await run("check", "--credentials", str(tmp_path / "none"), home=tmp_path)
    assert code == 2 and out == "" and "does not exist" in err


def parse_headers(text: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in text.strip().splitlines())


async def send(url: str, method: str, headers: dict[str, str], data: bytes | None = None) -> int:
    async with (
        aiohttp.ClientSession(skip_auto_headers=("Content-Type",)) as session,
        session.request(method, url, headers=headers, data=data) as response,
    ):
        return response.status


async def test_sign_headers_for_a_path(upstream: FakeUpstream, creds: Path) -> None:
    code, out, err = await run(
        "sign",
        "/apv/v27/device/list/all?size=5",
        "--upstream",
        upstream.url,
        "--credentials",
        str(creds),
        home=creds.parent,
    )
    assert code == 0, err
    headers = parse_headers(out)
    assert set(headers) == {"Date", "Content-Type", "DeveloperKey", "Authorization"}
    status = await send(upstream.url + "/apv/v27/device/list/all?size=5", "GET", headers)
    assert status == 200 and upstream.received[-1].verified
    assert upstream.received[-1].header("DeveloperKey") == DEVELOPER_KEY


async def test_sign_json_for_a_url_with_a_body(
    upstream: FakeUpstream, creds: Path, tmp_path: Path
) -> None:
    body = tmp_path / "query.json"
    body.write_bytes(b'{"query":"{ login { email } }"}')
    code, out, err = await run(
        "sign",
        "--format",
        "json",
        "--data-file",
        str(body),
        upstream.url + "/graphql/v1",
        "--credentials",
        str(creds),
        home=creds.parent,
    )
    assert code == 0, err
    signed = json.loads(out)
    assert signed["method"] == "POST" and signed["url"] == upstream.url + "/graphql/v1"
    assert await send(signed["url"], "POST", signed["headers"], body.read_bytes()) == 200
    assert upstream.received[-1].verified


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("form", ["headers", "curl"])
async def test_sign_output_works_with_curl(
    upstream: FakeUpstream, creds: Path, tmp_path: Path, form: str
) -> None:
    body = tmp_path / "query.json"
    body.write_bytes(b'{"query":"{ login { email } }"}')
    url = upstream.url + "/graphql/v1?x=1"
    code, out, err = await run(
        "sign",
        "--format",
        form,
        "--method",
        "POST",
        "--data-file",
        str(body),
        url,
        "--credentials",
        str(creds),
        home=creds.parent,
    )
    assert code == 0, err
    if form == "headers":  # the documented use: remoteit-proxy sign ... | curl -H @- ...
        command = ["curl", "-sf", "-X", "POST", "-H", "@-", "--data-binary", f"@{body}", url]
        stdin = out
    else:
        command, stdin = ["sh", "-c", out.strip() + " -sf"], ""
    result = await asyncio.to_thread(
        subprocess.run, command, input=stdin, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert upstream.received[-1].verified and upstream.received[-1].raw_path == "/graphql/v1?x=1"
