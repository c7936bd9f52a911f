"""Operations: /-/health, /-/ready, /-/metrics, the access log, request ids and clock skew."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from conftest import DEVELOPER_KEY, KEY_ID, SECRET, SECRET_B64, ProxyClient, ProxyFactory
from conftest import write_credentials as write_file
from fake_upstream import FakeUpstream, Received
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from test_cli import base_env, proxy_process

from proxy import __version__
from proxy.ops.clock import ClockSkew
from proxy.serve import endpoints
from proxy.serve.server import ProxyService

TOKEN = "ops-token-5d1e8c2a"
WORK_KEY_ID = "WORKKEYID0000000WXYZ"
ROTATED_KEY_ID = "ROTATEDKEY000000QRST"
# Whatever must never appear in an answer of /-/ or in a log line.
LEAKS = (SECRET_B64, KEY_ID, WORK_KEY_ID, ROTATED_KEY_ID, DEVELOPER_KEY, TOKEN, repr(SECRET))
GENERATED_ID = re.compile(r"[0-9a-f]{16}")
ACCESS_FIELDS = ("method", "path", "status", "bytes_in", "bytes_out", "ms", "upstream_ms")
STANDARD_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
# Methods aiohttp's own parser accepts besides the standard ones: a label each would be unbounded.
ODD_METHODS = ("PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "REPORT")


def credentials_text(dev_key: bool = True) -> str:
    developer = f"R3_DEVELOPER_API_KEY={DEVELOPER_KEY}\n" if dev_key else ""
    return (
        f"[DEFAULT]\nR3_ACCESS_KEY_ID={KEY_ID}\nR3_SECRET_ACCESS_KEY={SECRET_B64}\n{developer}"
        f"[work]\nR3_ACCESS_KEY_ID={WORK_KEY_ID}\nR3_SECRET_ACCESS_KEY={SECRET_B64}\n"
    )


@pytest.fixture
def credentials_file(tmp_path: Path) -> Path:
    """With a developer key and a second profile, so that both can be looked for in outputs."""
    return write_file(tmp_path / "credentials", credentials_text())


@pytest.fixture
async def upstream(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> FakeUpstream:
    fake = FakeUpstream(keys={KEY_ID: SECRET, WORK_KEY_ID: SECRET})
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("")).rstrip("/")
    return fake


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Everything the proxy logs, whatever level an earlier in-process run left it at."""
    caplog.set_level(logging.DEBUG, logger="proxy")
    return caplog


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


async def fetch(
    client: ProxyClient, method: str, target: str, **kwargs: Any
) -> tuple[int, bytes, dict[str, str]]:
    async with client.request(method, target, **kwargs) as response:
        return response.status, await response.read(), dict(response.headers)


async def get_json(client: ProxyClient, target: str, **kwargs: Any) -> tuple[int, Any]:
    status, body, headers = await fetch(client, "GET", target, **kwargs)
    assert headers["Content-Type"].startswith("application/json"), headers
    return status, json.loads(body)


async def health(client: ProxyClient) -> dict[str, Any]:
    status, body = await get_json(client, "/-/health")
    assert status == 200
    assert isinstance(body, dict)
    return body


