"""Writing one profile into the credentials file: atomically, privately, the rest kept as is."""

from __future__ import annotations

import codecs
import configparser
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, CredentialsError
from .credentials import FILE, SECRET_STORE, load_credentials
from .fileio import read_limited, replace_file
from .profiles import (
    ACCESS_KEY_ID,
    DEFAULT_PROFILE,
    DEVELOPER_API_KEY,
    MAX_CREDENTIALS_SIZE,
    SECRET_ACCESS_KEY,
    TOO_BIG,
    match_profile,
    parse_profiles,
)
from .values import decode_secret

# Lines with their own ending, split where parse_profiles splits them (\r\n, \r or \n).
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")
_EOL = re.compile(r"\r\n|\r|\n")
_HEADER = configparser.RawConfigParser.SECTCRE
# '.' is refused by select_profile; brackets and control characters would break the header.
_BAD_NAME = re.compile(r"[\[\].\x00-\x1f\x7f]")
_BOM = codecs.BOM_UTF8


@dataclass(frozen=True)
class Profile:
    """What one profile holds; ``secret`` is the base64 text, written exactly as given."""

    access_key_id: str
    secret: str = field(repr=False)
    developer_key: str | None = field(default=None, repr=False)
    comment: str | None = None  # the account's e-mail address, kept as '# comment'
    store: str = FILE  # where the secret is kept: in this file, or keychain.STORE

    def values(self) -> dict[str, str]:
        """The profile as parse_profiles reads it back: lower-case key to value."""
        values = {ACCESS_KEY_ID.lower(): self.access_key_id}
        if self.store == FILE:
            values[SECRET_ACCESS_KEY.lower()] = self.secret
        else:  # the secret is in the keychain: the file says so, and holds no secret
            values[SECRET_STORE] = self.store
        if self.developer_key:
            values[DEVELOPER_API_KEY.lower()] = self.developer_key
        return values

    def lines(self, name: str) -> list[str]:
        comment = [f"# {self.comment}"] if self.comment else []
        keys = [
            f"{key} = {value}" if key == SECRET_STORE else f"{key.upper()}={value}"
            for key, value in self.values().items()
        ]
        return [f"[{name}]", *comment, *keys]


@dataclass(frozen=True)
class Written:
    """What a write did, for the command's report."""

    path: Path  # as given
    real: Path  # the file written: ``path`` itself unless it leads through a symbolic link
    profile: str  # the name of the profile written (a profile replaced keeps its name)
    created: bool
    replaced: str | None  # the name of the profile replaced; None when one was added
    mode: int | None  # the file's permission bits now (None on Windows)


