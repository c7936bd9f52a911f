"""The credentials file: read it safely, parse its INI profiles, choose one."""

from __future__ import annotations

import configparser
import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from .errors import CredentialsError

log = logging.getLogger(__name__)

ACCESS_KEY_ID = "R3_ACCESS_KEY_ID"
SECRET_ACCESS_KEY = "R3_SECRET_ACCESS_KEY"
DEVELOPER_API_KEY = "R3_DEVELOPER_API_KEY"
DEFAULT_PROFILE = "DEFAULT"
# A section name configparser can never produce, so that [DEFAULT] is an ordinary section here
# instead of configparser's special one whose keys every other section inherits.
_NO_DEFAULT_SECTION = "\x00"


def read_text(path: Path) -> str:
    """The file's text; warns when other users may read it, as ssh does."""
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
