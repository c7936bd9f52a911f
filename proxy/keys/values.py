"""Access key values: what serve accepts for each R3_* key, secret decoding, masking."""

from __future__ import annotations

import base64
import binascii
import re

from ..errors import CredentialsError
from .profiles import ACCESS_KEY_ID, DEVELOPER_API_KEY, SECRET_ACCESS_KEY

# Key ids and developer keys go into header values: visible ASCII only, and no quote or
# backslash, which would break the quoted-string in the Authorization header.
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")
_FORBIDDEN_IN_KEY_ID = frozenset('"\\')
# The account page's secrets decode to 30 bytes or more; an HMAC key under 16 bytes (128
# bits) is no real secret, but a file read while being written ('c2V' is valid base64).
MIN_SECRET_BYTES = 16
_URLSAFE_TO_STANDARD = str.maketrans("-_", "+/")
_BASE64_CHARS = re.compile(r"[A-Za-z0-9+/=]*")
# The values the README and the deploy examples show: placeholders, not secrets, so a message
# may name them. YOUR_BASE64_SECRET even decodes, as URL-safe base64.
_PLACEHOLDERS = frozenset({"YOUR_ACCESS_KEY_ID", "YOUR_BASE64_SECRET", "YOUR_DEVELOPER_KEY", "..."})
# What each key is called in messages, with its article.
_NAMES = {
    ACCESS_KEY_ID: ("an", "access key id"),
    SECRET_ACCESS_KEY: ("a", "secret access key"),
    DEVELOPER_API_KEY: ("a", "developer API key"),
}
_FROM_THE_CSV = "from the CSV file you downloaded when you created the key"


def mask(value: str) -> str:
    """Replace all but the last 4 characters of ``value`` by ``*`` (all of it if it is short)."""
    if len(value) <= 4:
        return "*" * len(value)
    return "*" * (len(value) - 4) + value[-4:]


def _comment_hint(ini: bool) -> str:
    # Only an INI file has comments: for any other source the hint would point the wrong way.
    if not ini:
        return ""
    return (
        " (a comment after a value must be separated from it by white space and start with "
        "'#' or ';')"
    )


def _placeholder(key: str, value: str, omit: str | None) -> str | None:
    if value not in _PLACEHOLDERS:
        return None
    source = "from the Remote.It account page"
    if key == SECRET_ACCESS_KEY:
        source += " (shown once, when you create the key, and in the CSV file you downloaded then)"
    optional = ""
    if key == DEVELOPER_API_KEY and omit:
        optional = f", or {omit} (the developer API key is optional)"
    return (
        f"{key} is {value!r}, the placeholder value from the README and the examples; "
        f"replace it with your real {_NAMES[key][1]} {source}{optional}"
    )


def _secret(value: str, ini: bool) -> bytes | str:
    """The secret's bytes, decoded from standard or URL-safe base64, or why it cannot be."""
    text = "".join(value.split())
    placeholder = _placeholder(SECRET_ACCESS_KEY, text, None)
    if placeholder is not None:
        return placeholder
    text = text.translate(_URLSAFE_TO_STANDARD)
    if not _BASE64_CHARS.fullmatch(text):
        return (
            f"{SECRET_ACCESS_KEY} is not valid base64: it contains characters that base64 does "
            f"not use{_comment_hint(ini)}; copy the secret access key again {_FROM_THE_CSV}"
        )
    text += "=" * (-len(text) % 4)
    try:
        secret = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        secret = b""
    if not secret:
        return (
            f"{SECRET_ACCESS_KEY} is not valid base64: part of it is missing or its '=' padding "
            f"is misplaced; copy the whole secret access key again {_FROM_THE_CSV}"
        )
    if len(secret) < MIN_SECRET_BYTES:
        return (
            f"{SECRET_ACCESS_KEY} is too short to be a secret access key ({len(secret)} bytes; "
            f"real ones are longer): it was cut off (a file being written?); copy the whole "
            f"secret access key again {_FROM_THE_CSV}"
        )
    return secret


def _token(key: str, value: str, ini: bool, omit: str | None) -> str | None:
    """Why ``value`` cannot go into a header (naming what is wrong with it), or None."""
    placeholder = _placeholder(key, value, omit)
    if placeholder is not None:
        return placeholder
    forbidden = _FORBIDDEN_IN_KEY_ID if key == ACCESS_KEY_ID else frozenset()
    if _TOKEN_CHARS.fullmatch(value) and not forbidden.intersection(value):
        return None
    article, name = _NAMES[key]
    if any(char.isspace() for char in value):
        problem = f"contains white space, which {article} {name} never does; remove it"
        problem += _comment_hint(ini)
    elif forbidden.intersection(value):
        # An INI file drops quotes around a whole value; anywhere else they are part of it.
        fix = "put quotes around the whole value or none" if ini else "remove it"
        problem = f"contains a quote or a backslash, which {article} {name} never does; {fix}"
    else:
        problem = (
            "contains characters that are not printable ASCII (such as invisible or typographic "
            "ones added by copying); remove them"
        )
    return f"{key} {problem}, or copy the {name} again from the Remote.It account page"


def value_problem(
    key: str, value: str, *, ini: bool = False, omit: str | None = None
) -> str | None:
    """Why serve would refuse ``value`` for ``key`` (one of the three R3_* keys), or None.

    The reason names the key and the fix, never the value (a placeholder excepted). ``ini``:
    the value comes from an INI file, where a comment may follow it and quotes around it are
    dropped; ``omit``: how to leave the optional developer key out there ('remove the line').
    """
    if key not in _NAMES:
        raise ValueError(f"not a credentials key: {key}")
    if not value:
        return f"{key} is empty"
    if key == SECRET_ACCESS_KEY:
        secret = _secret(value, ini)
        return secret if isinstance(secret, str) else None
    return _token(key, value, ini, omit)


def check_value(
    key: str, value: str, where: str, *, ini: bool = False, omit: str | None = None
) -> str:
    """``value``, if serve would accept it for ``key``; else CredentialsError '``where``: why'.
    ``where`` names the real source: 'PATH, profile [P]', 'environment', 'standard input, line
    2'...; ``ini`` and ``omit`` as for value_problem."""
    problem = value_problem(key, value, ini=ini, omit=omit)
    if problem is not None:
        raise CredentialsError(f"{where}: {problem}")
    return value


def decode_secret(value: str, where: str, *, ini: bool = False) -> bytes:
    """Decode a secret from standard or URL-safe base64, with or without padding.

    White space anywhere is ignored (a secret wrapped over lines or pasted with spaces).
    ``where`` names the file and profile, or the environment, for the error message; ``ini``
    as for value_problem.
    """
    secret = _secret(value, ini)
    if isinstance(secret, str):
        raise CredentialsError(f"{where}: {secret}")
    return secret
