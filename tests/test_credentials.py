"""Credentials: the INI file, profiles, secret decoding, environment overrides, error messages."""

from __future__ import annotations

import base64
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import DEVELOPER_KEY, KEY_ID, SECRET, SECRET_B64, write_credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.errors import ConfigError, CredentialsError
from proxy.keys.credentials import Credentials, default_credentials_path, load_credentials
from proxy.keys.values import check_value, decode_secret, mask, value_problem

ACCESS = "R3_ACCESS_KEY_ID"
SECRET_KEY = "R3_SECRET_ACCESS_KEY"
DEV = "R3_DEVELOPER_API_KEY"

# 256 bytes: the base64 contains '+' and '/' (so URL-safe differs) and ends in '==' padding.
WIDE = bytes(range(256))
WIDE_B64 = base64.b64encode(WIDE).decode()
WIDE_URLSAFE = base64.urlsafe_b64encode(WIDE).decode()

# Every form of a secret value that must never show up in a message, a log line or a repr.
SECRET_FORMS: tuple[str, ...] = (
    SECRET_B64,
    SECRET_B64.rstrip("="),
    base64.urlsafe_b64encode(SECRET).decode().rstrip("="),
    "test-secret",  # the readable part of the decoded secret bytes
    WIDE_B64[8:40],
    WIDE_URLSAFE[8:40],
    DEVELOPER_KEY,
)


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for form in SECRET_FORMS:
            assert form not in text, f"secret value {form!r} leaked into {text!r}"


def error_text(exc: pytest.ExceptionInfo[BaseException]) -> str:
    """The message, after checking that neither it nor the repr leaks a secret."""
    assert_no_secret(str(exc.value), repr(exc.value))
    return str(exc.value)


def profile_text(
    name: str = "DEFAULT",
    key_id: str = KEY_ID,
    secret: str = SECRET_B64,
    extra: str = "",
) -> str:
    return f"[{name}]\n{ACCESS}={key_id}\n{SECRET_KEY}={secret}\n{extra}"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "credentials"


def write(path: Path, text: str) -> Path:
    return write_credentials(path, text)


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def load(
    path: Path, profile: str = "DEFAULT", environ: dict[str, str] | None = None
) -> Credentials:
    return load_credentials(path, profile, environ or {})


def load_error(path: Path, profile: str = "DEFAULT", environ: dict[str, str] | None = None) -> str:
    with pytest.raises(CredentialsError) as exc:
        load(path, profile, environ)
    return error_text(exc)


# --- the happy path and the default location ---------------------------------------------------


def test_loads_default_profile(credentials_file: Path) -> None:
    creds = load(credentials_file)
    assert creds.access_key_id == KEY_ID
    assert creds.secret == SECRET
    assert creds.developer_key is None
    assert creds.profile == "DEFAULT"
    assert creds.source == str(credentials_file)


def test_credentials_error_is_a_config_error() -> None:
    assert issubclass(CredentialsError, ConfigError)


def test_developer_key_is_read_from_the_profile(path: Path) -> None:
    write(path, profile_text(extra=f"{DEV}={DEVELOPER_KEY}\n"))
    assert load(path).developer_key == DEVELOPER_KEY


@pytest.mark.parametrize("line", [f"{DEV}=\n", f"{DEV}=''\n", ""])
def test_developer_key_is_optional(path: Path, line: str) -> None:
    write(path, profile_text(extra=line))
    assert load(path).developer_key is None


def test_default_path_is_under_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("USERPROFILE", str(tmp_path))  # Path.home() on Windows
    expected = tmp_path / ".remoteit" / "credentials"
    assert default_credentials_path() == expected
    expected.parent.mkdir()
    write(expected, profile_text())
    assert load(default_credentials_path()).secret == SECRET


# --- configparser traps -----------------------------------------------------------------------


def test_default_profile_values_are_not_inherited(path: Path) -> None:
    write(path, profile_text(extra=f"{DEV}={DEVELOPER_KEY}\n[work]\n{ACCESS}=WORKKEYID0001\n"))
    message = load_error(path, "work")
    assert str(path) in message
    assert "[work]" in message
    assert SECRET_KEY in message


def test_default_developer_key_is_not_inherited(path: Path) -> None:
    write(path, profile_text(extra=f"{DEV}={DEVELOPER_KEY}\n") + profile_text("work"))
    creds = load(path, "work")
    assert creds.profile == "work"
    assert creds.developer_key is None


def test_no_percent_interpolation(path: Path) -> None:
    key_id = "KEY%(here)s%%ID%"
    developer_key = "DEV%(x)s%KEY"
    write(path, profile_text(key_id=key_id, extra=f"{DEV}={developer_key}\n"))
    creds = load(path)
    assert creds.access_key_id == key_id
    assert creds.developer_key == developer_key
    assert creds.secret == SECRET


def test_percent_in_secret_is_a_base64_error_not_an_interpolation_error(path: Path) -> None:
    write(path, profile_text(secret=f"%(home)s{SECRET_B64}%"))
    message = load_error(path)
    assert "not valid base64" in message
    assert SECRET_KEY in message