@dataclass(frozen=True)
class CredentialsFile:
    """The credentials file as it is now (empty when it does not exist yet)."""

    path: Path
    text: str = field(default="", repr=False)
    profiles: Mapping[str, Mapping[str, str]] = field(default_factory=dict, repr=False)
    file_stat: os.stat_result | None = None
    bom: bool = False
    data: bytes | None = field(default=None, repr=False)  # the bytes read; None: no file

    @classmethod
    def read(cls, path: Path) -> CredentialsFile:
        """Read and parse the file; one that cannot be parsed is refused, never overwritten."""
        try:
            data, st = read_limited(
                path,
                str(path),
                MAX_CREDENTIALS_SIZE,
                missing=None,
                directory="point --credentials at a file",
                too_big=TOO_BIG,
            )
        except FileNotFoundError:
            return cls(path)
        bom = data.startswith(_BOM)
        try:
            text = data[len(_BOM) if bom else 0 :].decode("utf-8")
            profiles = parse_profiles(text, path)
        except UnicodeDecodeError:
            raise ConfigError(f"{path} is not UTF-8 text; it was not changed: fix it") from None
        except CredentialsError as exc:
            raise ConfigError(f"{exc}; {path} was not changed: fix it, then run again") from None
        return cls(path, text, profiles, st, bom, data)

    def find(self, name: str) -> str | None:
        """The profile a write of ``name`` replaces: the one load_credentials picks for it."""
        if not name or _BAD_NAME.search(name) or name != name.strip():
            raise ConfigError(
                f"profile name {name!r} cannot be used: it must not be empty, start or end with "
                "a space, or contain '.', '[', ']' or control characters; pick another --profile"
            )
        return match_profile(self.profiles, name)

    def write(self, name: str, profile: Profile) -> Written:
        """Replace profile ``find(name)`` in place, keeping its name, or append ``[name]``; the
        rest stays as is. Refused if the file changed since it was read."""
        replaced = self.find(name)
        header = name if replaced is None else replaced
        text = self._edited(header, replaced, profile)
        self._check_parse(text, header, replaced, profile)
        data = (_BOM if self.bom else b"") + text.encode("utf-8")
        real = replace_file(
            self.path,
            data,
            before=self.data,
            status=self.file_stat,
            check=lambda tmp: _check_load(tmp, self.path, header, profile),
        )
        mode = stat.S_IMODE(real.stat().st_mode) if os.name == "posix" else None
        return Written(self.path, real, header, self.file_stat is None, replaced, mode)

    def _unsafe(self, name: str) -> ConfigError:
        return ConfigError(
            f"cannot update {self.path} safely (a line there is laid out in a way this command "
            f"does not recognise); it was not changed: add profile [{name}] by hand"
        )

    def _edited(self, name: str, replaced: str | None, profile: Profile) -> str:
        lines = _LINE.findall(self.text)
        first = _EOL.search(self.text)
        eol = first.group() if first else "\n"  # new lines end like the file's lines
        block = [line + eol for line in profile.lines(name)]
        if replaced is not None:
            span = _span(lines, replaced)
            if span is None:
                raise self._unsafe(name)
            return "".join(lines[: span[0]] + block + lines[span[1] :])
        if lines and not lines[-1].endswith(("\n", "\r")):
            lines[-1] += eol
        if lines and lines[-1].strip():
            lines.append(eol)  # a blank line before the new profile
        return "".join(lines + block)

    def _check_parse(self, text: str, name: str, replaced: str | None, profile: Profile) -> None:
        """The edited text must read as the old profiles plus the new one, nothing else."""
        try:
            after = parse_profiles(text, self.path)
        except CredentialsError:
            raise self._unsafe(name) from None
        wanted = {k: dict(v) for k, v in self.profiles.items() if k != replaced}
        if {k: v for k, v in after.items() if k != name} != wanted:
            raise self._unsafe(name)
        for key, value in profile.values().items():
            if after.get(name, {}).get(key) != value:
                raise ConfigError(
                    f"{key.upper()} cannot be written to {self.path} so that it reads back "
                    "unchanged (quotes around it, or a '#' or ';' after white space?); "
                    "it was not changed"
                )


def _span(lines: list[str], name: str) -> tuple[int, int] | None:
    """The lines of profile ``name``: its header (if any) to its last key line. The blank and
    comment lines after that stay, as they usually introduce the next profile."""
    start: int | None = None
    end = 0
    current = DEFAULT_PROFILE  # keys above any header belong to DEFAULT
    for index, line in enumerate(lines):
        stripped = line.strip()
        match = _HEADER.match(stripped) if stripped.startswith("[") else None
        if match:
            if start is not None:
                break
            current = match.group("header")
        if current == name and (match or (stripped and stripped[0] not in "#;")):
            start = index if start is None else start
            end = index + 1
    return None if start is None else (start, end)


def _check_load(tmp: Path, path: Path, name: str, profile: Profile) -> None:
    """The new file must load, as serve loads it, to exactly the values written."""
    try:
        loaded = load_credentials(tmp, name, {})
        wanted = (profile.access_key_id, decode_secret(profile.secret, str(path)))
    except CredentialsError as exc:
        reason = str(exc).replace(str(tmp), str(path))
        raise ConfigError(f"{reason}; {path} was not changed") from None
    if (loaded.access_key_id, loaded.secret) != wanted or (
        loaded.developer_key != (profile.developer_key or None)
    ):
        raise ConfigError(f"profile [{name}] would not read back unchanged; {path} was not changed")
