"""Credentials: the Remote.It INI file and environment variables, profiles, secret decoding."""

from __future__ import annotations

import base64
import binascii
import configparser
import logging
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CredentialsError

log = logging.getLogger(__name__)

ACCESS_KEY_ID = "R3_ACCESS_KEY_ID"
SECRET_ACCESS_KEY = "R3_SECRET_ACCESS_KEY"
DEVELOPER_API_KEY = "R3_DEVELOPER_API_KEY"
DEFAULT_PROFILE = "DEFAULT"
ENVIRONMENT = "environment"

# Key ids and developer keys go into header values: visible ASCII only, and no quote or
# backslash, which would break the quoted-string in the Authorization header.
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")
_FORBIDDEN_IN_KEY_ID = frozenset('"\\')
# A section name configparser can never produce, so that [DEFAULT] is an ordinary section here
# instead of configparser's special one whose keys every other section inherits.
_NO_DEFAULT_SECTION = "\x00"
_URLSAFE_TO_STANDARD = str.maketrans("-_", "+/")


@dataclass(frozen=True)
class Credentials:
    """One access key: id, decoded secret bytes and optional developer key."""

    access_key_id: str
    secret: bytes = field(repr=False)
    developer_key: str | None = field(default=None, repr=False)
    profile: str = DEFAULT_PROFILE
    source: str = ENVIRONMENT

    @property
    def masked_key_id(self) -> str:
        """The key id with all but its last 4 characters replaced by ``*``."""
        return mask(self.access_key_id)


def mask(value: str) -> str:
    """Replace all but the last 4 characters of ``value`` by ``*`` (all of it if it is short)."""
    if len(value) <= 4:
        return "*" * len(value)
    return "*" * (len(value) - 4) + value[-4:]


def default_credentials_path() -> Path:
    """``~/.remoteit/credentials`` (``Path.home()``: ``C:\\Users\\<user>`` on Windows)."""
    return Path.home() / ".remoteit" / "credentials"


def decode_secret(value: str, where: str) -> bytes:
    """Decode a secret from standard or URL-safe base64, with or without padding.

    White space anywhere is ignored (a secret wrapped over lines or pasted with spaces).
    ``where`` names the file and profile, or the environment, for the error message.
    """
    text = "".join(value.split()).translate(_URLSAFE_TO_STANDARD)
    text += "=" * (-len(text) % 4)
    try:
        secret = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        secret = b""
    if not secret:
        raise CredentialsError(
            f"{where}: {SECRET_ACCESS_KEY} is not valid base64; copy the secret access key "
            "again from the CSV file you downloaded when you created the key"
        )
    return secret


def _check_key_id(value: str, where: str) -> str:
    if not _TOKEN_CHARS.fullmatch(value) or _FORBIDDEN_IN_KEY_ID.intersection(value):
        raise CredentialsError(
            f"{where}: {ACCESS_KEY_ID} must be printable ASCII without spaces or quotes; "
            "copy the access key id again from the Remote.It account page"
        )
    return value


def _check_developer_key(value: str, where: str) -> str:
    if not _TOKEN_CHARS.fullmatch(value):
        raise CredentialsError(
            f"{where}: {DEVELOPER_API_KEY} must be printable ASCII without spaces; "
            "copy it again from the Remote.It account page"
        )
    return value


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1].strip()
    return value


def parse_profiles(text: str, path: Path) -> dict[str, dict[str, str]]:
    """Parse the text of a credentials file into ``{profile: {lower-case key: value}}``.

    Avoids configparser's traps: ``[DEFAULT]`` is an ordinary profile (nothing is inherited),
    no interpolation, keys above any section header belong to ``DEFAULT``, quotes around a
    value are removed. Duplicate profiles or keys are errors, not silently merged.
    """
    if "\x00" in text:
        # Also keeps configparser's default-section name below out of reach of any file.
        raise CredentialsError(f"{path} contains NUL characters; it is not a text file")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    offset = 0
    for line in text.split("\n"):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if not stripped.startswith("["):
            # The vendor's tools read keys above any section header as the DEFAULT profile.
            text = f"[{DEFAULT_PROFILE}]\n" + text
            offset = 1
        break
    parser = configparser.RawConfigParser(
        default_section=_NO_DEFAULT_SECTION,
        interpolation=None,
        strict=True,
        empty_lines_in_values=False,
        comment_prefixes=("#", ";"),
        inline_comment_prefixes=None,
        delimiters=("=", ":"),
    )
    try:
        parser.read_string(text, source=str(path))
    except configparser.DuplicateSectionError as exc:
        lineno = (exc.lineno or 0) - offset
        raise CredentialsError(
            f"{path}: profile [{exc.section}] appears twice (line {lineno}); keep only one"
        ) from None
    except configparser.DuplicateOptionError as exc:
        lineno = (exc.lineno or 0) - offset
        raise CredentialsError(
            f"{path}: key {exc.option.upper()} appears twice in profile [{exc.section}] "
            f"(line {lineno}); keep only one"
        ) from None
    except configparser.MissingSectionHeaderError as exc:
        raise CredentialsError(
            f"{path}: line {exc.lineno - offset} is not a valid '[profile]' header; "
            "close the bracket or remove the line"
        ) from None
    except configparser.ParsingError as exc:
        # Never echo the offending line: it may hold a secret.
        lines = ", ".join(str(lineno - offset) for lineno, _ in exc.errors[:5])
        raise CredentialsError(
            f"{path}: line {lines} is neither 'KEY=value' nor '[profile]'; "
            "fix or remove it (comments start with '#')"
        ) from None
    except configparser.Error as exc:
        raise CredentialsError(
            f"{path}: cannot be read as an INI file ({type(exc).__name__})"
        ) from None
    return {
        name: {key: _unquote(value or "") for key, value in parser.items(name)}
        for name in parser.sections()
    }


