"""Least privilege end to end: read-only mode, allow-lists, per-client tokens, audit lines."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
import logging
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from conftest import KEY_ID, SECRET, SECRET_B64, ProxyClient, ProxyFactory, write_credentials
from fake_upstream import FakeUpstream
from graphql import parse
from graphql.utilities import get_operation_ast
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from test_cli import base_env, run_failing
from test_graphql_ops import documents

from proxy.config.resolve import resolve
from proxy.serve.clients import load_profiles
from proxy.serve.server import ProxyService

WORK_KEY_ID = "WORKKEYID0000000WXYZ"
WORK_SECRET = b"the work account's own secret"
BACKUP_TOKEN = "backup-token-3b9f1c"
ADMIN_TOKEN = "admin-token-77a2e0"
DELETE = 'mutation Cleanup { deleteDevice(id: "x") { id } }'
LOGIN = "{ login { email } }"


@pytest.fixture
def two_accounts(credentials_file: Path, upstream: FakeUpstream) -> Path:
    """The credentials file with a second profile, [work], on another key the upstream knows."""
    upstream.keys[WORK_KEY_ID] = WORK_SECRET
    work = base64.b64encode(WORK_SECRET).decode()
    text = credentials_file.read_text() + f"[work]\nR3_ACCESS_KEY_ID={WORK_KEY_ID}\n"
    return write_credentials(credentials_file, text + f"R3_SECRET_ACCESS_KEY={work}\n")


def config(tmp_path: Path, text: str, **tokens: str) -> str:
    """A config file; ``tokens`` are written to files named after the client."""
    for name, token in tokens.items():
        (tmp_path / f"{name}.token").write_text(token + "\n")
        text = text.replace(f"@{name}", str(tmp_path / f"{name}.token"))
    path = tmp_path / "proxy.ini"
    path.write_text(text)
    return str(path)


async def gql(
    client: ProxyClient, payload: Any, token: str | None = None, **headers: str
) -> tuple[int, Any]:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    headers.setdefault("Content-Type", "application/json")
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    async with client.post("/graphql/v1", data=data, headers=headers) as response:
        return response.status, await response.json(content_type=None)


def denied(status: int, body: Any) -> str:
    assert status == 403, body
    assert body["error"]["code"] == "policy_denied"
    return str(body["error"]["message"])


def signed_by(upstream: FakeUpstream) -> str:
    received = upstream.last()  # asserts it was verified, independently of the proxy's signer
    match = re.search(r'keyId="([^"]+)"', received.header("Authorization") or "")
    assert match
    return match.group(1)


@pytest.fixture
async def read_only(make_proxy: ProxyFactory) -> ProxyClient:
    return await make_proxy(read_only="true")


async def test_read_only_passes_a_query_and_refuses_a_mutation_without_sending_it(
    read_only: ProxyClient, upstream: FakeUpstream
) -> None:
    assert (await gql(read_only, {"query": LOGIN}))[0] == 200
    assert len(upstream.received) == 1 and signed_by(upstream) == KEY_ID
    message = denied(*await gql(read_only, {"query": DELETE}))
    assert "mutation Cleanup: deleteDevice" in message and "read-only" in message
    assert len(upstream.received) == 1  # nothing more reached the upstream


@pytest.mark.parametrize(("name", "allowed"), [("A", True), ("B", False)])
async def test_only_the_selected_operation_counts(
    read_only: ProxyClient, upstream: FakeUpstream, name: str, allowed: bool
) -> None:
    document = "query A { login { email } } mutation B { deleteDevice(id: 1) { id } }"
    status, body = await gql(read_only, {"query": document, "operationName": name})
    assert (status == 200) is allowed, body
    assert len(upstream.received) == (1 if allowed else 0)


@pytest.mark.parametrize("operation_name", [None, "C"])
async def test_several_operations_need_a_known_operation_name(
    read_only: ProxyClient, upstream: FakeUpstream, operation_name: str | None
) -> None:
    document = "query A { login { email } } query B { login { id } }"
    status, body = await gql(read_only, {"query": document, "operationName": operation_name})
    assert status == 400 and body["error"]["code"] == "bad_graphql", body
    assert upstream.received == []


async def test_a_mutation_hidden_in_a_batch_refuses_the_batch(
    read_only: ProxyClient, upstream: FakeUpstream
) -> None:
    assert (await gql(read_only, [{"query": LOGIN}, {"query": LOGIN}]))[0] == 200
    denied(*await gql(read_only, [{"query": LOGIN}, {"query": DELETE}]))
    assert len(upstream.received) == 1


@pytest.mark.parametrize(
    "document",
    [
        'mutation { ...Cleanup } fragment Cleanup on Mutation { deleteDevice(id: "x") { id } }',
        'mutation { harmless: deleteDevice(id: "x") { id } }',
    ],
)
async def test_a_mutation_behind_a_fragment_or_an_alias_is_named_by_its_field(
    read_only: ProxyClient, upstream: FakeUpstream, document: str
) -> None:
    assert "deleteDevice" in denied(*await gql(read_only, {"query": document}))
    assert upstream.received == []


@pytest.mark.parametrize(
    "document",
    [
        "# mutation { deleteDevice }\n{ login { email } }",
        '{ login { devices(name: "mutation { deleteDevice }") { id } } }',
        '{ login { devices(name: """\nmutation {\n  deleteDevice\n}\n""") { id } } }',
        "query mutation { login { email } }",  # an operation named mutation is still a query
    ],
)
async def test_the_word_mutation_in_comments_strings_and_names_is_not_a_mutation(
    read_only: ProxyClient, upstream: FakeUpstream, document: str
) -> None:
    status, body = await gql(read_only, {"query": document})
    assert status == 200, body
    assert (
        upstream.last().body_sha256
        == hashlib.sha256(json.dumps({"query": document}).encode()).hexdigest()
    )  # the inspected body goes on byte for byte


async def test_get_with_a_query_string_is_inspected_too(
    read_only: ProxyClient, upstream: FakeUpstream
) -> None:
    async with read_only.get("/graphql/v1?query=mutation%20%7B%20deleteDevice%20%7D") as r:
        denied(r.status, await r.json())
    async with read_only.get("/graphql/v1?query=%7B%20login%20%7B%20email%20%7D%20%7D") as r:
        assert r.status == 200
    assert [received.method for received in upstream.received] == ["GET"]


async def test_an_application_graphql_body_and_other_spellings_of_the_path(
    read_only: ProxyClient, upstream: FakeUpstream
) -> None:
    headers = {"Content-Type": "application/graphql"}
    for path in (
        "/graphql/v1",
        "/GraphQL/v1/",
        "/graphql//v1",
        "/graphql/x/../v1",
        "/graphql%2Fv1",
    ):
        async with read_only.post(path, data=DELETE.encode(), headers=headers) as response:
            denied(response.status, await response.json())
    async with read_only.post("/graphql/v1", data=LOGIN.encode(), headers=headers) as response:
        assert response.status == 200
    assert len(upstream.received) == 1


async def test_rest_under_read_only(read_only: ProxyClient, upstream: FakeUpstream) -> None:
    async with read_only.request("DELETE", "/apv/v27/device/80:00:00:00:01:0A:BC:DE") as r:
        message = denied(r.status, await r.json())
    assert message.startswith("DELETE /apv/v27/device/80:00:00:00:01:0A:BC:DE is refused")
    async with read_only.post("/graphql/v1/file/upload", data=b"--x--") as r:
        # Below a GraphQL path (a mount serves those too): inspected as GraphQL, and refused.
        assert r.status == 400 and (await r.json())["error"]["code"] == "bad_graphql"
    async with read_only.get("/apv/v27/device/list/all") as r:
        assert r.status == 200
    assert [received.method for received in upstream.received] == ["GET"]


async def test_an_unparsable_document_is_refused_only_when_a_policy_looks(
    make_proxy: ProxyFactory, read_only: ProxyClient, upstream: FakeUpstream
) -> None:
    status, body = await gql(read_only, {"query": "{ login { "})
    assert status == 400 and body["error"]["code"] == "bad_graphql"
    status, body = await gql(read_only, b'{"query": ')
    assert status == 400 and body["error"]["code"] == "bad_graphql"
    assert upstream.received == []
    plain = await make_proxy()  # no policy: bodies are not parsed, they stream as before
    assert (await gql(plain, {"query": "{ login { "}))[0] == 200


async def test_a_body_over_the_buffer_limit_is_413_under_a_policy(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    client = await make_proxy(read_only="true", max_buffered_body="1KiB")
    status, body = await gql(client, {"query": LOGIN + " " * 2000})
    assert status == 413 and body["error"]["code"] == "body_too_large"
    assert upstream.received == []


# --- clients ---------------------------------------------------------------------------


CLIENTS = """
[proxy]
[client.backup]
token_file = @backup
profile = work
read_only = true

