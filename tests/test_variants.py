"""Signature variants: signed Content-Length (cavage) and RFC 9421, vectors and end to end."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import KEY_ID, SECRET, ProxyFactory
from fake_upstream import FakeUpstream, check_rfc9421
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict
from test_commands import login, parse_headers, run, send
from yarl import URL

from proxy import signing
from proxy.config.resolve import resolve
from proxy.errors import ConfigError

DATA = Path(__file__).parent / "data"
RFC9421: list[dict[str, Any]] = json.loads((DATA / "rfc9421-hmac-sha256.json").read_text())


def authority(url: str) -> str:
    parsed = URL(url, encoded=True)
    host = (parsed.raw_host or "").lower()
    return host if parsed.is_default_port() else f"{host}:{parsed.port}"


@pytest.mark.parametrize("case", RFC9421, ids=[case["name"] for case in RFC9421])
def test_rfc9421_vectors(case: dict[str, Any]) -> None:
    components = signing.RFC9421_COMPONENTS
    params = signing.rfc9421_params(components, case["key_id"], case["created"])
    values = {
        "@method": case["method"].upper(),
        "@authority": authority(case["url"]),
        "@target-uri": case["url"],
        "date": case["headers"]["Date"],
    }
    assert signing.rfc9421_base(components, values, params) == case["signature_base"]
    signature_input, signature = signing.sign_rfc9421(
        key_id=case["key_id"],
        secret=base64.b64decode(case["secret_b64"]),
        method=case["method"],
        target_uri=case["url"],
        authority=authority(case["url"]),
        date=case["headers"]["Date"],
        created=case["created"],
    )
    assert signature_input == case["signature_input"]
    assert signature == case["signature"]
    assert case["expires"] == case["created"] + signing.RFC9421_LIFETIME


@pytest.mark.parametrize("case", RFC9421, ids=[case["name"] for case in RFC9421])
def test_the_fake_upstreams_verifier_accepts_the_vectors(case: dict[str, Any]) -> None:
    headers = CIMultiDict(case["headers"])
    headers["Host"] = authority(case["url"])
    headers["Signature-Input"] = case["signature_input"]
    headers["Signature"] = case["signature"]
    keys = {case["key_id"]: base64.b64decode(case["secret_b64"])}
    empty = hashlib.sha256().digest()
    assert check_rfc9421(case["method"], case["url"], headers, keys, empty, case["created"]) == ""
    changed = case["url"] + "x"
    assert check_rfc9421(case["method"], changed, headers, keys, empty, case["created"]) != ""
    late = case["expires"] + 1
    assert check_rfc9421(case["method"], case["url"], headers, keys, empty, late) != ""


_target = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#"), max_size=60
).map(lambda t: "/" + t)


@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    target=_target,
    secret=st.binary(min_size=1, max_size=64),
    created=st.integers(min_value=0, max_value=4_000_000_000),
    body=st.binary(max_size=64),
    digest=st.booleans(),
)
def test_any_rfc9421_request_verifies_independently(
    method: str, target: str, secret: bytes, created: int, body: bytes, digest: bool
) -> None:
    sha = hashlib.sha256(body).digest()
    content_digest = signing.content_digest(sha) if digest else None
    date = signing.http_date(created)
    uri = "https://api.remote.it" + target
    signature_input, signature = signing.sign_rfc9421(
        key_id="K",
        secret=secret,
        method=method,
        target_uri=uri,
        authority="api.remote.it",
        date=date,
        created=created,
        digest=content_digest,
    )
    headers = CIMultiDict(
        {
            "Host": "api.remote.it",
            "Date": date,
            "Signature-Input": signature_input,
            "Signature": signature,
        }
    )
    if content_digest:
        headers["Content-Digest"] = content_digest
        assert signature_input.endswith(f"created={created};expires={created + 300}")
        assert '"date" "content-digest")' in signature_input
    assert check_rfc9421(method, uri, headers, {"K": secret}, sha, created) == ""
    assert check_rfc9421(method, uri + "x", headers, {"K": secret}, sha, created) != ""


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 1000):
        yield data[start : start + 1000]


LENGTH_SIGNED = "(request-target) host date content-type content-length"


@pytest.mark.parametrize("kind", ["sized", "chunked", "none"])
async def test_cavage_content_length_is_exact_and_signed(
    make_proxy: ProxyFactory, upstream: FakeUpstream, kind: str
) -> None:
    client = await make_proxy(sign_headers=LENGTH_SIGNED)
    body = b'{"query":"{ login { email } }"}' * 50
    data = {"sized": body, "chunked": chunks(body), "none": None}[kind]
    async with client.request(
        "POST" if data is not None else "GET", "/graphql/v1", data=data
    ) as response:
        assert response.status == 200
    received = upstream.last()
    size = 0 if kind == "none" else len(body)
    assert received.header("Content-Length") == str(size) and received.body_size == size
    assert received.header("Transfer-Encoding") is None
    assert f'headers="{LENGTH_SIGNED}"' in (received.header("Authorization") or "")


async def test_a_chunked_body_over_the_limit_gets_413(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    client = await make_proxy(sign_headers=LENGTH_SIGNED, max_buffered_body="1KiB")
    async with client.post("/graphql/v1", data=chunks(b"x" * 5000)) as response:
        assert response.status == 413
        assert (await response.json())["error"]["code"] == "body_too_large"
    assert upstream.received == []


async def test_a_sized_body_streams_whatever_the_limit(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    client = await make_proxy(sign_headers=LENGTH_SIGNED, max_buffered_body="1KiB")
    body = b"y" * 200_000
    async with client.post("/graphql/v1", data=body) as response:
        assert response.status == 200
    assert upstream.last().body_size == len(body)


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
async def test_rfc9421_end_to_end(
    make_proxy: ProxyFactory, upstream: FakeUpstream, method: str
) -> None:
    client = await make_proxy(scheme="rfc9421", upstream=upstream.url + "/prefix")
    data = b'{"query":"{ login { email } }"}' if method == "POST" else None
    async with client.request(method, "/graphql/v1?a=1&b=%20", data=data) as response:
        assert response.status == 200
    received = upstream.last()
    assert received.raw_path == "/prefix/graphql/v1?a=1&b=%20"
    assert received.header("Authorization") is None
    signature_input = received.header("Signature-Input") or ""
    assert signature_input.startswith('remoteit=("@method" "@authority" "@target-uri" "date");')
    assert f'keyid="{KEY_ID}";alg="hmac-sha256";created=' in signature_input
    assert received.header("Content-Digest") is None


@pytest.mark.parametrize("kind", ["sized", "chunked", "none"])
async def test_rfc9421_content_digest(
    make_proxy: ProxyFactory, upstream: FakeUpstream, kind: str
) -> None:
    client = await make_proxy(scheme="rfc9421", sign_content_digest="true")
    body = b"some body " * 100
    data = {"sized": body, "chunked": chunks(body), "none": None}[kind]
    async with client.request("PUT", "/apv/v27/thing", data=data) as response:
        assert response.status == 200
    received = upstream.last()
    sent = b"" if kind == "none" else body
    digest = base64.b64encode(hashlib.sha256(sent).digest()).decode()
    assert received.header("Content-Digest") == f"sha-256=:{digest}:"
    assert '"date" "content-digest");' in (received.header("Signature-Input") or "")


async def test_rfc9421_digest_over_the_limit_gets_413(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    client = await make_proxy(scheme="rfc9421", sign_content_digest="true", max_buffered_body="100")
    async with client.post("/graphql/v1", data=b"z" * 101) as response:
        assert response.status == 413
    assert upstream.received == []


async def test_a_clients_own_signature_headers_are_replaced(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    client = await make_proxy(scheme="rfc9421")
    forged = {"Signature-Input": 'x=("@method");keyid="k"', "Signature": "x=:AAAA:"}
    async with client.get("/graphql/v1", headers=forged) as response:
        assert response.status == 200
    received = upstream.last()
    assert [v for k, v in received.headers if k.lower() == "signature"] != ["x=:AAAA:"]


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"sign-headers": "(request-target) host date x-custom"}, "--sign-headers"),
        ({"sign-headers": "host date content-type"}, "(request-target)"),
        ({"sign-headers": "(request-target) host date date"}, "each once"),
        ({"scheme": "hmac"}, "--scheme: 'hmac'"),
        ({"sign-content-digest": "true"}, "--scheme rfc9421"),
        ({"max-buffered-body": "ten"}, "--max-buffered-body"),
    ],
)
def test_bad_signature_settings(given: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve(given, {})


def test_sizes_parse() -> None:
    assert resolve({"max-buffered-body": "512KiB"}, {}).max_buffered_body == 512 * 1024
    assert resolve({"max-buffered-body": "10MiB"}, {}).max_buffered_body == 10 * 1024**2
    assert resolve({"max-buffered-body": "4096"}, {}).max_buffered_body == 4096


@pytest.mark.parametrize("scheme", ["cavage", "rfc9421"])
async def test_sign_command_in_both_schemes(
    upstream: FakeUpstream,
    creds: Path,
    tmp_path: Path,
    scheme: str,
) -> None:
    body = tmp_path / "query.json"
    body.write_bytes(b'{"query":"{ login { email } }"}')
    extra = ["--sign-headers", LENGTH_SIGNED] if scheme == "cavage" else ["--sign-content-digest"]
    code, out, err = await run(
        "sign",
        "--data-file",
        str(body),
        "--scheme",
        scheme,
        *extra,
        upstream.url + "/graphql/v1",
        "--credentials",
        str(creds),
        home=creds.parent,
    )
    assert code == 0, err
    headers = parse_headers(out)
    status = await send(upstream.url + "/graphql/v1", "POST", headers, body.read_bytes())
    assert status == 200
    assert upstream.last().body_size == len(body.read_bytes())


async def test_check_command_with_rfc9421(upstream: FakeUpstream, creds: Path) -> None:
    upstream.respond = login
    code, out, _ = await run(
        "check",
        "--scheme",
        "rfc9421",
        "--sign-content-digest",
        "--upstream",
        upstream.url,
        "--credentials",
        str(creds),
        home=creds.parent,
    )
    assert code == 0, out
    assert "Signature-Input" in dict(upstream.last().headers)
    assert SECRET not in out.encode()


async def test_a_third_party_rfc9421_verifier_accepts_the_proxy(
    make_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    """pyauth's http-message-signatures, an implementation independent of both ours."""
    hms = pytest.importorskip("http_message_signatures")

    class Keys(hms.HTTPSignatureKeyResolver):  # type: ignore[misc]
        def resolve_public_key(self, key_id: str) -> bytes:
            assert key_id == KEY_ID
            return SECRET

    client = await make_proxy(scheme="rfc9421", sign_content_digest="true")
    async with client.post("/graphql/v1?x=1", data=b'{"query":"{ login { email } }"}') as r:
        assert r.status == 200
    received = upstream.last()

    class Message:
        method = received.method
        url = f"{upstream.url}{received.raw_path}"
        headers = dict(received.headers)

    verifier = hms.HTTPMessageVerifier(
        signature_algorithm=hms.algorithms.HMAC_SHA256, key_resolver=Keys()
    )
    results = verifier.verify(Message())
    assert len(results) == 1 and results[0].label == "remoteit"
    assert '"content-digest"' in str(results[0].covered_components)
