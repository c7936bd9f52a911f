"""The user workload's five ways to make calls, and the signing ones checked by fake_upstream."""

from __future__ import annotations

import asyncio
import base64
import shlex
import shutil
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from .common import BODY, HERE, KEY_ID, PATH, ROOT, TLS_NAME, BenchError, say
from .context import Context
from .launches import proxy_launch, start
from .processes import free_port
from .signatures import SignatureCheck, why_invalid
from .tools import apt_install

VENDOR_SCRIPT = HERE / "vendor_recipe.sh"
CLIENT_SCRIPT = HERE / "workload_client.py"
PROGRAMS = (("bash", "bash"), ("curl", "curl"), ("openssl", "openssl"))


@dataclass(frozen=True)
class Way:
    """One row of the user workload: a key, a label, and the command that makes the calls."""

    key: str
    label: str
    argv: list[str]
    signs: bool  # a way whose signatures fake_upstream checks before measuring


def ensure_programs(install: bool) -> None:
    """bash, curl and the openssl command, installed with apt-get when missing."""
    missing = [package for program, package in PROGRAMS if shutil.which(program) is None]
    if missing and install:
        apt_install(missing)
    missing = [program for program, _ in PROGRAMS if shutil.which(program) is None]
    if missing:
        raise BenchError(f"the user workload needs {', '.join(missing)}: apt-get install -y ...")


def remoteit_proxy() -> list[str]:
    """The remoteit-proxy command README users run: the venv's script, else python -m proxy."""
    script = Path(sys.executable).with_name("remoteit-proxy")
    return [str(script)] if script.exists() else [sys.executable, "-m", "proxy"]


def per_call(call: str, calls: int) -> list[str]:
    """A bash loop running the shell command ``call`` ``calls`` times, stopping at a failure;
    each answer on its own line."""
    script = f"set -o pipefail\nfor ((i = 0; i < {calls}; i++)); do\n  {call} || exit 1\n"
    return ["bash", "-c", script + "  echo\ndone\n"]


def ways(ctx: Context, origin: str, proxy: int, calls: int) -> list[Way]:
    """The rows: ``origin`` is the TLS upstream (https://localhost:PORT, the relay's port when
    measuring), ``proxy`` the port of a remoteit-proxy in front of it."""
    assert ctx.tls is not None
    ca, body = str(ctx.tls.ca), ctx.workdir / "query.json"
    if not body.exists():
        body.write_text(BODY)
    url, via_proxy = origin + PATH, f"http://127.0.0.1:{proxy}{PATH}"
    sign = [*remoteit_proxy(), "sign", "--credentials", str(ctx.credentials)]
    sign += ["--upstream", origin, "--data-file", str(body), PATH]
    curl = ["curl", "-sS", "--fail", "--data-binary", f"@{body}"]
    piped = f"{shlex.join(sign)} | {shlex.join([*curl, '-H', '@-', '--cacert', ca, url])}"
    json = ["-H", "Content-Type: application/json"]
    client = [sys.executable, str(CLIENT_SCRIPT), "--calls", str(calls)]
    vendor = per_call(shlex.join([str(VENDOR_SCRIPT), url]), calls)
    curl_proxy = per_call(shlex.join([*curl, *json, via_proxy]), calls)
    return [
        Way("vendor", "vendor's recipe", vendor, signs=True),
        Way("sign", "sign + curl", per_call(piped, calls), signs=True),
        Way("curl-proxy", "curl via proxy", curl_proxy, signs=True),
        Way("session-proxy", "session via proxy", [*client, via_proxy], signs=False),
        Way("floor", "floor (kept-alive TLS)", [*client, "--cafile", ca, url], signs=False),
    ]


def calls_env(ctx: Context) -> dict[str, str]:
    """The environment of every way: the key for the vendor's recipe (as njs gets it), the CA
    for its curl."""
    assert ctx.tls is not None
    key = {"R3_ACCESS_KEY_ID": KEY_ID, "R3_SECRET_ACCESS_KEY": ctx.secret_b64}
    return {**ctx.env, **key, "CURL_CA_BUNDLE": str(ctx.tls.ca)}


async def check_way(ctx: Context, fake: Any, way: Way, host: str) -> SignatureCheck:
    """One call the ``way``; the request fake_upstream received must verify, with ``host``."""
    seen = len(fake.received)
    done = await asyncio.to_thread(
        subprocess.run, way.argv, capture_output=True, env=calls_env(ctx), cwd=ROOT, timeout=60
    )
    got = fake.received[seen:]
    if len(got) != 1:
        reason = f"{len(got)} requests reached the upstream"
    elif way.key == "vendor":  # its Date ends in UTC (date -u +%Z), not GMT: Host checked only
        reason = got[0].reason or ("" if got[0].header("Host") == host else "Host")
    else:
        reason = why_invalid(got[0], host)
    if done.returncode != 0 and not reason:
        reason = f"exit {done.returncode}: {done.stderr.decode(errors='replace')[-300:]}"
    status = 200 if done.returncode == 0 else 0
    return SignatureCheck(way.label, f"POST {PATH} over https", status, not reason, reason)


async def check_workload_signatures(ctx: Context) -> list[SignatureCheck]:
    """The vendor's recipe, sign + curl and curl via remoteit-proxy (at its default log level,
    as measured), one call each to tests/fake_upstream.py over TLS as https://localhost:PORT."""
    assert ctx.tls is not None
    sys.path.insert(0, str(ROOT / "tests"))
    from fake_upstream import FakeUpstream  # recomputes the HMAC without importing proxy

    fake = FakeUpstream(keys={KEY_ID: base64.b64decode(ctx.secret_b64)})
    runner = web.AppRunner(fake.app(), access_log=None)
    await runner.setup()
    proc = None
    checks: list[SignatureCheck] = []
    try:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(ctx.tls.cert, ctx.tls.key)
        tls_port, port = free_port(), free_port()
        await web.TCPSite(runner, "127.0.0.1", tls_port, ssl_context=tls).start()
        launch = proxy_launch(ctx, "workload-check", port, tls_port, https=True, log_level=None)
        proc = await asyncio.to_thread(start, ctx, launch, port, None)
        origin = f"https://{TLS_NAME}:{tls_port}"
        for way in ways(ctx, origin, port, calls=1):
            if way.signs:
                checks.append(await check_way(ctx, fake, way, f"{TLS_NAME}:{tls_port}"))
    finally:
        if proc is not None:
            ctx.procs.stop(proc)
        await runner.cleanup()
    if not checks:
        say("no way of the user workload to check")
    return checks
