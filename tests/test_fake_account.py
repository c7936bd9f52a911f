"""The fake account behaves like the key-management API the rotation tests rely on."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import AsyncIterator
from datetime import datetime
from email.utils import formatdate
from typing import Any

import aiohttp
import pytest
from conftest import KEY_ID, SECRET
from fake_account import (
    MAX_KEYS_MESSAGE,
    NOT_JSON_MESSAGE,
    UNKNOWN_KEY_MESSAGE,
    AccountUpstream,
    FakeAccount,
    signing_key,
)
from fake_upstream import FakeUpstream, Received
from yarl import URL

LIST = (
    "query { login { email apiKey { key updated } accessKeys { key enabled created lastUsed } } }"
)
CREATE = "mutation { createAccessKey { key secret } }"
UPDATE = (
    "mutation updateAccessKey($key: String!, $enabled: Boolean!) "
    "{ updateAccessKey(key: $key, enabled: $enabled) { key enabled } }"
)
DELETE = "mutation deleteAccessKey($key: String!) { deleteAccessKey(key: $key) }"


@pytest.fixture
def upstream(account_upstream: AccountUpstream) -> AccountUpstream:
    """conftest's upstream, as an AccountUpstream (overriding ``upstream`` also gives
    ``make_proxy`` an upstream that a FakeAccount can plug into)."""
    return account_upstream


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def sign(
    method: str, url: URL, key_id: str, secret: bytes, content_type: str = "application/json"
) -> dict[str, str]:
    """Draft-cavage hmac-sha256 headers, written here and not taken from the proxy."""
    host = f"{url.host}:{url.port}"
    date = formatdate(time.time(), usegmt=True)
    signed = (
        f"(request-target): {method.lower()} {url.raw_path_qs}\n"
        f"host: {host}\ndate: {date}\ncontent-type: {content_type}"
    )
    signature = base64.b64encode(hmac.new(secret, signed.encode(), hashlib.sha256).digest())
    return {
        "Host": host,
        "Date": date,
        "Content-Type": content_type,
        "Authorization": f'Signature keyId="{key_id}",algorithm="hmac-sha256",'
        f'headers="(request-target) host date content-type",signature="{signature.decode()}"',
    }


async def send(
    session: aiohttp.ClientSession,
    upstream: FakeUpstream,
    method: str,
    path: str,
    body: bytes = b"",
    signer: tuple[str, bytes] = (KEY_ID, SECRET),
) -> tuple[int, Any]:
    url = URL(upstream.url + path)
    headers = sign(method, url, *signer)
    async with session.request(method, url, data=body, headers=headers) as response:
        return response.status, await response.json()


async def gql(
    session: aiohttp.ClientSession,
    upstream: FakeUpstream,
    query: str,
    variables: dict[str, Any] | None = None,
    signer: tuple[str, bytes] = (KEY_ID, SECRET),
) -> tuple[int, Any]:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    return await send(session, upstream, "POST", "/graphql/v1", body, signer)


async def create(
    session: aiohttp.ClientSession,
    upstream: FakeUpstream,
    signer: tuple[str, bytes] = (KEY_ID, SECRET),
) -> tuple[str, bytes]:
    status, answer = await gql(session, upstream, CREATE, signer=signer)
    assert status == 200 and "errors" not in answer, answer
    created = answer["data"]["createAccessKey"]
    return created["key"], base64.b64decode(created["secret"], validate=True)


async def test_login_answers_the_fields_asked_for(
    account: FakeAccount, upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    assert await gql(session, upstream, "{ login { email } }") == (
        200,
        {"data": {"login": {"email": "you@example.com"}}},
    )
    status, answer = await gql(session, upstream, LIST)
    login = answer["data"]["login"]
    assert status == 200 and login["apiKey"]["key"] == "DEVKEY-0123456789"
    datetime.fromisoformat(login["apiKey"]["updated"].replace("Z", "+00:00"))
    [listed] = login["accessKeys"]
    assert listed["key"] == KEY_ID and listed["enabled"] is True
    assert listed["created"].endswith("Z") and listed["lastUsed"].endswith("Z")
    assert account.calls == ["login", "login"]


async def test_a_created_key_signs_and_a_third_key_is_refused(
    account: FakeAccount, upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    new = await create(session, upstream)
    assert re.fullmatch(r"[A-Z0-9]{20}", new[0]) and len(new[1]) == 32
    assert upstream.keys == {KEY_ID: SECRET, new[0]: new[1]}
    assert (await gql(session, upstream, "{ login { email } }", signer=new))[0] == 200
    status, answer = await gql(session, upstream, CREATE, signer=new)
    assert status == 200 and answer["data"] is None
    assert [e["message"] for e in answer["errors"]] == [MAX_KEYS_MESSAGE]
    # a disabled key still counts
    await gql(session, upstream, UPDATE, {"key": new[0], "enabled": False})
    assert (await gql(session, upstream, CREATE))[1]["errors"][0]["message"] == MAX_KEYS_MESSAGE
    assert account.calls == ["createAccessKey", "login", "createAccessKey"] + [
        "updateAccessKey",
        "createAccessKey",
    ]


async def test_disable_refuses_the_key_and_enable_restores_it(
    account: FakeAccount, upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    new = await create(session, upstream)
    assert await gql(session, upstream, UPDATE, {"key": new[0], "enabled": False}) == (
        200,
        {"data": {"updateAccessKey": {"key": new[0], "enabled": False}}},
    )
    assert await gql(session, upstream, "{ login { email } }", signer=new) == (
        401,
        {"message": "Unauthorized"},
    )
    assert upstream.received[-1].reason == "unknown keyId"
    literal = f'mutation {{ updateAccessKey(key: "{new[0]}", enabled: true) {{ enabled }} }}'
    assert (await gql(session, upstream, literal))[1] == {
        "data": {"updateAccessKey": {"enabled": True}}
    }
    assert (await gql(session, upstream, "{ login { email } }", signer=new))[0] == 200
    # a key may disable itself, after which it is refused
    await gql(session, upstream, UPDATE, {"key": new[0], "enabled": False}, new)
    assert account.keys[new[0]].enabled is False and new[0] not in upstream.keys


async def test_delete_refuses_the_key_and_unknown_keys_are_graphql_errors(
    account: FakeAccount, upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    keys = upstream.keys
    new = await create(session, upstream)
    assert await gql(session, upstream, DELETE, {"key": KEY_ID}, new) == (
        200,
        {"data": {"deleteAccessKey": True}},
    )
    assert (await gql(session, upstream, "{ login { email } }"))[0] == 401
    assert upstream.keys is keys and upstream.keys == {new[0]: new[1]}
    for query, variables in ((DELETE, {}), (UPDATE, {"enabled": True})):
        status, answer = await gql(session, upstream, query, {"key": "NOSUCH", **variables}, new)
        assert status == 200 and answer["data"] is None
        assert answer["errors"][0]["message"] == UNKNOWN_KEY_MESSAGE
    # room for a new key again
    await create(session, upstream, new)


async def test_last_used_follows_the_signing_key(
    account: FakeAccount, upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    assert account.keys[KEY_ID].last_used is None
    new = await create(session, upstream)
    first = account.keys[KEY_ID].last_used
    assert first is not None and account.keys[new[0]].last_used is None
    upstream.clock = lambda: time.time() + 1.5
    assert (await send(session, upstream, "GET", "/devices", signer=new))[0] == 200
    used = account.keys[new[0]].last_used
    assert used is not None and used > first and account.keys[KEY_ID].last_used == first
    used_at = datetime.fromisoformat(used.replace("Z", "+00:00")).timestamp()
    assert abs(used_at - upstream.clock()) < 2


async def test_fail_next_fails_once_without_effect(
    account: FakeAccount, upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    account.fail_next["createAccessKey"] = "Internal server error"
    status, answer = await gql(session, upstream, CREATE)
    assert status == 200 and answer["data"] is None
    assert answer["errors"][0]["message"] == "Internal server error"
    assert list(account.keys) == [KEY_ID] and not account.fail_next
    await create(session, upstream)
    assert account.calls == ["createAccessKey", "createAccessKey"]


async def test_a_new_key_is_refused_until_it_propagates(
    account: FakeAccount, upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    account.propagation = 0.2
    new = await create(session, upstream)
    assert (await gql(session, upstream, "{ login { email } }", signer=new))[0] == 401
    status, answer = await gql(session, upstream, LIST)
    assert new[0] in [k["key"] for k in answer["data"]["login"]["accessKeys"]]
    await asyncio.sleep(0.3)
    assert (await gql(session, upstream, "{ login { email } }", signer=new))[0] == 200


async def test_other_requests_reach_the_previous_responder(
    account: FakeAccount, upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    status, answer = await send(session, upstream, "POST", "/devices?x=1", b"payload")
    assert (status, answer["path"]) == (200, "/devices?x=1")
    # the body replayed to FakeUpstream is hashed and counted as sent
    assert (answer["size"], answer["sha256"]) == (7, hashlib.sha256(b"payload").hexdigest())
    status, answer = await send(session, upstream, "GET", "/graphql/v1")
    assert (status, answer["method"]) == (200, "GET")
    body = json.dumps({"query": "{ login { email } }"}).encode()
    status, answer = await send(session, upstream, "POST", "/prefix/graphql/v1", body)
    assert (status, answer) == (200, {"data": {"login": {"email": "you@example.com"}}})
    assert upstream.last().body_sha256 == hashlib.sha256(body).hexdigest()


def test_the_signing_key_is_found_in_either_scheme() -> None:
    def received(*headers: tuple[str, str]) -> Received:
        return Received("POST", "/", list(headers), "", 0, verified=True)

    cavage = f'Signature keyId="{KEY_ID}",algorithm="hmac-sha256",signature="x"'
    assert signing_key(received(("Authorization", cavage))) == KEY_ID
    rfc9421 = f'sig1=("@method" "date");created=1;keyid="{KEY_ID}";alg="hmac-sha256"'
    assert signing_key(received(("Signature-Input", rfc9421))) == KEY_ID
    assert signing_key(received()) is None


async def test_bad_requests(
    account: FakeAccount, upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    status, answer = await send(session, upstream, "POST", "/graphql/v1", b"{not json")
    assert (status, answer) == (400, {"errors": [{"message": NOT_JSON_MESSAGE}]})
    status, answer = await gql(session, upstream, "{ login { email ")
    assert status == 200 and answer["errors"][0]["message"].startswith("Syntax Error")
    for unknown in ("{ devices { id } }", "{ login { password } }", "mutation { rotate }"):
        status, answer = await gql(session, upstream, unknown)
        assert status == 200 and "Cannot query field" in answer["errors"][0]["message"]
    assert account.calls == []


async def test_a_plain_fake_upstream_is_refused() -> None:
    with pytest.raises(TypeError, match="AccountUpstream"):
        FakeAccount(FakeUpstream(keys={KEY_ID: SECRET}))  # type: ignore[arg-type]
