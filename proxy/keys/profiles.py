"""The credentials file: read it safely, parse its INI profiles, choose one."""

from __future__ import annotations

import configparser
import logging
import os
import re
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..errors import CredentialsError
from .fileio import read_limited

log = logging.getLogger("proxy.profiles")  # the name log lines have always had

ACCESS_KEY_ID = "R3_ACCESS_KEY_ID"
SECRET_ACCESS_KEY = "R3_SECRET_ACCESS_KEY"
DEVELOPER_API_KEY = "R3_DEVELOPER_API_KEY"
DEFAULT_PROFILE = "DEFAULT"
KEYS = (ACCESS_KEY_ID, SECRET_ACCESS_KEY, DEVELOPER_API_KEY)
# A profile is some 150 bytes: thousands fit. A bigger file (or /dev/zero) is not read whole.
MAX_CREDENTIALS_SIZE = 1024 * 1024
TOO_BIG = "a credentials file is far smaller: check that --credentials names the right file"
# A section name configparser can never produce, so that [DEFAULT] is an ordinary section here
# instead of configparser's special one whose keys every other section inherits.
_NO_DEFAULT_SECTION = "\x00"
# A comment after a value: '#' or ';' after white space, as configparser's inline comments.
# Key ids, base64 secrets and developer keys never contain white space, so this cuts nothing.
_INLINE_COMMENT = re.compile(r"\s[#;]")
# credential_process holds a command line: read as written, for shlex to split.
_SHELL_LINE = re.compile(r"[ \t]*credential_process[ \t]*[=:]", re.IGNORECASE)
# The shell's "export KEY=value": the vendor's examples `source` the credentials file.
_EXPORT = re.compile(r"^([ \t]*)export[ \t]+(?=[^\s=:])")


def read_text(path: Path) -> str:
    """The file's text; warns when other users may read it, as ssh does."""
    data, status = read_limited(
        path,
        f"credentials file {path}",
        MAX_CREDENTIALS_SIZE,
        missing=(
            "store your access key in it with 'remoteit-proxy import FILE' (the file the "
            "Remote.It account page downloads) or 'remoteit-proxy configure', or pass "
            f"--credentials PATH, or set the environment variables {ACCESS_KEY_ID} and "
            f"{SECRET_ACCESS_KEY}"
        ),
        directory="point --credentials at the file",
        too_big=TOO_BIG,
        error=CredentialsError,
        regular=True,
    )
    mode = status.st_mode
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


def _clean_line(line: str) -> str:
    """A line that is not a comment, without its inline comment and its leading ``export``."""
    if _SHELL_LINE.match(line):
        return line  # its quotes and any '#' or ';' are the command's, split as a shell would
    # In a '[profile]' header, only what follows the closing bracket can be a comment.
    start = line.find("]") + 1 if line.lstrip().startswith("[") else 0
    comment = _INLINE_COMMENT.search(line, start)
    if comment is not None:
        line = line[: comment.start()].rstrip()
    return _EXPORT.sub(r"\1", line, count=1)


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1].strip()
    return value


