"""Signing: the shared known-answer vectors, and properties checked by the independent verifier."""

from __future__ import annotations

import base64
import json
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from fake_upstream import check_signature
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from proxy import signing

DATA = Path(__file__).parent / "data"
CAVAGE: list[dict[str, Any]] = json.loads((DATA / "cavage-hmac-sha256.json").read_text())


def test_vector_file_has_every_case() -> None:
    assert len(CAVAGE) == 9


@pytest.mark.parametrize("case", CAVAGE, ids=[case["name"] for case in CAVAGE])
def test_cavage_vectors(case: dict[str, Any]) -> None:
    names = case["signed_headers"].split(" ")
    values = {
        "(request-target)": signing.request_target(case["method"], case["path"]),
        "host": case["host"],
        "date": case["date"],
        "content-type": case["content_type"],
    }
    if "content_length" in case:
        assert case["content_length"] == len(case["body"].encode())
        values["content-length"] = str(case["content_length"])
    assert signing.signing_string(names, values) == case["signing_string"]

    secret = base64.b64decode(case["secret_b64"])
    assert signing.hmac_sha256_b64(secret, case["signing_string"]) == case["signature"]
    authorization = signing.sign(
        key_id=case["key_id"],
        secret=secret,
        method=case["method"],
        target=case["path"],
        host=case["host"],
        date=case["date"],
        content_type=case["content_type"],
        content_length=case.get("content_length"),
        header_names=names,
    )
    assert authorization == case["authorization"]


@pytest.mark.parametrize("case", CAVAGE, ids=[case["name"] for case in CAVAGE])
def test_http_date_reproduces_vector_dates(case: dict[str, Any]) -> None:
    epoch = parsedate_to_datetime(case["date"]).timestamp()
    assert signing.http_date(epoch) == case["date"]


def test_http_date_is_imf_fixdate_in_gmt() -> None:
    assert signing.http_date(1796023164) == "Mon, 30 Nov 2026 07:19:24 GMT"
    assert signing.http_date(0.999) == "Thu, 01 Jan 1970 00:00:00 GMT"


@given(st.floats(min_value=0, max_value=253402300799, allow_nan=False))
def test_http_date_matches_the_standard_librarys_imf_fixdate(epoch: float) -> None:
    # The standard library's formatter as the reference (years 1970 to 9999).
    assert signing.http_date(epoch) == formatdate(int(epoch // 1), usegmt=True)


def test_request_target_lowercases_method_only() -> None:
    assert signing.request_target("PATCH", "/A%2Fb?Q=1") == "patch /A%2Fb?Q=1"


_methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "PROPFIND"])
_visible = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40)
_path = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="?#"), max_size=60
).map(lambda p: "/" + p)
_query = st.one_of(st.just(""), _visible.map(lambda q: "?" + q.replace("#", "")))
_content_type = (
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=60)
    .map(str.strip)
    .filter(bool)
)


@given(
    method=_methods,
    path=_path,
    query=_query,
    content_type=_content_type,
    secret=st.binary(min_size=1, max_size=64),
    epoch=st.integers(min_value=0, max_value=4_102_444_800),
)
def test_any_request_signs_in_the_documented_shape(
    method: str, path: str, query: str, content_type: str, secret: bytes, epoch: int
) -> None:
    target = path + query
    date = signing.http_date(epoch)
    authorization = signing.sign(
        key_id="KEY",
        secret=secret,
        method=method,
        target=target,
        host="api.remote.it",
        date=date,
        content_type=content_type,
    )
    text = signing.signing_string(
        signing.DEFAULT_SIGNED_HEADERS,
        {
            "(request-target)": signing.request_target(method, target),
            "host": "api.remote.it",
            "date": date,
            "content-type": content_type,
        },
    )
    assert text.split("\n") == [
        f"(request-target): {method.lower()} {target}",
        "host: api.remote.it",
        f"date: {date}",
        f"content-type: {content_type}",
    ]
    headers = CIMultiDict(
        {
            "Host": "api.remote.it",
            "Date": date,
            "Content-Type": content_type,
            "Authorization": authorization,
        }
    )
    assert check_signature(method, target, headers, {"KEY": secret}) == ""
    # Any other target or key must be refused: the verifier is not a rubber stamp.
    assert check_signature(method, target + "x", headers, {"KEY": secret}) != ""
    assert check_signature(method, target, headers, {"KEY": secret + b"!"}) != ""