@pytest.mark.parametrize("header_first", [True, False], ids=["section-first", "keys-first"])
def test_utf8_bom_at_start_is_fine(path: Path, header_first: bool) -> None:
    text = profile_text() if header_first else f"{ACCESS}={KEY_ID}\n{SECRET_KEY}={SECRET_B64}\n"
    write_bytes(path, b"\xef\xbb\xbf" + text.encode())
    creds = load(path)
    assert (creds.access_key_id, creds.secret, creds.profile) == (KEY_ID, SECRET, "DEFAULT")


def test_comment_lines_are_ignored(path: Path) -> None:
    write(
        path,
        "# Remote.It credentials\n; written by hand\n\n[DEFAULT]\n"
        f"# {ACCESS}=COMMENTEDOUT\n{ACCESS}={KEY_ID}\n  ; indented comment\n"
        f"{SECRET_KEY}={SECRET_B64}\n# trailing comment\n",
    )
    creds = load(path)
    assert (creds.access_key_id, creds.secret) == (KEY_ID, SECRET)


@pytest.mark.parametrize("newline", ["\r\n", "\r"], ids=["crlf", "cr"])
def test_crlf_line_endings(path: Path, newline: str) -> None:
    text = profile_text(extra=f"{DEV}={DEVELOPER_KEY}\n") + profile_text("work", "WORKKEYID0001")
    write_bytes(path, text.replace("\n", newline).encode())
    assert_loads_the_test_key(path)
    assert load(path, "work").access_key_id == "WORKKEYID0001"


def test_keys_above_any_section_belong_to_default(path: Path) -> None:
    write(
        path,
        f"# top comment\n\n{ACCESS}={KEY_ID}\n{SECRET_KEY}={SECRET_B64}\n"
        + profile_text("work", "WORKKEYID0001", WIDE_B64),
    )
    default = load(path)
    assert (default.profile, default.access_key_id, default.secret) == ("DEFAULT", KEY_ID, SECRET)
    work = load(path, "work")
    assert (work.access_key_id, work.secret) == ("WORKKEYID0001", WIDE)


def test_keys_above_sections_and_an_explicit_default_section_are_a_duplicate(path: Path) -> None:
    write(path, f"{ACCESS}={KEY_ID}\n" + profile_text())
    message = load_error(path)
    assert str(path) in message
    assert "[DEFAULT]" in message
    assert "line 2" in message


@pytest.mark.parametrize("quote", ['"', "'"])
def test_quotes_around_values_are_removed(path: Path, quote: str) -> None:
    q = quote
    write(
        path,
        f"[DEFAULT]\n{ACCESS} = {q}{KEY_ID}{q}\n{SECRET_KEY}={q}{SECRET_B64}{q}\n"
        f"{DEV}= {q}{DEVELOPER_KEY}{q} \n",
    )
    assert_loads_the_test_key(path)


@pytest.mark.parametrize("transform", [str.lower, str.title], ids=["lower", "title"])
def test_key_names_are_case_insensitive(path: Path, transform: Callable[[str], str]) -> None:
    write(
        path,
        f"[DEFAULT]\n{transform(ACCESS)}={KEY_ID}\n{transform(SECRET_KEY)}={SECRET_B64}\n"
        f"{transform(DEV)}={DEVELOPER_KEY}\n",
    )
    assert_loads_the_test_key(path)


@pytest.mark.parametrize("delimiter", [" = ", ": ", ":"])
def test_other_delimiters_and_spacing(path: Path, delimiter: str) -> None:
    write(path, f"[DEFAULT]\n{ACCESS}{delimiter}{KEY_ID}\n{SECRET_KEY}{delimiter}{SECRET_B64}\n")
    assert load(path).secret == SECRET


# --- profile selection ------------------------------------------------------------------------


