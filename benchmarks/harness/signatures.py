"""The signing proxies' requests, checked by tests/fake_upstream.py's independent verifier."""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from .common import BODY, KEY_ID, PATH, ROOT, TLS_NAME
from .context import Context
from .launches import Launch, nginx_launch, proxy_launch, start
from .processes import free_port

IMF_FIXDATE = re.compile(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT")


@dataclass
class SignatureCheck:
    """One request through one signing proxy, as the independent verifier saw it."""

    signer: str
    request: str
    status: int
    verified: bool
    reason: str


CHECK_REQUESTS: tuple[tuple[str, str, dict[str, str], str | None], ...] = (
    ("POST", PATH, {"Content-Type": "application/json"}, BODY),
    ("GET", "/apv/v27/device/list/all?size=50", {}, None),
)
CHECK_BURST = 100  # concurrent POSTs per signer, to catch a Date/signature mismatch under load


def why_invalid(received: Any, host: str) -> str:
    """'' if the verifier accepted the request and its Host and Date look right, else why not."""
    if received.reason:
        return str(received.reason)
    if received.header("Host") != host:
        return f"Host {received.header('Host')!r}, not {host!r}"
    if not IMF_FIXDATE.fullmatch(received.header("Date") or ""):
        return f"Date {received.header('Date')!r} is not an IMF-fixdate"
    return ""


async def check_signer(
    session: aiohttp.ClientSession, fake: Any, signer: str, port: int, host: str
) -> list[SignatureCheck]:
    """The check requests one at a time, then a burst of concurrent POSTs."""
    checks = []
    for method, target, headers, body in CHECK_REQUESTS:
        seen = len(fake.received)
        url = f"http://127.0.0.1:{port}{target}"
        async with session.request(method, url, headers=headers, data=body) as response:
            await response.read()
        got = fake.received[seen:]
        reason = why_invalid(got[-1], host) if got else "the request never reached the upstream"
        verified = response.status == 200 and not reason
        checks.append(
            SignatureCheck(signer, f"{method} {target}", response.status, verified, reason)
        )

    async def post() -> int:
        url = f"http://127.0.0.1:{port}{PATH}"
        async with session.post(url, data=BODY, headers={"Content-Type": "application/json"}) as r:
            await r.read()
            return r.status

    seen = len(fake.received)
    statuses = await asyncio.gather(*(post() for _ in range(CHECK_BURST)))
    reasons = [why_invalid(got, host) for got in fake.received[seen:]]
    invalid = [reason for reason in reasons if reason]
    answered = sum(status == 200 for status in statuses)
    verified = answered == len(reasons) == CHECK_BURST and not invalid
    reason = "" if verified else f"{answered} answered 200, {len(invalid)} invalid {invalid[:1]}"
    status = next((status for status in statuses if status != 200), 200)
    checks.append(
        SignatureCheck(signer, f"{CHECK_BURST} concurrent POST {PATH}", status, verified, reason)
    )
    return checks


async def check_signatures(ctx: Context) -> list[SignatureCheck]:
    """Send requests through njs and remoteit-proxy to tests/fake_upstream.py's verifier; with
    certificates, also through both to the verifier over https, as the https rows run them."""
    sys.path.insert(0, str(ROOT / "tests"))
    from fake_upstream import FakeUpstream  # recomputes the HMAC without importing proxy

    fake = FakeUpstream(keys={KEY_ID: base64.b64decode(ctx.secret_b64)})
    runner = web.AppRunner(fake.app(), access_log=None)
    await runner.setup()
    started: list[subprocess.Popen[bytes]] = []
    checks: list[SignatureCheck] = []
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        signers = signers_to_check(ctx, runner.addresses[0][1], https=False)
        if ctx.tls is not None:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(ctx.tls.cert, ctx.tls.key)
            tls_port = free_port()
            await web.TCPSite(runner, "127.0.0.1", tls_port, ssl_context=tls).start()
            signers += signers_to_check(ctx, tls_port, https=True)
        for _, launch, port, _ in signers:
            started.append(await asyncio.to_thread(start, ctx, launch, port, None))
        async with aiohttp.ClientSession() as session:
            for signer, _, port, host in signers:
                checks += await check_signer(session, fake, signer, port, host)
    finally:
        for proc in started:
            ctx.procs.stop(proc)
        await runner.cleanup()
    return checks


def signers_to_check(
    ctx: Context, upstream: int, https: bool
) -> list[tuple[str, Launch, int, str]]:
    """nginx + njs and remoteit-proxy in front of the verifier's port ``upstream`` (its TLS
    port with ``https``): signer, launch, port, and the Host the verifier must see."""
    suffix, label = ("-https", " (https)") if https else ("", "")
    host = f"{TLS_NAME if https else '127.0.0.1'}:{upstream}"
    signers = []
    if ctx.tools.njs_module is not None:
        port = free_port()
        template = "njs_https.conf" if https else "njs.conf"
        launch = nginx_launch(ctx, f"njs{suffix}-check", template, port, upstream)
        signers.append((f"nginx + njs{label}", launch, port, host))
    port = free_port()
    launch = proxy_launch(ctx, f"remoteit{suffix}-check", port, upstream, https=https)
    signers.append((f"remoteit-proxy{label}", launch, port, host))
    return signers
