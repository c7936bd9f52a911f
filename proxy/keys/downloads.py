"""Reading the keys the Remote.It account page gives: its download, in each form; a key file."""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from .fileio import read_limited
from .profiles import ACCESS_KEY_ID, DEVELOPER_API_KEY, KEYS, SECRET_ACCESS_KEY, parse_profiles

# Far more than any download; a bigger file is something else, and is not read into memory.
_MAX_SIZE = 64 * 1024
_CSV_HEADER = ("Access Key ID", "Secret Access Key")
_EXPECTED = f"expected a header '{','.join(_CSV_HEADER)}' and one row under it"
# What only the INI form has: a '[profile]' header or a KEY=value line of the Remote.It tools.
_INI_LINE = re.compile(r"\s*(?:\[|(?:export\s+)?R3_\w+\s*[=:])", re.IGNORECASE)
_EMAIL = re.compile(r"[^\s@]+@[^\s@]+")
# The developer key file: the key alone, or the line a shell or an env file would have.
_DEVELOPER_KEY_LINE = re.compile(rf"(?:export\s+)?{DEVELOPER_API_KEY}\s*=(.*)", re.IGNORECASE)
# 'NAME=value' for another name. A value of '=' only is base64 padding: the key itself.
_OTHER_LINE = re.compile(r"(?:export\s+)?([A-Za-z_]\w*)\s*=\s*(?=.*[^=\s]).*")
_KEY_ALONE = f"it must hold the developer API key alone, or a line '{DEVELOPER_API_KEY}=KEY'"


@dataclass(frozen=True)
class Download:
    """The access key read from a download; values as written there, not yet validated."""

    access_key_id: str
    secret: str = field(repr=False)
    developer_key: str | None = field(default=None, repr=False)  # not in real downloads
    email: str | None = None  # the '# user@example.com' line of the INI form
    form: str = "CSV"

    @property
    def ini(self) -> bool:
        """Read as an INI file: comments after values cut, quotes around them dropped."""
        return self.form != "CSV"


def read_download(path: Path) -> Download:
    """Read ``path`` as the INI ``credentials`` / ``remoteit-credentials`` file or the CSV,
    recognised by their content, whatever the file is called."""
    text = _read(path)
    if any(_INI_LINE.match(line) for line in text.splitlines()):
        return _from_ini(text, path)
    return _from_csv(text, path)


def read_developer_key_file(path: Path, where: str) -> str:
    """The developer API key (copied from the account page) in a file: alone, or in a line
    ``R3_DEVELOPER_API_KEY=KEY`` (``export`` before it and quotes around the key allowed)."""
    data, _ = read_limited(
        path,
        where,
        _MAX_SIZE,
        missing="check the path",
        directory=_KEY_ALONE,
        too_big=_KEY_ALONE,
    )
    try:
        text = data.decode("utf-8-sig").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{where} is not UTF-8 text; {_KEY_ALONE}") from None
    if not text:
        raise ConfigError(
            f"{where} is empty; put the developer API key from the account page in it"
        )
    if len(text.splitlines()) > 1:
        raise ConfigError(f"{where} has more than one line; {_KEY_ALONE}")
    named = _DEVELOPER_KEY_LINE.fullmatch(text)
    if named:
        value = named.group(1).strip()
        quoted = len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'"
        return value[1:-1].strip() if quoted else value
    other = _OTHER_LINE.fullmatch(text)
    if other:
        # Only a known key is named: any other NAME may be part of a pasted key.
        known = other.group(1).upper()
        what = (
            f"a line {known}=..., not the developer API key"
            if known in KEYS
            else f"a line NAME=... for another setting than {DEVELOPER_API_KEY}"
        )
        raise ConfigError(f"{where} holds {what}; {_KEY_ALONE}")
    return text


def _read(path: Path) -> str:
    data, _ = read_limited(
        path,
        str(path),
        _MAX_SIZE,
        missing=(
            "give the file the Remote.It account page downloaded when you created the access "
            "key (credentials, remoteit-credentials or a .csv file)"
        ),
        directory="give the downloaded file itself",
        too_big="the account page downloads a far smaller file: check that it is the right one",
    )
    # A spreadsheet program saving "Unicode text" writes UTF-16 with a byte order mark.
    utf16 = data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    try:
        text = data.decode("utf-16" if utf16 else "utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(
            f"{path} is not UTF-8 text; give the file the account page downloaded, not a "
            "document or spreadsheet saved from it"
        ) from None
    if not text.strip():
        raise ConfigError(
            f"{path} is empty; give the file the account page downloaded when you created the "
            "access key (if you no longer have it, create a new key there)"
        )
    return text


def _from_ini(text: str, path: Path) -> Download:
    profiles = parse_profiles(text, path)
    if len(profiles) != 1:
        found = ", ".join(f"[{name}]" for name in profiles) or "none"
        raise ConfigError(
            f"{path} holds {len(profiles)} profiles ({found}), the account page's download "
            "holds exactly one: import a file with only the profile you want"
        )
    ((name, values),) = profiles.items()
    for key in (ACCESS_KEY_ID, SECRET_ACCESS_KEY):
        if not values.get(key.lower()):
            raise ConfigError(
                f"{path}, profile [{name}]: {key} is missing or empty; give the complete file "
                "the account page downloaded"
            )
    return Download(
        access_key_id=values[ACCESS_KEY_ID.lower()],
        secret=values[SECRET_ACCESS_KEY.lower()],
        developer_key=values.get(DEVELOPER_API_KEY.lower()) or None,
        email=_email(text),
        form="credentials file",
    )


def _email(text: str) -> str | None:
    """The account's address from the download's '# user@example.com' comment line."""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped[:1] in ("#", ";") and _EMAIL.fullmatch(stripped.lstrip("#;").strip()):
            return stripped.lstrip("#;").strip()
    return None


def _from_csv(text: str, path: Path) -> Download:
    neither = (
        f"{path} is neither the credentials file nor the CSV the Remote.It account page downloads"
    )
    first = text.lstrip().partition("\n")[0]
    # Spreadsheet programs in some locales save with ';' or tabs between the columns.
    delimiter = next((d for d in ",;\t" if d in first), ",")
    try:
        rows = [
            row
            for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
            if any(cell.strip() for cell in row)
        ]
    except csv.Error:
        # The csv module's message may quote the line, which holds the secret: not shown.
        raise ConfigError(f"{neither}: it cannot be read as CSV; {_EXPECTED}") from None
    header = [" ".join(cell.split()).casefold() for cell in rows[0]] if rows else []
    wanted = [name.casefold() for name in _CSV_HEADER]
    if not all(header.count(name) == 1 for name in wanted):
        raise ConfigError(f"{neither}: {_EXPECTED}")
    if len(rows) != 2:
        raise ConfigError(
            f"{path} has {len(rows) - 1} rows under its header '{','.join(_CSV_HEADER)}', "
            "the account page's download has exactly one: keep only the row of the key you want"
        )
    columns = [header.index(name) for name in wanted]
    row = rows[1]
    if len(row) <= max(columns):
        raise ConfigError(
            f"{path}: the row under the header has {len(row)} columns, the header "
            f"{len(header)}; give the file the account page downloaded, unchanged"
        )
    key_id, secret = (row[column].strip() for column in columns)
    for column, value in zip(_CSV_HEADER, (key_id, secret), strict=True):
        if not value:
            raise ConfigError(f"{path}: the column '{column}' is empty; {_EXPECTED}")
    return Download(access_key_id=key_id, secret=secret)