def test_exact_profile_match_wins_over_case_insensitive(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(path, profile_text("default", "LOWERKEYID01") + profile_text("DEFAULT", "UPPERKEYID01"))
    with caplog.at_level(logging.WARNING):
        assert load(path, "DEFAULT").access_key_id == "UPPERKEYID01"
        assert load(path, "default").access_key_id == "LOWERKEYID01"
    assert not caplog.records


def test_single_case_insensitive_match_is_used_with_a_warning(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(path, profile_text("default"))
    with caplog.at_level(logging.WARNING):
        creds = load(path, "DEFAULT")
    assert creds.profile == "default"
    assert creds.secret == SECRET
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "[DEFAULT]" in message
    assert "[default]" in message
    assert str(path) in message
    assert_no_secret(caplog.text)


def test_several_case_insensitive_matches_are_an_error(path: Path) -> None:
    write(path, profile_text("Work") + profile_text("WORK") + profile_text("home"))
    message = load_error(path, "work")
    assert "[work]" in message
    assert str(path) in message
    for existing in ("[Work]", "[WORK]", "[home]"):
        assert existing in message


def test_unknown_profile_lists_the_existing_ones(path: Path) -> None:
    write(path, profile_text() + profile_text("work"))
    message = load_error(path, "nope")
    assert "[nope]" in message
    assert str(path) in message
    assert "[DEFAULT]" in message
    assert "[work]" in message


@pytest.mark.parametrize("text", ["", "# only a comment\n\n"], ids=["empty", "comment-only"])
def test_file_without_profiles(path: Path, text: str) -> None:
    write(path, text)
    message = load_error(path)
    assert "[DEFAULT]" in message
    assert str(path) in message
    assert "none" in message


@pytest.mark.parametrize("name", ["a.b", "DEFAULT.", ".DEFAULT"])
def test_profile_name_with_a_dot_is_rejected(path: Path, name: str) -> None:
    write(path, profile_text() + profile_text(name))
    message = load_error(path, name)
    assert repr(name) in message
    assert "'.'" in message


# --- secret decoding --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "encoded",
    [
        WIDE_B64,
        WIDE_B64.rstrip("="),
        WIDE_URLSAFE,
        WIDE_URLSAFE.rstrip("="),
        f"  {WIDE_B64[:100]} {WIDE_B64[100:200]}\t{WIDE_B64[200:]}  ",
        f"{WIDE_URLSAFE[:50]}\n{WIDE_URLSAFE[50:150]}\r\n  {WIDE_URLSAFE[150:]}\n",
    ],
    ids=["standard", "standard-unpadded", "urlsafe", "urlsafe-unpadded", "spaces", "newlines"],
)
def test_decode_secret_accepts_every_base64_flavour(encoded: str) -> None:
    assert decode_secret(encoded, "somewhere") == WIDE


def test_decode_secret_keeps_nul_and_high_bytes() -> None:
    assert decode_secret(SECRET_B64, "somewhere") == SECRET


@pytest.mark.parametrize(
    "value",
    ["notbase64!!", "abcde", "ÄÖÜ-secret", "YWJj%", "====", "   ", "", "YW=Jj"],
)
def test_decode_secret_rejects_invalid_base64(value: str) -> None:
    with pytest.raises(CredentialsError) as exc:
        decode_secret(value, "/some/file, profile [p]")
    message = error_text(exc)
    assert SECRET_KEY in message
    assert "/some/file, profile [p]" in message
    if value.strip():
        assert value.strip() not in message


def test_secret_on_continuation_lines_in_the_file(path: Path) -> None:
    write(
        path,
        f"[DEFAULT]\n{ACCESS}={KEY_ID}\n{SECRET_KEY}={WIDE_B64[:120]}\n"
        f"    {WIDE_B64[120:240]}\n\t{WIDE_B64[240:]}\n",
    )
    assert load(path).secret == WIDE


def test_secret_starting_on_the_next_line(path: Path) -> None:
    write(path, f"[DEFAULT]\n{ACCESS}={KEY_ID}\n{SECRET_KEY}=\n  {WIDE_URLSAFE.rstrip('=')}\n")
    assert load(path).secret == WIDE


def test_invalid_secret_in_file_names_file_profile_and_key(path: Path) -> None:
    bad = "SeCrEt!!VaLuE*1234"
    write(path, profile_text("work", secret=bad))
    message = load_error(path, "work")
    assert str(path) in message
    assert "[work]" in message
    assert SECRET_KEY in message
    assert bad not in message
    assert "SeCrEt" not in message


# --- environment ------------------------------------------------------------------------------


def test_environment_overrides_a_missing_file(tmp_path: Path) -> None:
    environ = {ACCESS: KEY_ID, SECRET_KEY: SECRET_B64}
    creds = load(tmp_path / "does-not-exist", "whatever", environ)
    assert (creds.access_key_id, creds.secret) == (KEY_ID, SECRET)
    assert creds.source == "environment"
    assert creds.profile == "environment"
    assert creds.developer_key is None


def test_environment_overrides_the_file(path: Path) -> None:
    write(path, profile_text(key_id="FILEKEYID0001", secret=WIDE_B64))
    environ = {ACCESS: f" {KEY_ID} ", SECRET_KEY: f"{SECRET_B64}\n"}
    creds = load(path, "DEFAULT", environ)
    assert (creds.access_key_id, creds.secret, creds.source) == (KEY_ID, SECRET, "environment")


@pytest.mark.parametrize("present", [ACCESS, SECRET_KEY])
def test_only_one_environment_variable_is_an_error(path: Path, present: str) -> None:
    write(path, profile_text())
    value = KEY_ID if present == ACCESS else SECRET_B64
    message = load_error(path, "DEFAULT", {present: value, "other": "x"})
    assert ACCESS in message
    assert SECRET_KEY in message


@pytest.mark.parametrize("blank", ["", "   "])
def test_blank_environment_variables_count_as_unset(path: Path, blank: str) -> None:
    write(path, profile_text(key_id="FILEKEYID0001"))
    creds = load(path, "DEFAULT", {ACCESS: blank, SECRET_KEY: blank, DEV: blank})
    assert creds.access_key_id == "FILEKEYID0001"
    assert creds.developer_key is None


def test_environment_developer_key_overrides_the_file(path: Path) -> None:
    write(path, profile_text(extra=f"{DEV}=FILEDEVKEY\n"))
    assert load(path).developer_key == "FILEDEVKEY"
    assert load(path, "DEFAULT", {DEV: DEVELOPER_KEY}).developer_key == DEVELOPER_KEY


def test_environment_developer_key_with_environment_credentials(tmp_path: Path) -> None:
    environ = {ACCESS: KEY_ID, SECRET_KEY: SECRET_B64, DEV: DEVELOPER_KEY}
    assert load(tmp_path / "missing", "DEFAULT", environ).developer_key == DEVELOPER_KEY


def test_invalid_secret_in_environment(tmp_path: Path) -> None:
    bad = "EnvSecret!!Value*99"
    message = load_error(tmp_path / "missing", "DEFAULT", {ACCESS: KEY_ID, SECRET_KEY: bad})
    assert "environment" in message
    assert SECRET_KEY in message
    assert bad not in message


@pytest.mark.parametrize("developer_key", ["DEV KEY", "DEV\tKEY", "DEVKÉY"])
def test_invalid_developer_key(path: Path, developer_key: str) -> None:
    write(path, profile_text(extra=f"{DEV}={developer_key}\n"))
    message = load_error(path)
    assert DEV in message
    assert str(path) in message
    write(path, profile_text())
    message = load_error(path, "DEFAULT", {DEV: developer_key})
    assert DEV in message
    assert "environment" in message


# --- file permissions -------------------------------------------------------------------------


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes only")
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o666])
def test_readable_by_others_logs_a_chmod_warning(
    path: Path, caplog: pytest.LogCaptureFixture, mode: int
) -> None:
    write(path, profile_text())
    path.chmod(mode)
    with caplog.at_level(logging.WARNING):
        assert load(path).secret == SECRET
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "chmod 600" in warnings[0]
    assert str(path) in warnings[0]
    assert_no_secret(caplog.text)


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes only")
@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_private_file_logs_nothing(path: Path, caplog: pytest.LogCaptureFixture, mode: int) -> None:
    write(path, profile_text())
    path.chmod(mode)
    with caplog.at_level(logging.DEBUG):
        load(path)
    assert not caplog.records


