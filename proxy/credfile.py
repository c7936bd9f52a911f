"""Writing one profile into the credentials file: atomically, privately, the rest kept as is."""

from __future__ import annotations

import codecs
import configparser
import contextlib
import os
import re
import stat
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .credentials import decode_secret, load_credentials
from .errors import ConfigError, CredentialsError
from .profiles import (
    ACCESS_KEY_ID,
    DEFAULT_PROFILE,
    DEVELOPER_API_KEY,
    SECRET_ACCESS_KEY,
    parse_profiles,
)

# Lines with their own ending, split where parse_profiles splits them (\r\n, \r or \n).
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")
_EOL = re.compile(r"\r\n|\r|\n")
_HEADER = configparser.RawConfigParser.SECTCRE
# '.' is refused by select_profile; brackets and control characters would break the header.
_BAD_NAME = re.compile(r"[\[\].\x00-\x1f\x7f]")
_BOM = codecs.BOM_UTF8
FOLDER_MODE = 0o700


@dataclass(frozen=True)
class Profile:
    """What one profile holds; ``secret`` is the base64 text, written exactly as given."""

    access_key_id: str
    secret: str = field(repr=False)
    developer_key: str | None = field(default=None, repr=False)
    comment: str | None = None  # the account's e-mail address, kept as '# comment'

    def values(self) -> dict[str, str]:
        """The profile as parse_profiles reads it back: lower-case key to value."""
        values = {ACCESS_KEY_ID.lower(): self.access_key_id, SECRET_ACCESS_KEY.lower(): self.secret}
        if self.developer_key:
            values[DEVELOPER_API_KEY.lower()] = self.developer_key
        return values

    def lines(self, name: str) -> list[str]:
        comment = [f"# {self.comment}"] if self.comment else []
        keys = [f"{key.upper()}={value}" for key, value in self.values().items()]
        return [f"[{name}]", *comment, *keys]


@dataclass(frozen=True)
class Written:
    """What a write did, for the command's report."""

    path: Path
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

    @classmethod
    def read(cls, path: Path) -> CredentialsFile:
        """Read and parse the file; one that cannot be parsed is refused, never overwritten."""
        try:
            data, st = path.read_bytes(), path.stat()
        except FileNotFoundError:
            return cls(path)
        except IsADirectoryError:
            raise ConfigError(f"{path} is a directory; point --credentials at a file") from None
        except OSError as exc:
            raise ConfigError(
                f"cannot read {path}: {exc.strerror}; check its permissions"
            ) from None
        bom = data.startswith(_BOM)
        try:
            text = data[len(_BOM) if bom else 0 :].decode("utf-8")
            profiles = parse_profiles(text, path)
        except UnicodeDecodeError:
            raise ConfigError(f"{path} is not UTF-8 text; it was not changed: fix it") from None
        except CredentialsError as exc:
            raise ConfigError(f"{exc}; {path} was not changed: fix it, then run again") from None
        return cls(path, text, profiles, st, bom)

    def find(self, name: str) -> str | None:
        """The profile a write of ``name`` replaces: ``name`` itself, else the only one that
        differs from it in case only (which load_credentials would pick for ``name``)."""
        if not name or _BAD_NAME.search(name) or name != name.strip():
            raise ConfigError(
                f"profile name {name!r} cannot be used: it must not be empty, start or end with "
                "a space, or contain '.', '[', ']' or control characters; pick another --profile"
            )
        if name in self.profiles:
            return name
        folded = [p for p in self.profiles if p.casefold() == name.casefold()]
        return folded[0] if len(folded) == 1 else None

    def write(self, name: str, profile: Profile) -> Written:
        """Replace profile ``find(name)`` in place, or append ``[name]``; the rest stays as is."""
        replaced = self.find(name)
        text = self._edited(name, replaced, profile)
        self._check_parse(text, name, replaced, profile)
        data = (_BOM if self.bom else b"") + text.encode("utf-8")
        _replace(self, data, lambda tmp: _check_load(tmp, self.path, name, profile))
        mode = stat.S_IMODE(self.path.stat().st_mode) if os.name == "posix" else None
        return Written(self.path, self.file_stat is None, replaced, mode)

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


def _replace(old: CredentialsFile, data: bytes, check: Callable[[Path], None]) -> None:
    """Write ``data`` to a new private file next to the target, then rename it over the target,
    so that a reader (or a crash) sees either the old file or the new one, never half of one."""
    target = Path(os.path.realpath(old.path))  # through a symbolic link: the link stays
    folder = target.parent
    try:
        folder.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        # mkstemp creates the file with mode 0600 (O_CREAT | O_EXCL): private from the first byte.
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise ConfigError(
            f"cannot write {old.path}: {exc.strerror} in the folder {folder}; check that it "
            "exists or can be created and that you may create files in it"
        ) from None
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        check(tmp)
        if old.file_stat is not None and os.name == "posix":
            # An existing file keeps its mode and, when allowed, its owner: a file prepared
            # with sudo for a service user stays that user's.
            os.chmod(tmp, stat.S_IMODE(old.file_stat.st_mode))
            with contextlib.suppress(OSError):
                os.chown(tmp, old.file_stat.st_uid, old.file_stat.st_gid)
        if _stamp(target) != _stamp(old.file_stat):
            raise ConfigError(f"{old.path} changed while being updated; it was not: run again")
        os.replace(tmp, target)
    except OSError as exc:
        raise ConfigError(
            f"cannot write {old.path}: {exc.strerror}; it was not changed: free some space or "
            "check the folder's permissions, then run again"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    if os.name == "posix":  # make the rename itself durable; some file systems cannot
        with contextlib.suppress(OSError):
            folder_fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(folder_fd)
            finally:
                os.close(folder_fd)


def _stamp(where: Path | os.stat_result | None) -> tuple[int, int, int] | None:
    if isinstance(where, Path):
        try:
            where = where.stat()
        except FileNotFoundError:
            return None
    return None if where is None else (where.st_mtime_ns, where.st_size, where.st_ino)