async def scrape(client: ProxyClient) -> list[Sample]:
    status, body, headers = await fetch(client, "GET", "/-/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert_no_leak(body.decode())
    return [s for f in text_string_to_metric_families(body.decode()) for s in f.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    found = [s.value for s in samples if s.name == name and labels.items() <= s.labels.items()]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def assert_no_leak(text: str) -> None:
    for leak in LEAKS:
        assert leak not in text, leak


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The fields of each access line (INFO: own endpoints log at DEBUG), plus its text."""
    records = [r for r in caplog.records if r.name == "proxy.access" and r.levelno >= logging.INFO]
    return [{**vars(r)["fields"], "line": r.getMessage()} for r in records]


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


# --- /-/health, /-/ready, /-/metrics ---------------------------------------------------------


async def test_health_reports_what_an_operator_checks_first(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    before = time.time()
    client = await make_proxy(token=TOKEN)
    status, body, headers = await fetch(client, "GET", "/-/health")  # no token
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert_no_leak(body.decode())
    data = json.loads(body)
    assert data["status"] == "ok"
    assert data["version"] == __version__
    assert data["profile"] == "DEFAULT"
    assert data["key_id"] == "*" * (len(KEY_ID) - 4) + KEY_ID[-4:]
    assert data["upstream"] == upstream.url
    assert data["clock_offset_seconds"] == 0 and data["clock_correction"] is False
    loaded = datetime.fromisoformat(data["credentials_loaded_at"]).timestamp()
    assert math.floor(before) - 1 <= loaded <= time.time() + 1
    async with client.head("/-/health") as response:
        assert response.status == 200
    assert upstream.received == []


async def test_health_follows_profile_and_reloaded_credentials(
    make_proxy: ProxyFactory, credentials_file: Path
) -> None:
    client = await make_proxy(profile="work")
    data = await health(client)
    assert data["profile"] == "work"
    assert data["key_id"] == "*" * 16 + "WXYZ"
    watcher = client.service.watcher
    watcher.loaded_at = 1_700_000_000.0
    assert (await health(client))["credentials_loaded_at"] == "2023-11-14T22:13:20+00:00"

    text = credentials_text().replace(WORK_KEY_ID, ROTATED_KEY_ID)
    write_file(credentials_file, text)
    assert watcher.reload("test")
    data = await health(client)
    assert data["key_id"] == "*" * 16 + "QRST"
    loaded = datetime.fromisoformat(data["credentials_loaded_at"]).timestamp()
    assert abs(loaded - time.time()) < 5
    assert_no_leak(json.dumps(data))


async def test_ready_until_draining(make_proxy: ProxyFactory, upstream: FakeUpstream) -> None:
    client = await make_proxy(token=TOKEN)
    service = client.service
    assert await get_json(client, "/-/ready") == (200, {"status": "ready"})

    service.state.draining = True
    status, body = await get_json(client, "/-/ready")
    assert status == 503 and body["error"]["code"] == "not_ready"
    assert (await health(client))["status"] == "ok"  # still alive: liveness is not readiness
    service.state.draining = False
    assert (await get_json(client, "/-/ready"))[0] == 200

    # Not started yet (no upstream session): not ready either.
    fresh = ProxyService(service.settings, service.watcher.current, environ={})
    assert endpoints.ready(fresh.state).status == 503
    # stop() marks the proxy as draining before it closes anything.
    await service.stop()
    assert service.state.draining
    assert endpoints.ready(service.state).status == 503
    assert upstream.received == []


async def test_metrics_count_requests_durations_reloads_and_offset(
    make_proxy: ProxyFactory, upstream: FakeUpstream, credentials_file: Path
) -> None:
    client = await make_proxy(token=TOKEN)
    for _ in range(2):
        assert (await fetch(client, "GET", "/graphql/v1", headers=auth()))[0] == 200
    assert (await fetch(client, "POST", "/graphql/v1", data=b"{}", headers=auth()))[0] == 200
    assert (await fetch(client, "GET", "/graphql/v1"))[0] == 401  # refused: no token
    client.service.watcher.reload("test")
    write_file(credentials_file, "[DEFAULT]\nR3_ACCESS_KEY_ID=X\n")
    client.service.watcher.reload("test")
    client.service.watcher.reload("test")

    samples = await scrape(client)  # no token needed
    requests = "remoteit_proxy_requests_total"
    assert value(samples, requests, method="GET", status="200") == 2
    assert value(samples, requests, method="POST", status="200") == 1
    assert value(samples, requests, method="GET", status="401") == 1
    assert value(samples, "remoteit_proxy_request_duration_seconds_count") == 4
    assert value(samples, "remoteit_proxy_request_duration_seconds_bucket", le="+Inf") == 4
    # The refused request never reached the upstream.
    assert value(samples, "remoteit_proxy_upstream_duration_seconds_count") == 3
    assert value(samples, "remoteit_proxy_upstream_duration_seconds_sum") > 0
    assert value(samples, "remoteit_proxy_in_flight_requests") == 0
    reloads = "remoteit_proxy_credential_reloads_total"
    assert value(samples, reloads, result="success") == 1
    assert value(samples, reloads, result="error") == 2
    assert value(samples, "remoteit_proxy_clock_offset_seconds") == 0

    # Scrapes and probes are not traffic.
    await health(client)
    again = await scrape(client)
    assert value(again, "remoteit_proxy_request_duration_seconds_count") == 4
    assert len(upstream.received) == 3


async def test_metrics_show_requests_in_flight(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    release = asyncio.Event()

    async def held(request: web.Request, received: Received) -> web.StreamResponse:
        await release.wait()
        return web.json_response({})

    upstream.respond = held
    client = await make_proxy()
    pending = [asyncio.create_task(fetch(client, "GET", f"/slow/{i}")) for i in range(2)]
    try:
        await wait_for(lambda: len(upstream.received) == 2)
        assert value(await scrape(client), "remoteit_proxy_in_flight_requests") == 2
    finally:
        release.set()
    assert [status for status, _, _ in await asyncio.gather(*pending)] == [200, 200]
    assert value(await scrape(client), "remoteit_proxy_in_flight_requests") == 0


async def test_metrics_count_upstream_errors_by_reason(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    unreachable = await make_proxy(upstream=f"http://127.0.0.1:{closed}")
    for _ in range(2):
        assert (await fetch(unreachable, "GET", "/graphql/v1"))[0] == 502
    samples = await scrape(unreachable)
    errors = "remoteit_proxy_upstream_errors_total"
    assert value(samples, errors, reason="upstream_unreachable") == 2
    assert value(samples, "remoteit_proxy_requests_total", method="GET", status="502") == 2
    assert value(samples, "remoteit_proxy_upstream_duration_seconds_count") == 0

    release = asyncio.Event()

    async def stuck(request: web.Request, received: Received) -> web.StreamResponse:
        await release.wait()
        return web.json_response({})

    upstream.respond = stuck
    slow = await make_proxy(read_timeout="0.2")
    try:
        assert (await fetch(slow, "GET", "/graphql/v1"))[0] == 504
    finally:
        release.set()
    samples = await scrape(slow)  # each proxy has its own registry
    assert value(samples, errors, reason="upstream_timeout") == 1
    assert not [s for s in samples if s.labels.get("reason") == "upstream_unreachable"]


async def test_metric_labels_stay_bounded(make_proxy: ProxyFactory, upstream: FakeUpstream) -> None:
    client = await make_proxy()
    ids = [f"dev{i:04d}x" for i in range(40)]
    methods = ["GET", "POST", "PUT", "DELETE", *ODD_METHODS]
    for i, device in enumerate(ids):
        method = methods[i % len(methods)]
        target = f"/devices/{device}/sessions/{i}?user={device}&id={i}"
        assert (await fetch(client, method, target))[0] == 200

    samples = await scrape(client)
    requests = [s for s in samples if s.name == "remoteit_proxy_requests_total"]
    assert {s.labels["method"] for s in requests} == {"GET", "POST", "PUT", "DELETE", "other"}
    assert sum(s.value for s in requests) == len(ids)
    assert len(requests) == 5  # one series per (method, status), however many paths
    allowed = {"method", "status", "reason", "result", "le"}
    for sample in samples:
        assert set(sample.labels) <= allowed, sample
        for label in sample.labels.values():
            assert "/" not in label and not any(device in label for device in ids), sample
    assert all(s.labels["method"] in STANDARD_METHODS | {"other"} for s in requests)


async def test_own_paths_need_no_token_and_are_never_forwarded(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    client = await make_proxy(token=TOKEN)
    for path in ("/-/health", "/-/ready", "/-/metrics", "/-/health?verbose=1"):
        status, body, _ = await fetch(client, "GET", path)
        assert status == 200, path
        assert_no_leak(body.decode())
        # A wrong token does not matter either: these paths do not look at it.
        wrong = {"Authorization": "Bearer not-the-token"}
        assert (await fetch(client, "GET", path, headers=wrong))[0] == 200

    for path in ("/-/x", "/-/", "/-/health/", "/-/metrics/extra", "/-/graphql/v1"):
        status, body = await get_json(client, path, headers=auth())
        assert status == 404, path
        assert body["error"]["code"] == "not_found"
    for method, path in (("POST", "/-/health"), ("PUT", "/-/metrics"), ("DELETE", "/-/ready")):
        status, body, headers = await fetch(client, method, path, data=b"{}")
        assert status == 405, (method, path)
        assert headers["Allow"] == "GET, HEAD"
        assert json.loads(body)["error"]["code"] == "method_not_allowed"
    assert upstream.received == []
    assert (await fetch(client, "GET", "/graphql/v1"))[0] == 401  # the rest does need it


# --- the access log and request ids ---------------------------------------------------------

BODY_MARKER = "BODY-MARKER-3c4a"
HEADER_MARKER = "HEADER-MARKER-9f0b"
QUERY_MARKER = "QUERY-MARKER-77e1"
RESPONSE_MARKER = "RESPONSE-MARKER-e2d4"


async def test_one_access_line_per_request_with_exact_sizes(
    make_proxy: ProxyFactory, upstream: FakeUpstream, logs: pytest.LogCaptureFixture
) -> None:
    down = (RESPONSE_MARKER * 1000).encode()[:5000]

    async def slow_chunked(request: web.Request, received: Received) -> web.StreamResponse:
        await asyncio.sleep(0.15)
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        for start in range(0, len(down), 1024):
            await response.write(down[start : start + 1024])
        await response.write_eof()
        return response

    upstream.respond = slow_chunked
    client = await make_proxy()
    up = (BODY_MARKER * 200).encode()[:1234]
    async with client.post(
        f"/graphql/v1?q={QUERY_MARKER}", data=up, headers={"X-Custom": HEADER_MARKER}
    ) as response:
        assert response.status == 200
        assert await response.read() == down
        returned_id = response.headers["X-Request-Id"]

    async def chunks() -> AsyncIterator[bytes]:
        for size in (100, 200, 300):
            yield b"c" * size

    async with client.request("PUT", "/graphql/v1", data=chunks()) as response:
        assert response.status == 200 and len(await response.read()) == 5000
    assert upstream.received[-1].body_size == 600

    first, second = access_lines(logs)  # one line per request, no more
    assert first["method"] == "POST" and first["path"] == "/graphql/v1"
    assert first["status"] == 200
    assert (first["bytes_in"], first["bytes_out"]) == (1234, 5000)
    assert first["upstream_ms"] >= 140  # the upstream took 150 ms to answer
    assert first["ms"] >= first["upstream_ms"]
    assert first["request_id"] == returned_id == upstream.received[0].header("X-Request-Id")
    assert "POST /graphql/v1 200 in=1234 out=5000 " in first["line"]
    assert f"id={returned_id}" in first["line"]
    assert (second["method"], second["bytes_in"], second["bytes_out"]) == ("PUT", 600, 5000)
    assert second["request_id"] != first["request_id"]

    # Neither header values nor bodies nor the query reach any log line.
    everything = logs.text + json.dumps(access_lines(logs))
    for marker in (BODY_MARKER, HEADER_MARKER, QUERY_MARKER, RESPONSE_MARKER):
        assert marker not in everything
    assert_no_leak(everything)


async def test_request_id_generated_sent_upstream_and_returned(
    make_proxy: ProxyFactory, upstream: FakeUpstream, logs: pytest.LogCaptureFixture
) -> None:
    client = await make_proxy(token=TOKEN)
    ids = []
    for _ in range(2):
        async with client.get("/graphql/v1", headers=auth()) as response:
            assert response.status == 200
            ids.append(response.headers["X-Request-Id"])
    assert all(GENERATED_ID.fullmatch(i) for i in ids) and ids[0] != ids[1]
    assert [r.header("X-Request-Id") for r in upstream.received] == ids

    # Refused by the proxy itself: still an id, returned and logged, and no upstream hints.
    async with client.get("/graphql/v1") as response:
        assert response.status == 401
        ids.append(response.headers["X-Request-Id"])
    lines = access_lines(logs)
    assert [line["request_id"] for line in lines] == ids
    assert lines[-1]["upstream_ms"] is None and "hint" not in lines[-1]


async def test_client_request_id_is_kept(
    make_proxy: ProxyFactory, upstream: FakeUpstream, logs: pytest.LogCaptureFixture
) -> None:
    client = await make_proxy()
    mine = "client-4f2:trace/7~ok"
    async with client.get("/graphql/v1", headers={"X-Request-Id": mine}) as response:
        assert response.status == 200
        assert response.headers.getall("X-Request-Id") == [mine]
    assert upstream.received[-1].header("X-Request-Id") == mine  # exactly once
    assert access_lines(logs)[-1]["request_id"] == mine


@pytest.mark.parametrize("given", ["has spaces in it", "x" * 129, "caf\u00e9"])
async def test_unusable_client_request_id_is_replaced(
    make_proxy: ProxyFactory, logs: pytest.LogCaptureFixture, given: str
) -> None:
    client = await make_proxy()
    async with client.get("/graphql/v1", headers={"X-Request-Id": given}) as response:
        assert response.status == 200
        returned = response.headers["X-Request-Id"]
    assert GENERATED_ID.fullmatch(returned)
    assert access_lines(logs)[-1]["request_id"] == returned


@pytest.mark.parametrize(
    "given",
    [
        [("X-Request-Id", "has spaces in it")],
        [("X-Request-Id", "x" * 129)],
        [("X-Request-Id", "first-id"), ("X-Request-Id", "second-id")],
    ],
    ids=["spaces", "too-long", "twice"],
)
async def test_replaced_request_id_is_the_one_sent_upstream(
    make_proxy: ProxyFactory, upstream: FakeUpstream, given: list[tuple[str, str]]
) -> None:
    client = await make_proxy()
    async with client.get("/graphql/v1", headers=given) as response:
        assert response.status == 200
        returned = response.headers["X-Request-Id"]
    assert upstream.received[-1].header("X-Request-Id") == returned  # once, and the same


async def test_json_log_format_of_the_real_command(upstream: FakeUpstream, tmp_path: Path) -> None:
    path = write_file(tmp_path / "credentials", credentials_text())
    args = ("--listen", "127.0.0.1:0", "--upstream", upstream.url, "--credentials", str(path))
    async with (
        proxy_process(*args, "--log-format", "json", env=base_env(tmp_path)) as running,
        aiohttp.ClientSession() as session,
    ):
        async with session.post(
            f"{running.url}/graphql/v1?q={QUERY_MARKER}",
            data=BODY_MARKER.encode(),
            headers={"X-Custom": HEADER_MARKER, "X-Request-Id": "json-test-1"},
        ) as response:
            assert response.status == 200
            size = len(await response.read())
        async with session.get(running.url + "/-/health") as response:
            assert response.status == 200
    lines = [line for line in running.lines if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line, start-up and shutdown too
    assert all(
        isinstance(e, dict) and {"time", "level", "logger", "message"} <= e.keys() for e in entries
    )
    access = [e for e in entries if e["logger"] == "proxy.access"]
    assert len(access) == 1
    line = access[0]
    assert set(ACCESS_FIELDS) | {"request_id"} <= line.keys()
    assert (line["method"], line["path"], line["status"]) == ("POST", "/graphql/v1", 200)
    assert (line["bytes_in"], line["bytes_out"]) == (len(BODY_MARKER), size)
    assert line["request_id"] == "json-test-1"
    assert isinstance(line["ms"], float) and isinstance(line["upstream_ms"], float)
    output = "".join(lines)
    for marker in (BODY_MARKER, HEADER_MARKER, QUERY_MARKER):
        assert marker not in output
    assert_no_leak(output)


# --- clock skew ------------------------------------------------------------------------------


def skew_upstream(upstream: FakeUpstream, seconds: float) -> None:
    upstream.clock = lambda: time.time() + seconds
    upstream.max_skew = 60


async def statuses(client: ProxyClient, count: int) -> list[int]:
    return [(await fetch(client, "GET", "/graphql/v1"))[0] for _ in range(count)]


def clock_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "proxy.clock" and r.levelno == logging.WARNING
    ]


async def assert_offset_shown(client: ProxyClient, offset: float, correcting: bool) -> None:
    data = await health(client)
    assert abs(data["clock_offset_seconds"] - offset) <= 2, data
    assert data["clock_correction"] is correcting
    gauge = value(await scrape(client), "remoteit_proxy_clock_offset_seconds")
    assert abs(gauge - offset) <= 2


async def test_clock_skew_is_corrected_after_the_first_answer(
    make_proxy: ProxyFactory, upstream: FakeUpstream, logs: pytest.LogCaptureFixture
) -> None:
    skew_upstream(upstream, 120)
    client = await make_proxy()
    results = await statuses(client, 6)
    assert results[0] in (200, 401)
    assert results[1:] == [200] * 5, results
    assert all(r.verified for r in upstream.received[1:])
    # This machine's clock minus the API's: the API is 2 minutes ahead, so -120.
    await assert_offset_shown(client, -120, correcting=True)
    warnings = clock_warnings(logs)
    assert len(warnings) == 1, warnings
    assert "corrected" in warnings[0] and "-12" in warnings[0]
    assert_no_leak(logs.text)


async def test_the_first_request_on_a_skewed_machine_is_repaired_and_answered(
    make_proxy: ProxyFactory, upstream: FakeUpstream, logs: pytest.LogCaptureFixture
) -> None:
    # Before the clock self-repair, the first request after start was refused 401.
    skew_upstream(upstream, 120)
    client = await make_proxy(retries="0")  # the repair is not a retry: it works without them
    assert await statuses(client, 2) == [200, 200]
    first, second = access_lines(logs)
    assert "attempts=2" in first["line"] and "attempts=" not in second["line"]
    # Sent twice, each signed on its own: the Date of the resend is the API's time.
    refused, repaired = upstream.received[:2]
    assert (refused.verified, refused.reason, repaired.verified) == (False, "stale date", True)
    assert (
        abs(parsedate_to_datetime(repaired.header("Date") or "").timestamp() - upstream.clock()) < 3
    )
    assert value(await scrape(client), "remoteit_proxy_upstream_retries_total", reason="clock") == 1
    assert len(upstream.received) == 3


async def test_a_request_is_repaired_once_only(
    make_proxy: ProxyFactory, upstream: FakeUpstream, logs: pytest.LogCaptureFixture
) -> None:
    # A skewed clock and a key the API does not know: corrected and sent once more, refused
    # again for the key, and passed on; never a loop.
    skew_upstream(upstream, 120)
    upstream.keys = {"SOMEONEELSE000000000": b"another secret, 16 bytes or more"}
    client = await make_proxy()
    assert await statuses(client, 1) == [401]
    assert [r.reason for r in upstream.received] == ["unknown keyId", "unknown keyId"]
    assert "attempts=2" in access_lines(logs)[0]["line"]


async def test_correction_stops_when_the_upstream_clock_is_right_again(
    make_proxy: ProxyFactory, upstream: FakeUpstream, logs: pytest.LogCaptureFixture
) -> None:
    skew_upstream(upstream, 120)
    client = await make_proxy()
    assert (await statuses(client, 3))[1:] == [200, 200]
    upstream.clock = time.time
    results = await statuses(client, 8)
    # The change is seen from the first refusal on; a few refusals at most, then all pass.
    first_pass = results.index(200)
    assert first_pass <= 2, results
    assert results[first_pass:] == [200] * (8 - first_pass), results
    await assert_offset_shown(client, 0, correcting=False)
    warnings = clock_warnings(logs)
    assert len(warnings) == 2, warnings
    assert "no longer correcting" in warnings[1]


async def test_without_correction_requests_fail_and_the_offset_is_measured(
    make_proxy: ProxyFactory, upstream: FakeUpstream, logs: pytest.LogCaptureFixture
) -> None:
    skew_upstream(upstream, -120)
    client = await make_proxy(no_clock_correction="true")
    assert await statuses(client, 4) == [401] * 4
    assert [r.reason for r in upstream.received] == ["stale date"] * 4
    await assert_offset_shown(client, 120, correcting=False)
    assert not any("corrected" in w for w in clock_warnings(logs))
    lines = access_lines(logs)
    assert len(lines) == 4
    for line in lines:
        hint = line["hint"]
        assert "likely causes: " + hint in line["line"]
        assert "clock is +12" in hint  # this machine is 2 minutes ahead of the API
        causes = hint.split("; ")
        assert "clock" in causes[0], causes  # most likely first
        assert "profile" in causes[-2] and "disabled" in causes[-1], causes
        assert_no_leak(hint)


async def test_refusal_hints_without_a_clock_problem(
    make_proxy: ProxyFactory, upstream: FakeUpstream, logs: pytest.LogCaptureFixture
) -> None:
    async def forbidden(request: web.Request, received: Received) -> web.StreamResponse:
        return web.json_response({"message": "Forbidden"}, status=403)

    upstream.respond = forbidden
    client = await make_proxy()
    assert await statuses(client, 1) == [403]
    assert len(upstream.received) == 1  # the clock is right: a refusal is not sent again
    hint = access_lines(logs)[-1]["hint"]
    assert "clock" not in hint
    assert hint.index("profile") < hint.index("disabled")
    assert_no_leak(hint)


async def test_a_rest_refusal_without_a_developer_key_says_so_first(
    make_proxy: ProxyFactory,
    upstream: FakeUpstream,
    logs: pytest.LogCaptureFixture,
    credentials_file: Path,
) -> None:
    async def forbidden(request: web.Request, received: Received) -> web.StreamResponse:
        return web.json_response({"message": "Forbidden"}, status=403)

    upstream.respond = forbidden
    work = await make_proxy(profile="work")  # [work] has no R3_DEVELOPER_API_KEY
    assert (await fetch(work, "GET", "/apv/v27/device/list/all"))[0] == 403
    first = access_lines(logs)[-1]["hint"].split("; ")[0]
    assert first.startswith("the profile [work] has no developer key, which REST requests need")
    assert f"add R3_DEVELOPER_API_KEY to it in {credentials_file}" in first
    assert "remoteit-proxy configure --profile work --force" in first
    assert_no_leak(first)
    # GraphQL needs no developer key; the default profile has one: neither hint names it.
    assert (await fetch(work, "POST", "/graphql/v1", data=b"{}"))[0] == 403
    assert "developer key" not in access_lines(logs)[-1]["hint"]
    default = await make_proxy()
    assert (await fetch(default, "GET", "/apv/v27/device/list/all"))[0] == 403
    assert "developer key" not in access_lines(logs)[-1]["hint"]
    # Nor a named upstream's: what another upstream needs is not known.
    config = credentials_file.parent / "proxy.ini"
    config.write_text(f"[upstream.other]\nurl = {upstream.url}\n")
    named = await make_proxy(profile="work", config=str(config))
    assert (await fetch(named, "GET", "/-/to/other/apv/v27/device/list/all"))[0] == 403
    assert "developer key" not in access_lines(logs)[-1]["hint"]


async def test_a_rest_refusal_with_the_key_from_the_environment_says_to_set_the_variable(
    make_proxy: ProxyFactory, upstream: FakeUpstream, logs: pytest.LogCaptureFixture
) -> None:
    upstream.keys = {KEY_ID: b"another secret, 16 bytes or more"}
    environ = {"R3_ACCESS_KEY_ID": KEY_ID, "R3_SECRET_ACCESS_KEY": SECRET_B64}
    client = await make_proxy(environ=environ)
    assert (await fetch(client, "GET", "/apv/v27/device/list/all"))[0] == 401
    first = access_lines(logs)[-1]["hint"].split("; ")[0]
    assert first == (
        "the key from the environment has no developer key, which REST requests need: set "
        "R3_DEVELOPER_API_KEY too"
    )


async def test_a_401_names_a_secret_that_is_not_the_key_id_s(
    make_proxy: ProxyFactory, upstream: FakeUpstream, logs: pytest.LogCaptureFixture
) -> None:
    # A well-formed secret, but another key's: the API answers 401.
    upstream.keys = {KEY_ID: b"another secret, 16 bytes or more"}
    client = await make_proxy()
    assert await statuses(client, 1) == [401]
    causes = access_lines(logs)[-1]["hint"].split("; ")
    assert "the secret does not belong to this key id" in causes[0], causes
    assert "R3_SECRET_ACCESS_KEY" in causes[0]
    assert "profile" in causes[-2] and "disabled" in causes[-1], causes
    assert "secret does not belong" not in ClockSkew(5).refusal_hints(403)


# --- ClockSkew with a fake clock --------------------------------------------------------------


class FakeClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def exchange(
    skew: ClockSkew, clock: FakeClock, offset: float, up: float = 0.0, down: float = 0.0
) -> None:
    """One request and answer: the upstream, ``offset`` ahead, dates its answer on arrival."""
    sent = clock.now
    date = formatdate(sent + up + offset, usegmt=True)  # whole seconds, truncated
    clock.now += up + down
    skew.observe(date, sent, clock.now)


def settled(offset: float, seed: int = 1, **kwargs: Any) -> tuple[ClockSkew, FakeClock]:
    """A ClockSkew that has seen 30 answers from an upstream ``offset`` seconds ahead."""
    rng, clock = random.Random(seed), FakeClock()
    skew = ClockSkew(5.0, clock=clock, **kwargs)
    for _ in range(30):
        clock.now += rng.uniform(0.5, 3.0)  # answers at every fraction of a second
        exchange(skew, clock, offset, up=rng.uniform(0.0, 0.2), down=rng.uniform(0.0, 0.2))
    return skew, clock


def test_first_answer_is_taken_at_the_midpoint_of_the_request() -> None:
    clock = FakeClock(1000.0)
    skew = ClockSkew(5.0, clock=clock)
    assert (skew.offset, skew.now()) == (0, 1000.0)
    # Sent at 1000, answered at 1010; the upstream wrote 10:55 (it is 50 s ahead) half way.
    skew.observe(formatdate(1055, usegmt=True), sent=1000.0, received=1010.0)
    assert skew.estimate == 50.5  # + half a second: the Date was truncated to the second
    assert skew.offset == -50  # this machine is behind the API (50.5 rounds to even)
    assert skew.correcting and skew.now() == 1000.0 - skew.offset


def test_slow_symmetric_exchanges_do_not_bias_the_estimate() -> None:
    clock = FakeClock()
    skew = ClockSkew(5.0, clock=clock)
    for step in range(25):
        clock.now += 1.37 + step * 0.01
        exchange(skew, clock, 30.0, up=2.0, down=2.0)  # 4 s round trips
    assert skew.estimate is not None and abs(skew.estimate - 30.0) < 0.4


def test_one_second_resolution_is_not_a_bias() -> None:
    # Truncation alone would put every sample 0 to 1 s low: 6.5 on average instead of 7.
    for seed in range(5):
        skew, _ = settled(7.0, seed=seed)
        assert skew.estimate is not None and abs(skew.estimate - 7.0) < 0.4, seed
        assert skew.offset == -7


def test_noise_neither_moves_the_offset_nor_toggles_correction(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="proxy")
    rng, clock = random.Random(7), FakeClock()
    skew = ClockSkew(5.0, clock=clock)
    seen = []
    for _ in range(200):
        clock.now += rng.uniform(0.1, 5.0)
        # Latency from 1 ms to 1.5 s, either way independently: asymmetric, noisy.
        exchange(skew, clock, 120.0, up=rng.uniform(0.001, 1.5), down=rng.uniform(0.001, 1.5))
        seen.append(skew.offset)
    assert all(abs(offset + 120) <= 1 for offset in seen), seen
    assert len(clock_warnings(caplog)) == 1
    assert abs(skew.now() - (clock.now + 120)) <= 1


def test_correction_starts_and_stops_past_the_threshold_once_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="proxy")
    skew, clock = settled(4.0)  # within the threshold: measured, not corrected
    assert skew.offset == -4 and not skew.correcting and skew.now() == clock.now
    for _ in range(10):
        clock.now += 1.3
        exchange(skew, clock, -90.0)
    assert skew.correcting and skew.offset == 90 and skew.now() == clock.now - 90
    for _ in range(10):
        clock.now += 1.3
        exchange(skew, clock, 0.0)
    assert not skew.correcting and skew.offset == 0 and skew.now() == clock.now
    warnings = clock_warnings(caplog)
    assert len(warnings) == 2, warnings
    assert "+90 s off" in warnings[0] and "no longer correcting" in warnings[1]


def test_without_correction_the_offset_is_still_measured(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="proxy")
    skew, clock = settled(120.0, correct=False)
    assert skew.offset == -120 and not skew.correcting and skew.now() == clock.now
    assert clock_warnings(caplog) == []
    hints = skew.refusal_hints(403).split("; ")
    assert "clock is -120 s off" in hints[0]
    assert "profile" in hints[1] and "disabled" in hints[2]


@pytest.mark.parametrize("date", [None, "", "yesterday", "Mon, 99 Foo 2026 99:99:99 GMT"])
def test_missing_or_unreadable_dates_are_ignored(date: str | None) -> None:
    skew, clock = settled(30.0)
    before = skew.estimate
    skew.observe(date, clock.now, clock.now)
    assert skew.estimate == before


@pytest.mark.parametrize(
    "age",
    [
        3,
        30,
        600,
    ],
)
def test_a_single_old_date_moves_the_estimate_little(
    caplog: pytest.LogCaptureFixture, age: int
) -> None:
    """One answer with an old Date (e.g. served from a cache) among good ones."""
    caplog.set_level(logging.DEBUG, logger="proxy")
    skew, clock = settled(0.0)
    assert skew.offset == 0 and not skew.correcting
    clock.now += 1.0
    skew.observe(formatdate(clock.now - age, usegmt=True), clock.now, clock.now)
    assert abs(skew.offset) <= 2, skew.estimate
    assert not skew.correcting and clock_warnings(caplog) == []
    exchange(skew, clock, 0.0)
    assert abs(skew.offset) <= 2 and not skew.correcting


async def test_own_endpoints_are_logged_at_debug_only(
    proxy: ProxyClient, logs: pytest.LogCaptureFixture
) -> None:
    async with proxy.get("/-/health") as response:
        assert response.status == 200
    records = [r for r in logs.records if r.name == "proxy.access"]
    assert [(r.levelno, r.getMessage().split(" ")[:3]) for r in records] == [
        (logging.DEBUG, ["GET", "/-/health", "200"])
    ]


def test_slow_exchanges_and_zoneless_dates_are_not_samples() -> None:
    clock = FakeClock(1000.0)
    skew = ClockSkew(5.0, clock=clock)
    # 40 s round trips: the midpoint could be 20 s off the moment the Date was written.
    skew.observe(formatdate(1040, usegmt=True), sent=1000.0, received=1040.0)
    skew.observe(formatdate(1081, usegmt=True), sent=1041.0, received=1081.0)
    assert skew.estimate is None and not skew.correcting
    # An asctime date has no zone: read as local time it would be hours off.
    skew.observe("Sun Nov  6 08:49:37 1994", sent=1000.0, received=1000.1)
    assert skew.estimate is None


async def test_a_client_leaving_while_its_small_body_is_read_is_not_an_error(
    proxy: ProxyClient, upstream: FakeUpstream, logs: pytest.LogCaptureFixture
) -> None:
    reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
    writer.write(b"POST /graphql/v1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n")
    writer.write(b"only ten b")
    await writer.drain()
    writer.close()
    await asyncio.sleep(0.3)
    assert upstream.received == []
    assert not [r for r in logs.records if r.levelno >= logging.WARNING], logs.records
    lines = access_lines(logs)
    assert [(line["status"], line["bytes_out"]) for line in lines] == [(499, 0)]