# --- file errors ------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "credentials"
    message = load_error(missing)
    assert str(missing) in message
    assert "does not exist" in message
    assert ACCESS in message and SECRET_KEY in message


def test_directory_instead_of_file(tmp_path: Path) -> None:
    directory = tmp_path / "credentials"
    directory.mkdir()
    message = load_error(directory)
    assert str(directory) in message
    assert "directory" in message


@pytest.mark.parametrize("missing", [ACCESS, SECRET_KEY])
def test_missing_key(path: Path, missing: str) -> None:
    lines = {ACCESS: f"{ACCESS}={KEY_ID}\n", SECRET_KEY: f"{SECRET_KEY}={SECRET_B64}\n"}
    del lines[missing]
    write(path, "[work]\n" + "".join(lines.values()) + f"{DEV}={DEVELOPER_KEY}\n")
    message = load_error(path, "work")
    assert missing in message
    assert str(path) in message
    assert "[work]" in message


@pytest.mark.parametrize("key", [ACCESS, SECRET_KEY])
@pytest.mark.parametrize("empty", ["", "   ", '""', "''"])
def test_empty_value(path: Path, key: str, empty: str) -> None:
    values = {ACCESS: KEY_ID, SECRET_KEY: SECRET_B64, key: empty}
    write(path, "[DEFAULT]\n" + "".join(f"{k}={v}\n" for k, v in values.items()))
    message = load_error(path)
    assert key in message
    assert str(path) in message
    assert "[DEFAULT]" in message


def test_non_utf8_bytes(path: Path) -> None:
    write_bytes(path, profile_text().encode() + b"# caf\xe9\n")
    message = load_error(path)
    assert str(path) in message
    assert "line 4" in message
    assert "UTF-8" in message


def test_duplicate_sections(path: Path) -> None:
    write(path, profile_text() + "\n" + profile_text("work") + profile_text())
    message = load_error(path)
    assert str(path) in message
    assert "[DEFAULT]" in message
    assert "line 8" in message


def test_duplicate_keys(path: Path) -> None:
    write(path, profile_text(secret=WIDE_B64) + f"{SECRET_KEY.lower()}={SECRET_B64}\n")
    message = load_error(path)
    assert str(path) in message
    assert SECRET_KEY in message
    assert "[DEFAULT]" in message
    assert "line 4" in message


def test_duplicate_keys_above_any_section(path: Path) -> None:
    write(path, f"{ACCESS}={KEY_ID}\n{SECRET_KEY}={SECRET_B64}\n{ACCESS}=OTHERKEYID01\n")
    message = load_error(path)
    assert str(path) in message
    assert ACCESS in message
    assert "line 3" in message


@pytest.mark.parametrize("keys_first", [False, True], ids=["in-section", "above-sections"])
def test_a_secret_pasted_twice_on_lines_of_its_own_is_not_echoed(
    path: Path, keys_first: bool
) -> None:
    # Its '==' padding makes configparser read the line as 'name=' (lower-cased): twice, that
    # is a duplicate key, and the message must not name that key.
    assert WIDE_B64.endswith("==") and ":" not in WIDE_B64
    body = f"{ACCESS}={KEY_ID}\n{SECRET_KEY}={SECRET_B64}\n{WIDE_B64}\n{WIDE_B64}\n"
    write(path, body if keys_first else "[work]\n" + body)
    message = load_error(path, "DEFAULT" if keys_first else "work")
    profile, line = ("DEFAULT", 4) if keys_first else ("work", 5)
    assert message == (
        f"{path}: a line appears twice in profile [{profile}] (line {line}); keep only one"
    )
    for form in (WIDE_B64[:-2], WIDE_B64[:-2].upper(), WIDE_B64[:-2].lower()):
        assert form[8:40] not in message