[client.admin]
token_file = @admin
"""


@pytest.fixture
async def clients(make_proxy: ProxyFactory, two_accounts: Path, tmp_path: Path) -> ProxyClient:
    path = config(tmp_path, CLIENTS, backup=BACKUP_TOKEN, admin=ADMIN_TOKEN)
    return await make_proxy(config=path, credentials=str(two_accounts))


async def test_two_clients_sign_with_their_own_profiles_keys(
    clients: ProxyClient, upstream: FakeUpstream
) -> None:
    assert (await gql(clients, {"query": LOGIN}, BACKUP_TOKEN))[0] == 200
    assert signed_by(upstream) == WORK_KEY_ID
    assert (await gql(clients, {"query": DELETE}, ADMIN_TOKEN))[0] == 200
    assert signed_by(upstream) == KEY_ID
    denied(*await gql(clients, {"query": DELETE}, BACKUP_TOKEN))  # backup is read-only
    assert len(upstream.received) == 2


@pytest.mark.parametrize("token", [None, "not-a-client", ADMIN_TOKEN + "x", ADMIN_TOKEN[:-1]])
async def test_no_token_or_an_unknown_one_is_401(
    clients: ProxyClient, upstream: FakeUpstream, token: str | None
) -> None:
    status, body = await gql(clients, {"query": LOGIN}, token)
    assert status == 401 and body["error"]["code"] == "unauthorized"
    assert upstream.received == []


async def test_the_proxy_token_of_a_client_is_never_forwarded(
    clients: ProxyClient, upstream: FakeUpstream
) -> None:
    await gql(clients, {"query": LOGIN}, ADMIN_TOKEN)
    assert ADMIN_TOKEN not in json.dumps(upstream.last().headers)


ALLOW_LISTS = """
[client.reader]
token_file = @reader
graphql_query = login
graphql_mutation = none
rest = GET /apv/v27/device/*
       HEAD /apv/v27/device/*
"""


@pytest.fixture
async def lists(make_proxy: ProxyFactory, tmp_path: Path) -> ProxyClient:
    return await make_proxy(config=config(tmp_path, ALLOW_LISTS, reader=BACKUP_TOKEN))


async def test_graphql_allow_lists_by_root_field(
    lists: ProxyClient, upstream: FakeUpstream
) -> None:
    assert (await gql(lists, {"query": "{ login { email } __typename }"}, BACKUP_TOKEN))[0] == 200
    message = denied(*await gql(lists, {"query": "{ devices { id } }"}, BACKUP_TOKEN))
    assert "query field devices is refused" in message and "graphql_query" in message
    denied(*await gql(lists, {"query": DELETE}, BACKUP_TOKEN))  # graphql_mutation = none
    message = denied(*await gql(lists, {"query": "subscription { events }"}, BACKUP_TOKEN))
    assert "no graphql_subscription list" in message
    assert len(upstream.received) == 1


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/apv/v27/device/list/all", True),
        ("HEAD", "/apv/v27/device/x", True),
        ("POST", "/apv/v27/device/list/all", False),
        ("GET", "/apv/v27/user/list", False),
        ("GET", "/apv/v27/device/../user/delete", False),
        ("GET", "/apv/v27/device/%2e%2e/user", False),
        ("GET", "/apv/v27/device/x%2F..%2Fuser", False),
    ],
)
async def test_rest_rules_are_globs_on_the_raw_path(
    lists: ProxyClient, upstream: FakeUpstream, method: str, path: str, allowed: bool
) -> None:
    auth = {"Authorization": f"Bearer {BACKUP_TOKEN}"}
    async with lists.request(method, path, headers=auth) as response:
        assert (response.status == 200) is allowed, (response.status, await response.text())
    assert len(upstream.received) == int(allowed)


@pytest.mark.parametrize(
    ("settings", "forwarded"),
    [({}, True), ({"read_only": "true"}, False)],
)
async def test_x_r3_user_is_stripped_under_a_policy(
    make_proxy: ProxyFactory, upstream: FakeUpstream, settings: dict[str, str], forwarded: bool
) -> None:
    client = await make_proxy(**settings)
    await gql(client, {"query": LOGIN}, **{"X-R3-User": "someone@example.com"})
    assert (upstream.last().header("X-R3-User") is not None) is forwarded


async def test_x_r3_user_is_kept_when_the_client_may_act_as_another_user(
    make_proxy: ProxyFactory, upstream: FakeUpstream, tmp_path: Path
) -> None:
    text = "[client.ops]\ntoken_file = @ops\nread_only = true\nallow_user_header = true\n"
    client = await make_proxy(config=config(tmp_path, text, ops=ADMIN_TOKEN))
    await gql(client, {"query": LOGIN}, ADMIN_TOKEN, **{"X-R3-User": "someone@example.com"})
    assert upstream.last().header("X-R3-User") == "someone@example.com"


# --- audit -----------------------------------------------------------------------------------


async def test_access_lines_and_metrics_carry_the_client_the_operation_and_the_rule(
    clients: ProxyClient, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="proxy")
    query = {"query": "query Mine($n: Int) { login { email } }", "variables": {"n": 424242}}
    await gql(clients, query, BACKUP_TOKEN)
    await gql(clients, {"query": DELETE}, BACKUP_TOKEN)
    lines = [r for r in caplog.records if r.name == "proxy.access"]
    passed, refused = (vars(r)["fields"] for r in lines)
    assert (passed["client"], passed["profile"], passed["status"]) == ("backup", "work", 200)
    assert passed["graphql"] == [{"type": "query", "name": "Mine", "fields": ["login"]}]
    assert refused["rule"] == "read_only" and refused["code"] == "policy_denied"
    text = lines[1].getMessage()
    assert "client=backup profile=work graphql=mutation:Cleanup[deleteDevice]" in text
    assert "rule=read_only" in text
    assert "424242" not in caplog.text and '"x"' not in caplog.text  # no arguments, no variables
    async with clients.get("/-/metrics") as response:
        families = text_string_to_metric_families(await response.text())
        samples = [
            s for f in families for s in f.samples if s.name.startswith("remoteit_proxy_pol")
        ]
    assert [(s.labels, s.value) for s in samples] == [
        ({"client": "backup", "reason": "read_only"}, 1.0)
    ]


async def test_health_lists_the_clients_without_their_secrets(clients: ProxyClient) -> None:
    async with clients.get("/-/health") as response:
        body = await response.json()
    assert set(body["clients"]) == {"backup", "admin"}
    assert body["clients"]["backup"]["profile"] == "work"
    assert body["clients"]["backup"]["read_only"] is True
    for leak in (BACKUP_TOKEN, ADMIN_TOKEN, WORK_KEY_ID, SECRET_B64):
        assert leak not in json.dumps(body)


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[client.a]\nprofile = DEFAULT\n", "exactly one of token_file"),
        ("[client.a]\ntoken_env = NOT_SET_ANYWHERE\n", "NOT_SET_ANYWHERE, which is not set"),
        ("[client.a]\ntoken_file = @a\nprofile = nope\n", "profile [nope] is not in"),
        ("[client.a]\ntoken_file = @a\n[client.b]\ntoken_file = @a\n", "have the same token"),
        ("[client.a]\ntoken_file = @a\ngraphql_query = login;drop\n", "not a list of GraphQL"),
        ("[client.a]\ntoken_file = @a\nrest = delete everything\n", "is not a rule"),
        ("[client.a]\ntoken_file = @a\nread_only = maybe\n", "read_only: 'maybe' is not true"),
        ("[client.a b]\ntoken_file = @a\n", "a client name is letters"),
        ("[client.a]\ntoken_file = @a\ntoken = x\n", "unknown setting token in [client.a]"),
    ],
)
def test_client_sections_that_are_wrong_stop_the_start_with_a_message(
    tmp_path: Path, credentials_file: Path, text: str, expected: str
) -> None:
    path = config(tmp_path, text, a="a-token-1")
    args = ["--config", path, "--credentials", str(credentials_file)]
    line = run_failing(args, base_env(tmp_path))
    assert expected in line and "a-token-1" not in line


def test_a_single_token_and_client_sections_do_not_mix(
    tmp_path: Path, credentials_file: Path
) -> None:
    path = config(tmp_path, "[client.a]\ntoken_file = @a\n", a="a-token-1")
    args = ["--config", path, "--credentials", str(credentials_file), "--token", "other"]
    assert "each one has its own token" in run_failing(args, base_env(tmp_path))
    env = base_env(tmp_path) | {"R3_ACCESS_KEY_ID": KEY_ID, "R3_SECRET_ACCESS_KEY": SECRET_B64}
    line = run_failing(["--config", path, "--credentials", str(credentials_file)], env)
    assert "would replace the key of every [client.NAME] profile" in line


def test_clients_need_no_single_token_off_loopback(tmp_path: Path, credentials_file: Path) -> None:
    path = config(tmp_path, "[client.a]\ntoken_file = @a\n", a="a-token-1")
    settings = resolve({"config": path, "listen": "0.0.0.0:0"}, {})
    assert [c.name for c in settings.clients] == ["a"] and SECRET not in repr(settings).encode()


# --- the decision is graphql-core's, for any document ---------------------------------------


@pytest.fixture(scope="module")
def threaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, FakeUpstream]]:
    """A read-only proxy and the verifying fake upstream on a loop of their own, in a thread,
    so that a synchronous hypothesis test can send it many requests."""
    path = write_credentials(
        tmp_path_factory.mktemp("threaded") / "credentials",
        f"[DEFAULT]\nR3_ACCESS_KEY_ID={KEY_ID}\nR3_SECRET_ACCESS_KEY={SECRET_B64}\n",
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    fake = FakeUpstream(keys={KEY_ID: SECRET})

    async def start() -> tuple[web.AppRunner, ProxyService]:
        runner = web.AppRunner(fake.app())
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        given = {"listen": "127.0.0.1:0", "upstream": fake.url, "credentials": str(path)}
        settings = resolve({**given, "read-only": "true"}, {})
        service = ProxyService(settings, load_profiles(settings, {}), environ={})
        await service.start()
        return runner, service

    runner, service = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    yield service.addresses[0], fake

    async def stop() -> None:
        await service.stop()
        await runner.cleanup()

    asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(documents(), st.data())
def test_read_only_forwards_exactly_what_graphql_core_calls_a_query(
    threaded: tuple[str, FakeUpstream], generated: tuple[str, list[Any]], data: st.DataObject
) -> None:
    url, fake = threaded
    document, operations = generated
    name = data.draw(st.sampled_from([*(op.name for op in operations if op.name), None, "Other"]))
    chosen = get_operation_ast(parse(document), name)
    body = json.dumps({"query": document, "operationName": name}).encode()
    before = len(fake.received)
    request = urllib.request.Request(
        url + "/graphql/v1", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    if chosen is None:
        assert status == 400
    elif chosen.operation.value == "query":
        assert status == 200 and len(fake.received) == before + 1
        assert fake.received[-1].verified
    else:
        assert status == 403
    assert len(fake.received) == before + (status == 200)


async def test_a_clients_profile_is_reloaded_when_the_file_changes(
    make_proxy: ProxyFactory, two_accounts: Path, tmp_path: Path, upstream: FakeUpstream
) -> None:
    path = config(tmp_path, CLIENTS, backup=BACKUP_TOKEN, admin=ADMIN_TOKEN)
    client = await make_proxy(config=path, credentials=str(two_accounts), reload_interval=0.05)
    assert (await gql(client, {"query": LOGIN}, BACKUP_TOKEN))[0] == 200
    rotated = "ROTATEDWORKKEY000001"
    upstream.keys[rotated] = WORK_SECRET
    write_credentials(two_accounts, two_accounts.read_text().replace(WORK_KEY_ID, rotated))
    for _ in range(100):
        await gql(client, {"query": LOGIN}, BACKUP_TOKEN)
        if signed_by(upstream) == rotated:
            break
        await asyncio.sleep(0.05)
    assert signed_by(upstream) == rotated
    assert (await gql(client, {"query": LOGIN}, ADMIN_TOKEN))[0] == 200
    assert signed_by(upstream) == KEY_ID  # the other client's profile is untouched


# --- what a second look found: each a way around the policy, now closed ------------------------

RO_UTF7 = (
    b'{"query":"{login{id}}","x":"+ACIALAAiAHEAdQBlAHIAeQAiADoAIgBtAHUAdABhAHQAaQBvAG4AewBk'
    b'AGUAbABlAHQAZQBEAGUAdgBpAGMAZQAoAGkAZAA6ADEAKQB7AGkAZAB9AH0-"}'
)


@pytest.mark.parametrize(
    ("method", "target", "headers", "body"),
    [
        # A server honouring charset=utf-7 reads a second "query" key inside the string.
        ("POST", "/graphql/v1", {"Content-Type": "application/json; charset=utf-7"}, RO_UTF7),
        # qs-style form keys ([query]=) that express.urlencoded reads as query.
        (
            "POST",
            "/graphql/v1",
            {"Content-Type": "application/x-www-form-urlencoded"},
            b"{ login { id } } #&[query]=mutation%7BdeleteDevice(id:1)%7Bid%7D%7D",
        ),
        # A body on a GET or OPTIONS, which some servers read before the query string.
        (
            "GET",
            "/graphql/v1?query=%7Blogin%7Bemail%7D%7D",
            {},
            json.dumps({"query": DELETE}).encode(),
        ),
        ("OPTIONS", "/graphql/v1", {}, json.dumps({"query": DELETE}).encode()),
        # A compressed body (of an allowed query): not what the proxy can inspect.
        (
            "POST",
            "/graphql/v1",
            {"Content-Type": "application/json", "Content-Encoding": "gzip"},
            gzip.compress(json.dumps({"query": LOGIN}).encode()),
        ),
    ],
    ids=["utf-7", "qs-form", "get-body", "options-body", "gzip"],
)
async def test_bodies_the_upstream_could_read_otherwise_are_refused(
    read_only: ProxyClient,
    upstream: FakeUpstream,
    method: str,
    target: str,
    headers: dict[str, str],
    body: bytes,
) -> None:
    async with read_only.request(method, target, headers=headers, data=body or None) as r:
        assert r.status == 400, (r.status, await r.text())
    assert upstream.received == []


async def raw(client: ProxyClient, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(request)
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


# D runs `devices`, which the reader may not; Q runs `login`, which it may.
D, Q = b"query%20D%7Bdevices%7Bid%7D%7D", b"query%20Q%7Blogin%7Bid%7D%7D"


@pytest.mark.parametrize(
    "target",
    [
        # The fragment is never sent: the upstream would get D alone.
        b"/graphql/v1?query=" + D + b"#%0A" + Q + b"&operationName=Q",
        # Some servers stop reading the query string at a second '?': they would run D.
        b"/graphql/v1?query=" + D + b"%23?%0A" + Q + b"&operationName=Q",
    ],
    ids=["fragment", "second-question-mark"],
)
async def test_query_strings_the_upstream_could_cut_otherwise_are_refused(
    lists: ProxyClient, upstream: FakeUpstream, target: bytes
) -> None:
    answer = await raw(
        lists,
        b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Authorization: Bearer " + BACKUP_TOKEN.encode() + b"\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert upstream.received == []


async def test_a_fragment_cannot_turn_a_graphql_post_into_rest(
    make_proxy: ProxyFactory, upstream: FakeUpstream, tmp_path: Path
) -> None:
    text = "[client.wide]\ntoken_file = @wide\ngraphql_mutation = none\nrest = * /*\n"
    client = await make_proxy(config=config(tmp_path, text, wide=BACKUP_TOKEN))
    body = json.dumps({"query": DELETE}).encode()
    answer = await raw(
        client,
        b"POST /graphql/v1# HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Authorization: Bearer " + BACKUP_TOKEN.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body,
    )
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert upstream.received == []


@pytest.mark.parametrize("path", ["/graphql/v1/x", "/graphql/v1;x", "/graphql/beta/"])
async def test_paths_below_or_beside_a_graphql_path_are_inspected(
    make_proxy: ProxyFactory, upstream: FakeUpstream, tmp_path: Path, path: str
) -> None:
    text = "[client.wide]\ntoken_file = @wide\ngraphql_mutation = none\nrest = * /*\n"
    client = await make_proxy(config=config(tmp_path, text, wide=BACKUP_TOKEN))
    headers = {"Authorization": f"Bearer {BACKUP_TOKEN}", "Content-Type": "application/json"}
    data = json.dumps({"query": DELETE}).encode()
    async with client.post(path, data=data, headers=headers) as response:
        denied(response.status, await response.json())
    assert upstream.received == []


@pytest.mark.parametrize("path", ["/apv/v27/device/..;/..;/user/delete", "/apv/v27/device/.;/x"])
async def test_dot_segments_with_parameters_are_refused_under_rest_rules(
    lists: ProxyClient, upstream: FakeUpstream, path: str
) -> None:
    async with lists.get(path, headers={"Authorization": f"Bearer {BACKUP_TOKEN}"}) as response:
        denied(response.status, await response.json())
    assert upstream.received == []


async def test_header_spellings_that_act_are_dropped_under_a_policy(
    read_only: ProxyClient, upstream: FakeUpstream
) -> None:
    headers = {"X_R3_User": "other@example.com", "X-HTTP-Method-Override": "DELETE"}
    async with read_only.get("/apv/v27/device/list/all", headers=headers) as response:
        assert response.status == 200
    names = {name.lower() for name, _ in upstream.last().headers}
    assert "x_r3_user" not in names and "x-http-method-override" not in names


async def test_a_client_without_restrictions_is_not_inspected(
    make_proxy: ProxyFactory, upstream: FakeUpstream, tmp_path: Path
) -> None:
    text = "[client.admin]\ntoken_file = @admin\n"
    client = await make_proxy(
        config=config(tmp_path, text, admin=ADMIN_TOKEN), max_buffered_body="1KiB"
    )
    big = json.dumps({"query": LOGIN, "pad": "x" * 4096}).encode()  # over the buffer limit
    for payload in (big, b'{"query": "{ login { '):  # streamed, and never parsed
        status, _ = await gql(client, payload, ADMIN_TOKEN, **{"X-R3-User": "other@example.com"})
        assert status == 200
        assert upstream.last().header("X-R3-User") == "other@example.com"
    async with client.request(
        "PUT", "/graphql/v1", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ) as r:
        assert r.status == 200


async def test_a_compressed_body_goes_on_as_it_came(make_proxy: ProxyFactory) -> None:
    # A raw upstream: aiohttp's own server (the fake API) would decompress what it receives.
    seen: list[bytes] = []

    async def raw(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
        seen.append(head + await reader.readexactly(length))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(raw, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        client = await make_proxy(upstream=f"http://127.0.0.1:{port}")
        body = gzip.compress(b'{"query": "{ login { email } }"}')
        headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
        async with client.post("/graphql/v1", data=body, headers=headers) as response:
            assert response.status == 200
    assert seen[0].endswith(b"\r\n\r\n" + body) and b"Content-Encoding: gzip" in seen[0]