def select_profile(
    profiles: Mapping[str, Mapping[str, str]], name: str, path: Path
) -> tuple[str, Mapping[str, str]]:
    """Pick profile ``name``: exact match first, else a single case-insensitive match."""
    if "." in name:
        raise CredentialsError(
            f"profile name {name!r} contains '.', which profile names cannot; "
            "check --profile or REMOTEIT_PROXY_PROFILE"
        )
    if name in profiles:
        return name, profiles[name]
    folded = [p for p in profiles if p.casefold() == name.casefold()]
    if len(folded) == 1:
        log.warning(
            "profile [%s] is not in %s; using [%s] (profile names are case-sensitive)",
            name,
            path,
            folded[0],
        )
        return folded[0], profiles[folded[0]]
    known = ", ".join(f"[{p}]" for p in profiles) or "none"
    raise CredentialsError(
        f"profile [{name}] is not in {path} (profiles there: {known}); "
        "pick one with --profile NAME or REMOTEIT_PROXY_PROFILE"
    )


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise CredentialsError(
            f"credentials file {path} does not exist: create it with {ACCESS_KEY_ID} and "
            f"{SECRET_ACCESS_KEY} under [{DEFAULT_PROFILE}], pass --credentials PATH, or set "
            f"the environment variables {ACCESS_KEY_ID} and {SECRET_ACCESS_KEY}"
        ) from None
    except IsADirectoryError:
        raise CredentialsError(
            f"credentials path {path} is a directory; point --credentials at the file"
        ) from None
    except OSError as exc:
        raise CredentialsError(
            f"cannot read credentials file {path}: {exc.strerror}; check its permissions"
        ) from None
    if os.name == "posix" and stat.S_IMODE(mode) & 0o077:
        log.warning(
            "credentials file %s can be read by other users (mode %o); run: chmod 600 %s",
            path,
            stat.S_IMODE(mode),
            path,
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise CredentialsError(
            f"{path}: line {line} is not valid UTF-8; save the file as UTF-8 text"
        ) from None


def _from_environment(environ: Mapping[str, str]) -> tuple[str, str] | None:
    key_id = environ.get(ACCESS_KEY_ID, "").strip()
    secret = environ.get(SECRET_ACCESS_KEY, "").strip()
    if key_id and secret:
        return key_id, secret
    if key_id or secret:
        present, absent = (
            (ACCESS_KEY_ID, SECRET_ACCESS_KEY)
            if key_id
            else (
                SECRET_ACCESS_KEY,
                ACCESS_KEY_ID,
            )
        )
        raise CredentialsError(
            f"the environment variable {present} is set but {absent} is not: set both to use "
            f"credentials from the environment, or unset {present} to use the credentials file"
        )
    return None


def load_credentials(path: Path, profile: str, environ: Mapping[str, str]) -> Credentials:
    """Load the credentials to sign with.

    ``R3_ACCESS_KEY_ID`` and ``R3_SECRET_ACCESS_KEY`` in ``environ`` (both set) take precedence
    over the file, which then need not exist; ``R3_DEVELOPER_API_KEY`` likewise.
    """
    env_developer_key = environ.get(DEVELOPER_API_KEY, "").strip() or None
    pair = _from_environment(environ)
    if pair is not None:
        where = "environment"
        key_id, secret_text = pair
        profile_name, source, developer_key = ENVIRONMENT, ENVIRONMENT, None
    else:
        profile_name, values = select_profile(parse_profiles(_read_text(path), path), profile, path)
        where = f"{path}, profile [{profile_name}]"
        key_id = values.get(ACCESS_KEY_ID.lower(), "")
        secret_text = values.get(SECRET_ACCESS_KEY.lower(), "")
        developer_key = values.get(DEVELOPER_API_KEY.lower()) or None
        source = str(path)
        for key, value in ((ACCESS_KEY_ID, key_id), (SECRET_ACCESS_KEY, secret_text)):
            if not value:
                raise CredentialsError(
                    f"{where}: {key} is missing or empty; add a line '{key}=...' "
                    "with the value from the Remote.It account page"
                )
    if env_developer_key is not None:
        where_dev, developer_key = "environment", env_developer_key
    else:
        where_dev = where
    return Credentials(
        access_key_id=_check_key_id(key_id, where),
        secret=decode_secret(secret_text, where),
        developer_key=_check_developer_key(developer_key, where_dev) if developer_key else None,
        profile=profile_name,
        source=source,
    )