def test_a_credentials_file_too_large_is_not_read_whole(path: Path) -> None:
    write(path, profile_text() + "#" * (1024 * 1024))
    message = load_error(path)
    assert message.startswith(f"credentials file {path} is larger than 1 MiB; ")
    assert "--credentials" in message


@pytest.mark.parametrize(
    "key, value, ini, expected",
    [
        (ACCESS, "KEY ID", True, "R3_ACCESS_KEY_ID contains white space"),
        (ACCESS, 'KEY"ID', False, "R3_ACCESS_KEY_ID contains a quote or a backslash"),
        (SECRET_KEY, "not*base64", False, "R3_SECRET_ACCESS_KEY is not valid base64"),
        (SECRET_KEY, "YOUR_BASE64_SECRET", False, "'YOUR_BASE64_SECRET', the placeholder"),
        (DEV, "YOUR_DEVELOPER_KEY", False, "or leave it out (the developer API key is optional)"),
        (DEV, "", False, "R3_DEVELOPER_API_KEY is empty"),
    ],
)
def test_check_value_names_the_source_given(key: str, value: str, ini: bool, expected: str) -> None:
    with pytest.raises(CredentialsError) as exc:
        check_value(key, value, "the paste", ini=ini, omit="leave it out")
    message = error_text(exc)
    assert message.startswith("the paste: ") and expected in message
    assert ("a comment after a value" in message) == ini
    assert "environment" not in message and "unset" not in message
    assert value_problem(key, value, ini=ini, omit="leave it out") == message[len("the paste: ") :]


@pytest.mark.parametrize("key, value", [(ACCESS, KEY_ID), (SECRET_KEY, SECRET_B64), (DEV, "D")])
def test_check_value_returns_a_value_serve_accepts(key: str, value: str) -> None:
    assert check_value(key, value, "anywhere") == value
    assert value_problem(key, value) is None


@pytest.mark.parametrize("keys_first", [False, True], ids=["in-section", "above-sections"])
def test_garbage_lines_are_reported_by_number_without_their_content(
    path: Path, keys_first: bool
) -> None:
    # A pasted secret on a line of its own (no '=') must not be echoed back.
    garbage = SECRET_B64.rstrip("=")
    assert "=" not in garbage and ":" not in garbage
    body = f"{ACCESS}={KEY_ID}\n{SECRET_KEY}={SECRET_B64}\n{garbage}\nnot a setting\n"
    write(path, body if keys_first else "[DEFAULT]\n" + body)
    message = load_error(path)
    assert str(path) in message
    first = 3 if keys_first else 4
    assert f"line {first}, {first + 1} " in message
    assert "not a setting" not in message


@pytest.mark.parametrize("key_id", ["KEY ID", 'KEY"ID', "KEY\\ID", "KEYÏD", "KEY\tID", "KEY\x7fID"])
def test_invalid_key_id_is_rejected(path: Path, key_id: str) -> None:
    write(path, profile_text("work", key_id=key_id))
    message = load_error(path, "work")
    assert ACCESS in message
    assert str(path) in message
    assert "[work]" in message


@pytest.mark.parametrize("key_id", ["KEY ID", 'KEY"ID'])
def test_invalid_key_id_in_environment(tmp_path: Path, key_id: str) -> None:
    message = load_error(tmp_path / "missing", "DEFAULT", {ACCESS: key_id, SECRET_KEY: SECRET_B64})
    assert ACCESS in message
    assert "environment" in message


# --- repr and masking -------------------------------------------------------------------------


def test_repr_hides_secret_and_developer_key(path: Path) -> None:
    write(path, profile_text(extra=f"{DEV}={DEVELOPER_KEY}\n"))
    creds = load(path)
    assert creds.developer_key == DEVELOPER_KEY
    assert_no_secret(repr(creds), str(creds))
    assert repr(SECRET) not in repr(creds)
    assert KEY_ID in repr(creds)


def test_repr_of_directly_built_credentials() -> None:
    creds = Credentials(KEY_ID, WIDE, DEVELOPER_KEY, "work", "/x/credentials")
    text = repr(creds)
    assert_no_secret(text)
    assert repr(WIDE) not in text
    assert "work" in text


def test_masked_key_id_shows_only_the_last_four() -> None:
    creds = Credentials(KEY_ID, SECRET)
    assert creds.masked_key_id == "*" * (len(KEY_ID) - 4) + KEY_ID[-4:]
    assert creds.masked_key_id.endswith("ABCD")
    assert KEY_ID[:-4] not in creds.masked_key_id


@pytest.mark.parametrize(
    ("value", "masked"),
    [("ABCDEFGH", "****EFGH"), ("ABCDE", "*BCDE"), ("ABCD", "****"), ("AB", "**"), ("", "")],
)
def test_mask(value: str, masked: str) -> None:
    assert mask(value) == masked


# --- found by review ---------------------------------------------------------------------