def parse_profiles(text: str, path: Path) -> dict[str, dict[str, str]]:
    """Parse the text of a credentials file into ``{profile: {lower-case key: value}}``.

    Avoids configparser's traps: ``[DEFAULT]`` is an ordinary profile (nothing is inherited),
    no interpolation, keys above any section header belong to ``DEFAULT``, quotes around a
    value are removed. Also read: comments after a value (``#`` or ``;`` after white space,
    on continuation lines too), comment lines between a value's continuation lines, and
    shell-style ``export KEY=value`` lines. Duplicate profiles or keys are errors, not merged.
    """
    if "\x00" in text:
        # Also keeps configparser's default-section name below out of reach of any file.
        raise CredentialsError(f"{path} contains NUL characters; it is not a text file")
    # Line by line on "\n" only, as configparser reads. Comment lines are dropped here, not left
    # to configparser, where one would end a value and cut a secret wrapped around it short.
    # numbers[i] is the number in the file of the i-th line configparser gets, for messages.
    lines: list[str] = []
    numbers: list[int] = []
    for number, line in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), 1):
        if line.strip()[:1] not in ("#", ";"):
            lines.append(_clean_line(line))
            numbers.append(number)
    first = next((line.strip() for line in lines if line.strip()), "[")
    if not first.startswith("["):
        # The vendor's tools read keys above any section header as the DEFAULT profile.
        lines.insert(0, f"[{DEFAULT_PROFILE}]")
        numbers.insert(0, 0)

    def in_file(lineno: int | None) -> int:
        return numbers[lineno - 1] if lineno and lineno <= len(numbers) else 0

    parser = configparser.RawConfigParser(
        default_section=_NO_DEFAULT_SECTION,
        interpolation=None,
        strict=True,
        empty_lines_in_values=False,
        comment_prefixes=(),
        inline_comment_prefixes=None,
        delimiters=("=", ":"),
    )
    try:
        parser.read_string("\n".join(lines), source=str(path))
    except configparser.DuplicateSectionError as exc:
        raise CredentialsError(
            f"{path}: profile [{exc.section}] appears twice (line {in_file(exc.lineno)}); "
            "keep only one"
        ) from None
    except configparser.DuplicateOptionError as exc:
        # Only a known key is named: any other 'name' may be a pasted secret, such as a base64
        # value whose '=' padding made it read as 'name=' (configparser lower-cases it).
        what = f"key {exc.option.upper()}" if exc.option.upper() in KEYS else "a line"
        raise CredentialsError(
            f"{path}: {what} appears twice in profile [{exc.section}] "
            f"(line {in_file(exc.lineno)}); keep only one"
        ) from None
    except configparser.MissingSectionHeaderError as exc:
        raise CredentialsError(
            f"{path}: line {in_file(exc.lineno)} is not a valid '[profile]' header; "
            "close the bracket or remove the line"
        ) from None
    except configparser.ParsingError as exc:
        # Never echo the offending line: it may hold a secret.
        where = ", ".join(str(in_file(lineno)) for lineno, _ in exc.errors[:5])
        raise CredentialsError(
            f"{path}: line {where} is neither 'KEY=value' nor '[profile]'; "
            "fix or remove it (a comment starts with '#' or ';', after white space when it "
            "follows a value)"
        ) from None
    except configparser.Error:
        raise CredentialsError(
            f"{path}: cannot be read as an INI file of '[profile]' headers and 'KEY=value' "
            "lines; fix it or create it again"
        ) from None
    return {
        name: {
            key: (value or "").strip() if key == "credential_process" else _unquote(value or "")
            for key, value in parser.items(name)
        }
        for name in parser.sections()
    }


def match_profile(names: Iterable[str], name: str) -> str | None:
    """The profile ``name`` selects among ``names``: ``name`` itself, else the only one that
    differs from it in case only; None when there is neither (or several of the latter)."""
    names = list(names)
    if name in names:
        return name
    folded = [p for p in names if p.casefold() == name.casefold()]
    return folded[0] if len(folded) == 1 else None


def select_profile(
    profiles: Mapping[str, Mapping[str, str]], name: str, path: Path
) -> tuple[str, Mapping[str, str]]:
    """Pick profile ``name``: exact match first, else a single case-insensitive match."""
    if "." in name:
        raise CredentialsError(
            f"profile name {name!r} contains '.', which profile names cannot; "
            "check --profile or REMOTEIT_PROXY_PROFILE"
        )
    found = match_profile(profiles, name)
    if found is None:
        known = ", ".join(f"[{p}]" for p in profiles) or "none"
        raise CredentialsError(
            f"profile [{name}] is not in {path} (profiles there: {known}); "
            "pick one with --profile NAME or REMOTEIT_PROXY_PROFILE"
        )
    if found != name:
        log.warning(
            "profile [%s] is not in %s; using [%s] (profile names are case-sensitive)",
            name,
            path,
            found,
        )
    return found, profiles[found]