@pytest.mark.parametrize("first_line", ["[work", "[]", "[", "  [DEFAULT"])
def test_bracket_line_that_is_not_a_section_header(path: Path, first_line: str) -> None:
    write(path, f"# comment\n{first_line}\n{ACCESS}={KEY_ID}\n{SECRET_KEY}={SECRET_B64}\n")
    message = load_error(path)
    assert str(path) in message
    assert "line 2" in message


def test_nul_named_section_is_not_inherited(path: Path) -> None:
    write(path, profile_text("\x00") + "[work]\n")
    # A NUL-named section would be configparser's default section: such a file is refused.
    with pytest.raises(CredentialsError) as exc:
        load(path, "work")
    assert "NUL" in error_text(exc)


# --- credentials that people really have: inline comments, placeholders, export --------------

ROOT = Path(__file__).parent.parent
PLACEHOLDERS = ("YOUR_ACCESS_KEY_ID", "YOUR_BASE64_SECRET", "YOUR_DEVELOPER_KEY", "...")
WHITESPACE_HINT = "'#' or ';'"


def assert_loads_the_test_key(path: Path) -> None:
    """The file at ``path`` loads to the test key id, secret and developer key."""
    creds = load(path)
    assert (creds.access_key_id, creds.secret, creds.developer_key) == (
        KEY_ID,
        SECRET,
        DEVELOPER_KEY,
    )


def readme_credentials_block() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Credentials\n.*?^```ini\n(.*?)^```", readme, re.M | re.S)
    assert match, "README.md: no ```ini block under '## Credentials'"
    return match.group(1)


def with_real_values(text: str) -> str:
    """An example's text with real values in place of its placeholders."""
    text = text.replace("YOUR_ACCESS_KEY_ID", KEY_ID).replace("YOUR_BASE64_SECRET", SECRET_B64)
    text = text.replace("YOUR_DEVELOPER_KEY", DEVELOPER_KEY)
    return text.replace(f"{ACCESS}=...", f"{ACCESS}=WORKKEYID0001").replace(
        f"{SECRET_KEY}=...", f"{SECRET_KEY}={WIDE_B64}"
    )


def test_readme_block_with_real_values_and_its_inline_comment_loads(path: Path) -> None:
    block = readme_credentials_block()
    assert re.search(rf"^{DEV}=YOUR_DEVELOPER_KEY\s+# ", block, re.M), "the comment is the point"
    write(path, with_real_values(block))
    assert_loads_the_test_key(path)
    work = load(path, "work")
    assert (work.access_key_id, work.secret, work.developer_key) == ("WORKKEYID0001", WIDE, None)


def test_readme_block_as_it_is_names_its_placeholders(path: Path) -> None:
    write(path, readme_credentials_block())
    message = load_error(path)
    assert f"{ACCESS} is 'YOUR_ACCESS_KEY_ID', the placeholder" in message
    assert str(path) in message and "[DEFAULT]" in message
    message = load_error(path, "work")
    assert f"{ACCESS} is '...', the placeholder" in message
    assert str(path) in message and "[work]" in message


@pytest.mark.parametrize(
    "comment",
    ["# note", "; note", "\t# note", "      ;", "# KEY=other value", "#x ; y # z", '# "quoted"'],
)
def test_inline_comment_after_each_value(path: Path, comment: str) -> None:
    sep = "" if comment[0].isspace() else "  "
    write(
        path,
        f"[DEFAULT]\n{ACCESS}={KEY_ID}{sep}{comment}\n{SECRET_KEY}={SECRET_B64}{sep}{comment}\n"
        f"{DEV}={DEVELOPER_KEY}{sep}{comment}\n",
    )
    assert_loads_the_test_key(path)


def test_hash_or_semicolon_without_white_space_before_it_is_part_of_the_value(path: Path) -> None:
    write(path, profile_text(key_id="abc#def", extra=f"{DEV}=dev;key#1  # a comment\n"))
    creds = load(path)
    assert creds.access_key_id == "abc#def"
    assert creds.developer_key == "dev;key#1"


def test_hash_right_after_the_secret_is_a_base64_error_that_explains_comments(path: Path) -> None:
    write(path, profile_text(secret=f"{SECRET_B64}#note"))
    message = load_error(path)
    assert f"{SECRET_KEY} is not valid base64: it contains characters" in message
    assert WHITESPACE_HINT in message
    assert str(path) in message and "[DEFAULT]" in message


@pytest.mark.parametrize("quote", ['"', "'"])
def test_quoted_value_with_a_trailing_comment_loses_its_quotes(path: Path, quote: str) -> None:
    q = quote
    write(
        path,
        f"[DEFAULT]\n{ACCESS}={q}{KEY_ID}{q}  # id\n{SECRET_KEY} = {q}{SECRET_B64}{q}\t; secret\n"
        f"{DEV}={q}{DEVELOPER_KEY}{q} # dev\n",
    )
    assert_loads_the_test_key(path)


def test_comments_on_the_continuation_lines_of_a_wrapped_secret(path: Path) -> None:
    write(
        path,
        f"[DEFAULT]\n{ACCESS}={KEY_ID}\n{SECRET_KEY}={WIDE_B64[:120]}  # wrapped\n"
        f"    {WIDE_B64[120:240]} ; still\n\t{WIDE_B64[240:]}\t# the end\n    # after it\n",
    )
    assert load(path).secret == WIDE


@pytest.mark.parametrize("indent", ["", "    "], ids=["at-start", "indented"])
def test_comment_lines_between_the_continuation_lines_of_a_wrapped_secret(
    path: Path, indent: str
) -> None:
    # configparser alone ends the value at a comment line and reads the indented rest, which
    # ends in '==', as a key of its own: the secret would be cut short without a word.
    write(
        path,
        f"[DEFAULT]\n{ACCESS}={KEY_ID}\n{SECRET_KEY}={WIDE_B64[:120]}\n{indent}# part two:\n"
        f"    {WIDE_B64[120:240]}\n{indent}; part three:\n    {WIDE_B64[240:]}\n",
    )
    assert WIDE_B64[240:].endswith("==")
    assert load(path).secret == WIDE


def test_line_numbers_count_the_comment_lines(path: Path) -> None:
    write(path, f"# one\n; two\n{ACCESS}={KEY_ID}\n  # four\nnot a setting\n")
    message = load_error(path)
    assert "line 5 " in message
    assert "not a setting" not in message


def test_comment_after_a_profile_header_but_not_inside_it(path: Path) -> None:
    write(
        path, profile_text("work").replace("[work]", "[work]  # was [old]") + profile_text("a #2")
    )
    assert load(path, "work").access_key_id == KEY_ID
    assert load(path, "a #2").profile == "a #2"


@pytest.mark.parametrize("key", [ACCESS, SECRET_KEY])
def test_value_that_is_only_a_comment_is_empty(path: Path, key: str) -> None:
    write(path, profile_text().replace(f"{key}=", f"{key}=   # paste it here; ") + f"{DEV}= #\n")
    message = load_error(path)
    assert f"{key} is missing or empty" in message


def test_developer_key_that_is_only_a_comment_is_absent(path: Path) -> None:
    write(path, profile_text(extra=f"{DEV}=   # optional, needed for the REST API\n"))
    assert load(path).developer_key is None


@pytest.mark.parametrize("placeholder", PLACEHOLDERS)
@pytest.mark.parametrize("key", [ACCESS, SECRET_KEY, DEV])
def test_placeholder_in_the_file(path: Path, key: str, placeholder: str) -> None:
    values = {ACCESS: KEY_ID, SECRET_KEY: SECRET_B64, DEV: DEVELOPER_KEY, key: placeholder}
    write(path, "[work]\n" + "".join(f"{k}={v}  # from the README\n" for k, v in values.items()))
    message = load_error(path, "work")
    assert f"{key} is {placeholder!r}, the placeholder value from the README" in message
    assert str(path) in message and "[work]" in message
    assert "replace it with your real" in message and "Remote.It account page" in message
    if key == DEV:
        assert "remove the line" in message


@pytest.mark.parametrize("placeholder", PLACEHOLDERS)
@pytest.mark.parametrize("key", [ACCESS, SECRET_KEY, DEV])
def test_placeholder_in_the_environment(tmp_path: Path, key: str, placeholder: str) -> None:
    environ = {ACCESS: KEY_ID, SECRET_KEY: SECRET_B64, key: placeholder}
    message = load_error(tmp_path / "missing", "DEFAULT", environ)
    assert message.startswith(f"environment: {key} is {placeholder!r}, the placeholder value")
    assert "Remote.It account page" in message
    if key == DEV:
        assert f"unset {DEV}" in message


@pytest.mark.parametrize(
    "prefix",
    ["export ", "export\t", "export   ", "  export "],
    ids=["space", "tab", "spaces", "indented"],
)
def test_shell_export_lines(path: Path, prefix: str) -> None:
    write(
        path,
        f"# source me\n{prefix}{ACCESS}={KEY_ID}\n{prefix}{SECRET_KEY}='{SECRET_B64}'  # quoted\n"
        f"[work]\n{prefix}{ACCESS}=WORKKEYID0001\n{prefix}{SECRET_KEY}={WIDE_B64}\n"
        f"{prefix}{DEV}={DEVELOPER_KEY}\n",
    )
    creds = load(path)
    assert (creds.profile, creds.access_key_id, creds.secret) == ("DEFAULT", KEY_ID, SECRET)
    work = load(path, "work")
    assert (work.access_key_id, work.secret, work.developer_key) == (
        "WORKKEYID0001",
        WIDE,
        DEVELOPER_KEY,
    )


@pytest.mark.parametrize("prefix", ["EXPORT ", "exports ", "export_"])
def test_only_the_word_export_is_dropped(path: Path, prefix: str) -> None:
    write(path, f"[DEFAULT]\n{prefix}{ACCESS}={KEY_ID}\n{SECRET_KEY}={SECRET_B64}\n")
    assert f"{ACCESS} is missing or empty" in load_error(path)


def test_a_key_named_export_is_still_a_key(path: Path) -> None:
    write(path, profile_text(extra="export = 1\n"))
    assert load(path).secret == SECRET


@pytest.mark.parametrize("key", [ACCESS, DEV])
@pytest.mark.parametrize("value", ["ABC DEF", "ABC\tDEF", "ABC // a note", "ABC (optional)"])
def test_white_space_inside_a_key_id_or_developer_key_is_named(
    path: Path, tmp_path: Path, key: str, value: str
) -> None:
    values = {ACCESS: KEY_ID, SECRET_KEY: SECRET_B64, key: value}
    write(path, "[DEFAULT]\n" + "".join(f"{k}={v}\n" for k, v in values.items()))
    message = load_error(path)
    assert f"{key} contains white space" in message
    assert WHITESPACE_HINT in message
    assert value not in message and "ABC" not in message
    message = load_error(tmp_path / "missing", "DEFAULT", values)
    assert message.startswith(f"environment: {key} contains white space")
    assert WHITESPACE_HINT not in message  # an environment variable has no comments
    assert value not in message


@pytest.mark.parametrize(
    ("key_id", "cause"),
    [('KEY"ID', "a quote or a backslash"), ("KEY\\ID", "a quote or a backslash")]
    + [
        (k, "characters that are not printable ASCII")
        for k in ("KEYÏD", "KEY\x7fID", "KEY\u200bID")
    ],
)
def test_other_bad_characters_in_a_key_id_are_named(path: Path, key_id: str, cause: str) -> None:
    write(path, profile_text(key_id=key_id))
    message = load_error(path)
    assert f"{ACCESS} contains {cause}" in message
    assert key_id not in message


def test_truncated_secret_says_so(path: Path) -> None:
    write(path, profile_text(secret=WIDE_B64[:-4] + "A"))
    message = load_error(path)
    assert f"{SECRET_KEY} is not valid base64: part of it is missing" in message
    assert WIDE_B64[8:40] not in message


@pytest.mark.parametrize(
    "example", ["secrets/remoteit-credentials.example", "kubernetes/secret.example.yaml"]
)
def test_deploy_examples_name_their_placeholders_and_work_once_filled_in(
    path: Path, example: str
) -> None:
    text = (ROOT / "deploy" / example).read_text(encoding="utf-8")
    if example.endswith(".yaml"):
        text = yaml.safe_load(text)["stringData"]["credentials"]
    write(path, text)
    assert f"{ACCESS} is 'YOUR_ACCESS_KEY_ID', the placeholder" in load_error(path)
    # As the example says: real values in, and the developer key's line uncommented.
    uncommented = re.sub(rf"^(\s*)# ({DEV}=)", r"\1\2", with_real_values(text), flags=re.M)
    assert uncommented != with_real_values(text)
    write(path, uncommented)
    assert_loads_the_test_key(path)


_COMMENTS = st.tuples(
    st.sampled_from([" ", "\t", "   ", " \t"]),
    st.sampled_from("#;"),
    st.text(
        st.characters(blacklist_characters="\x00\r\n", blacklist_categories=["Cs"]), max_size=12
    ),
).map("".join)


@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(comments=st.lists(_COMMENTS, min_size=5, max_size=5), export=st.booleans())
def test_comments_and_export_never_change_what_is_read(
    tmp_path: Path, comments: list[str], export: bool
) -> None:
    before = "export " if export else ""
    lines = [
        f"[work]{comments[0]}",
        f"{before}{ACCESS}={KEY_ID}{comments[1]}",
        f"{before}{SECRET_KEY}={WIDE_B64[:100]}{comments[2]}",
        f"  {WIDE_B64[100:]}{comments[3]}",
        f"{before}{DEV}={DEVELOPER_KEY}{comments[4]}",
    ]
    path = write(tmp_path / "credentials", "\n".join(lines) + "\n")
    creds = load(path, "work")
    assert (creds.access_key_id, creds.secret, creds.developer_key) == (
        KEY_ID,
        WIDE,
        DEVELOPER_KEY,
    )


# --- property: any bytes give Credentials or CredentialsError ---------------------------------

_FRAGMENTS: list[bytes] = [
    b"[",
    b"]",
    b"[DEFAULT]",
    b"[default]",
    b"DEFAULT",
    b"R3_ACCESS_KEY_ID",
    b"R3_SECRET_ACCESS_KEY",
    b"R3_DEVELOPER_API_KEY",
    b"=",
    b":",
    b" ",
    b"\t",
    b"\n",
    b"\r\n",
    b"\r",
    b"#",
    b";",
    b'"',
    b"'",
    b"%(x)s",
    b"export ",
    b" #",
    b"\t;",
    b"YOUR_ACCESS_KEY_ID",
    b"YOUR_BASE64_SECRET",
    b"...",
    b".",
    b"\x00",
    b"\xff",
    b"\xef\xbb\xbf",
    "é\u2028\x85".encode(),
    KEY_ID.encode(),
    SECRET_B64.encode(),
    WIDE_URLSAFE[:12].encode(),
]
_INI_LIKE = st.lists(
    st.one_of(st.sampled_from(_FRAGMENTS), st.binary(max_size=3)), max_size=40
).map(b"".join)


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    data=st.one_of(st.binary(max_size=200), _INI_LIKE),
    profile=st.sampled_from(["DEFAULT", "default", "work"]),
)
def test_any_file_content_gives_credentials_or_credentials_error(
    tmp_path: Path, data: bytes, profile: str
) -> None:
    path = write_bytes(tmp_path / "credentials", data)
    try:
        creds = load(path, profile)
    except CredentialsError as exc:
        assert str(path) in str(exc)
    else:
        assert isinstance(creds, Credentials)
        assert creds.secret
