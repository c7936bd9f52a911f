"""import and configure: a downloaded or typed access key stored as a profile, the rest kept."""

from __future__ import annotations

import asyncio
import codecs
import errno
import io
import os
import select
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web
from conftest import DEVELOPER_KEY, KEY_ID, SECRET, SECRET_B64
from fake_upstream import FakeUpstream, Received
from test_cli import base_env
from test_proxy import closed_port

from proxy.errors import ConfigError, CredentialsError
from proxy.keys.credentials import load_credentials
from proxy.keys.credfile import CredentialsFile, Profile
from proxy.keys.onboard import run_configure, run_import
from proxy.keys.profiles import select_profile
from proxy.keys.terminal import Terminal
from proxy.keys.values import mask

EMAIL = "user@example.com"
INI_DOWNLOAD = (
    f"[DEFAULT]\n# {EMAIL}\nR3_ACCESS_KEY_ID={KEY_ID}\nR3_SECRET_ACCESS_KEY={SECRET_B64}\n"
)
OLD_INI_DOWNLOAD = INI_DOWNLOAD.replace("[DEFAULT]", "[default]")
CSV_DOWNLOAD = f"Access Key ID,Secret Access Key\n{KEY_ID},{SECRET_B64}\n"
OTHER_KEY_ID = "OTHERKEYID000000WXYZ"
# An existing file whose bytes must survive: comments, CRLF, a BOM-free mixed layout, no final
# newline, odd spacing and lower-case keys.
EXISTING = (
    b"# my Remote.It keys\r\n"
    b"[work]\r\n"
    b"r3_access_key_id = WORKKEY\r\n"
    b"R3_SECRET_ACCESS_KEY=AAAAAAAAAAAAAAAAAAAAAAAA\r\n"
    b"\r\n"
    b"; the old one\r\n"
    b"[DEFAULT]\r\n"
    b"# old@example.com\r\n"
    b"R3_ACCESS_KEY_ID=" + OTHER_KEY_ID.encode() + b"\r\n"
    b"R3_SECRET_ACCESS_KEY=AAAAAAAAAAAAAAAAAAAAAAAA\r\n"
    b"R3_DEVELOPER_API_KEY=OLD-DEVKEY\r\n"
    b"\r\n"
    b"# personal\r\n"
    b"[personal]\r\n"
    b"R3_ACCESS_KEY_ID=PERSONAL\r\n"
    b"R3_SECRET_ACCESS_KEY=AAAAAAAAAAAAAAAAAAAAAAAA"
)
OLD_DEFAULT_START = EXISTING.index(b"[DEFAULT]")
OLD_DEFAULT_END = EXISTING.index(b"\r\n\r\n# personal") + 2
LEAKS = (SECRET_B64, SECRET_B64.rstrip("="), DEVELOPER_KEY, repr(SECRET))


# Where the developer key is asked for: nobody answers (the tests run offline).
OFFLINE = f"http://127.0.0.1:{closed_port()}"


def cli(
    home: Path,
    *args: str,
    stdin: str = "",
    env: dict[str, str] | None = None,
    shell_first: str = "",
) -> tuple[int, str, str]:
    """Run ``python -m proxy ARGS`` (standard input not a terminal); (code, stdout, stderr).
    ``shell_first``: a POSIX shell command run before, in the same process (``ulimit``)."""
    command = [sys.executable, "-m", "proxy", *args]
    if shell_first:
        command = ["sh", "-c", f'{shell_first} && exec "$0" "$@"', *command]
    result = subprocess.run(
        command,
        # import and configure ask the API for the developer key: here, a closed local port.
        env=base_env(home) | {"REMOTEIT_PROXY_UPSTREAM": OFFLINE} | (env or {}),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
    )
    for leak in LEAKS:
        assert leak not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.returncode, result.stdout, result.stderr


def scripted(
    asked: list[str] | None = None,
    secrets: list[str] | None = None,
    interactive: bool = True,
    stdin: str = "",
) -> tuple[Terminal, list[str]]:
    """A terminal answering from lists (or ``stdin``); returns it and the messages it told."""
    told: list[str] = []
    answers, hidden = list(asked or []), list(secrets or [])
    lines = stdin.splitlines(keepends=True)
    return (
        Terminal(
            interactive=interactive,
            ask=lambda prompt: answers.pop(0),
            ask_secret=lambda prompt: hidden.pop(0),
            read_line=lambda: lines.pop(0) if lines else "",
            tell=told.append,
        ),
        told,
    )


def download(tmp_path: Path, text: str | bytes, name: str = "credentials") -> Path:
    path = tmp_path / "Downloads" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def do_import(source: Path, target: Path, **options: object) -> list[str]:
    kwargs: dict[str, object] = {
        "credentials": target,
        "profile": "DEFAULT",
        "force": False,
        "developer_key_file": None,
        "terminal": scripted(interactive=False)[0],
        "environ": {},
    }
    kwargs.update(options)
    return run_import(source, **kwargs)  # type: ignore[arg-type]


def loaded(path: Path, profile: str = "DEFAULT") -> tuple[str, bytes, str | None]:
    creds = load_credentials(path, profile, {})
    return creds.access_key_id, creds.secret, creds.developer_key


@pytest.mark.parametrize(
    "name, text",
    [
        ("credentials", INI_DOWNLOAD),
        ("remoteit-credentials", OLD_INI_DOWNLOAD),
        ("key.csv", CSV_DOWNLOAD),
    ],
    ids=["credentials", "remoteit-credentials", "csv"],
)
def test_each_download_form_round_trips_through_the_command(
    tmp_path: Path, name: str, text: str
) -> None:
    key_file = tmp_path / "devkey"
    key_file.write_text(DEVELOPER_KEY + "\n")
    source = download(tmp_path, text, name)
    code, out, err = cli(tmp_path, "import", str(source), "--developer-key-file", str(key_file))
    assert code == 0, err
    target = tmp_path / ".remoteit" / "credentials"
    assert loaded(target) == (KEY_ID, SECRET, DEVELOPER_KEY)
    assert mask(KEY_ID) in out and "[DEFAULT]" in out and str(target) in out
    assert "Developer API key: stored" in out
    assert "remoteit-proxy check --profile DEFAULT" in out
    assert (f"# {EMAIL}" in target.read_text()) == text.startswith("[")
    if os.name == "posix":
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    assert sorted(p.name for p in target.parent.iterdir()) == ["credentials"]  # no temp file


@pytest.mark.parametrize(
    "data",
    [
        f"Secret Access Key,Access Key ID\n{SECRET_B64},{KEY_ID}\n".encode(),
        f'"Access Key ID","Secret Access Key"\r\n"{KEY_ID}","{SECRET_B64}"\r\n'.encode(),
        codecs.BOM_UTF8 + f"Access Key ID,Secret Access Key\r\n{KEY_ID},{SECRET_B64}".encode(),
        f"\n access key id , SECRET ACCESS KEY \n\n{KEY_ID} , {SECRET_B64}\n\n".encode(),
        f"Access Key ID;Secret Access Key\n{KEY_ID};{SECRET_B64}\n".encode(),
        codecs.BOM_UTF16_LE
        + f"Access Key ID\tSecret Access Key\r\n{KEY_ID}\t{SECRET_B64}\r\n".encode("utf-16-le"),
    ],
    ids=["swapped", "quoted-crlf", "bom-no-final-newline", "spacing", "semicolons", "utf16"],
)
def test_csv_variants(tmp_path: Path, data: bytes) -> None:
    target = tmp_path / "credentials"
    # Named like the INI form: the form is told by the content, not the name.
    lines = do_import(download(tmp_path, data, "credentials"), target)
    assert loaded(target) == (KEY_ID, SECRET, None)
    assert "# " not in target.read_text()  # the CSV has no e-mail line to keep
    assert "Developer API key: none" in "\n".join(lines)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "is empty"),
        ("\r\n  \n", "is empty"),
        ("Key,Secret\nA,B\n", "expected a header 'Access Key ID,Secret Access Key'"),
        (f"{KEY_ID},{SECRET_B64}\n", "expected a header 'Access Key ID,Secret Access Key'"),
        ("Access Key ID,Secret Access Key\n", "0 rows under its header"),
        (CSV_DOWNLOAD + f"{OTHER_KEY_ID},{SECRET_B64}\n", "2 rows under its header"),
        ("Access Key ID,Secret Access Key\nX\n", "the row under the header has 1 columns"),
        ("Access Key ID,Secret Access Key\n,AAAA\n", "the column 'Access Key ID' is empty"),
        (INI_DOWNLOAD + "[work]\nR3_ACCESS_KEY_ID=A\n", "holds 2 profiles ([DEFAULT], [work])"),
        ("[DEFAULT]\nR3_ACCESS_KEY_ID=A\n", "R3_SECRET_ACCESS_KEY is missing or empty"),
        (CSV_DOWNLOAD.replace(SECRET_B64, "not*base64"), "R3_SECRET_ACCESS_KEY is not valid"),
        (CSV_DOWNLOAD.replace(KEY_ID, 'a"b'), "R3_ACCESS_KEY_ID contains a quote"),
    ],
)
def test_malformed_downloads_are_refused_naming_the_file(
    tmp_path: Path, text: str, expected: str
) -> None:
    source = download(tmp_path, text, "download.csv")
    target = tmp_path / "credentials"
    with pytest.raises(ConfigError) as info:
        do_import(source, target)
    message = str(info.value)
    assert str(source) in message and expected in message, message
    assert SECRET_B64 not in message
    assert not target.exists()


def test_wrong_header_through_the_command(tmp_path: Path) -> None:
    source = download(tmp_path, f"Key,Secret\n{KEY_ID},{SECRET_B64}\n", "k.csv")
    code, out, err = cli(tmp_path, "import", str(source))
    assert code == 2 and out == ""
    assert f"{source} is neither the credentials file nor the CSV" in err
    assert "expected a header 'Access Key ID,Secret Access Key'" in err
    assert not (tmp_path / ".remoteit").exists()


def test_new_file_and_folder_are_private_whatever_the_umask(tmp_path: Path) -> None:
    if os.name != "posix":
        pytest.skip("POSIX file modes only")
    target = tmp_path / "new" / "credentials"
    previous = os.umask(0)
    try:
        do_import(download(tmp_path, CSV_DOWNLOAD), target)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700


def existing(tmp_path: Path, data: bytes = EXISTING) -> Path:
    path = tmp_path / ".remoteit" / "credentials"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def test_existing_profile_without_force_is_refused_and_the_file_untouched(
    tmp_path: Path,
) -> None:
    target = existing(tmp_path)
    before = target.stat()
    code, out, err = cli(tmp_path, "import", str(download(tmp_path, INI_DOWNLOAD)))
    assert code == 2 and out == ""
    assert str(target) in err and "[DEFAULT]" in err and "--force" in err
    assert target.read_bytes() == EXISTING
    assert target.stat().st_mtime_ns == before.st_mtime_ns


def test_force_replaces_the_profile_in_place_and_keeps_every_other_byte(tmp_path: Path) -> None:
    target = existing(tmp_path)
    code, out, err = cli(tmp_path, "import", str(download(tmp_path, INI_DOWNLOAD)), "--force")
    assert code == 0, err
    after = target.read_bytes()
    assert after.startswith(EXISTING[:OLD_DEFAULT_START])
    assert after.endswith(EXISTING[OLD_DEFAULT_END:])
    new_profile = after[OLD_DEFAULT_START : len(after) - len(EXISTING) + OLD_DEFAULT_END]
    assert (
        new_profile
        == (
            f"[DEFAULT]\r\n# {EMAIL}\r\nR3_ACCESS_KEY_ID={KEY_ID}\r\n"
            f"R3_SECRET_ACCESS_KEY={SECRET_B64}\r\nR3_DEVELOPER_API_KEY=OLD-DEVKEY\r\n"
        ).encode()
    )
    # The developer key belongs to the account: kept from the profile replaced, and said so.
    assert loaded(target) == (KEY_ID, SECRET, "OLD-DEVKEY")
    assert "kept" in out and f"was {mask(OTHER_KEY_ID)}" in out
    assert loaded(target, "work")[0] == "WORKKEY" and loaded(target, "personal")[0] == "PERSONAL"


def test_a_new_profile_is_appended_after_a_blank_line(tmp_path: Path) -> None:
    target = existing(tmp_path)
    lines = do_import(download(tmp_path, CSV_DOWNLOAD), target, profile="ci")
    assert (
        target.read_bytes()
        == EXISTING
        + (
            f"\r\n\r\n[ci]\r\nR3_ACCESS_KEY_ID={KEY_ID}\r\nR3_SECRET_ACCESS_KEY={SECRET_B64}\r\n"
        ).encode()
    )
    assert lines[0].startswith(f"Added profile [ci] to {target}")
    assert lines[-1] == f"Next: remoteit-proxy check --profile ci --credentials {target}"


def test_a_profile_differing_only_in_case_counts_as_existing_and_keeps_its_name(
    tmp_path: Path,
) -> None:
    old = b"[work]\nR3_ACCESS_KEY_ID=W\nR3_SECRET_ACCESS_KEY=AAAA\n\n[default]\n" + (
        b"R3_ACCESS_KEY_ID=OLD\nR3_SECRET_ACCESS_KEY=AAAA\n"
    )
    target = existing(tmp_path, old)
    source = download(tmp_path, CSV_DOWNLOAD)
    with pytest.raises(ConfigError, match=r"profile \[default\] already exists .*--force"):
        do_import(source, target)
    assert target.read_bytes() == old
    lines = do_import(source, target, force=True)
    # Replaced in place under its own name: [default] is not renamed [DEFAULT].
    assert target.read_bytes() == old[: old.index(b"[default]")] + (
        f"[default]\nR3_ACCESS_KEY_ID={KEY_ID}\nR3_SECRET_ACCESS_KEY={SECRET_B64}\n".encode()
    )
    assert lines[0].startswith(f"Replaced profile [default] in {target} (was ***")
    assert "now named" not in "\n".join(lines)
    assert lines[-1] == f"Next: remoteit-proxy check --profile default --credentials {target}"


def test_keys_above_any_header_are_the_default_profile_replaced_in_place(tmp_path: Path) -> None:
    old = b"# top\nR3_ACCESS_KEY_ID=OLD\nR3_SECRET_ACCESS_KEY=AAAA\n\n[work]\nR3_ACCESS_KEY_ID=W\n"
    target = existing(tmp_path, old + b"R3_SECRET_ACCESS_KEY=AAAA\n")
    do_import(download(tmp_path, CSV_DOWNLOAD), target, force=True)
    assert (
        target.read_bytes()
        == (
            f"# top\n[DEFAULT]\nR3_ACCESS_KEY_ID={KEY_ID}\nR3_SECRET_ACCESS_KEY={SECRET_B64}\n\n"
            "[work]\nR3_ACCESS_KEY_ID=W\nR3_SECRET_ACCESS_KEY=AAAA\n"
        ).encode()
    )


def test_an_existing_file_keeps_its_mode_and_a_bom(tmp_path: Path) -> None:
    target = existing(tmp_path, codecs.BOM_UTF8 + b"[work]\nR3_ACCESS_KEY_ID=W\n")
    target.write_bytes(target.read_bytes() + b"R3_SECRET_ACCESS_KEY=AAAA\n")
    target.chmod(0o640)
    lines = do_import(download(tmp_path, CSV_DOWNLOAD), target)
    assert target.read_bytes().startswith(codecs.BOM_UTF8 + b"[work]\n")
    if os.name == "posix":
        assert stat.S_IMODE(target.stat().st_mode) == 0o640
        assert any("can be read by other users (mode 640)" in line for line in lines)


def test_an_unparsable_file_is_not_written(tmp_path: Path) -> None:
    bad = b"[DEFAULT]\nR3_ACCESS_KEY_ID=A\nthis is not a key line\n"
    target = existing(tmp_path, bad)
    with pytest.raises(ConfigError, match=r"line 3 .* was not changed"):
        do_import(download(tmp_path, CSV_DOWNLOAD), target, profile="new")
    assert target.read_bytes() == bad


@pytest.mark.skipif(os.name != "posix", reason="symbolic links need privileges on Windows")
def test_a_symbolic_link_stays_a_link_and_the_real_file_is_named(tmp_path: Path) -> None:
    real = existing(tmp_path, b"[work]\nR3_ACCESS_KEY_ID=W\nR3_SECRET_ACCESS_KEY=AAAA\n")
    real.chmod(0o644)
    link = tmp_path / "link"
    link.symlink_to(real)
    lines = do_import(download(tmp_path, CSV_DOWNLOAD), link)
    assert link.is_symlink() and loaded(real) == (KEY_ID, SECRET, None)
    real = Path(os.path.realpath(real))  # as named: tmp_path itself may be behind a link
    assert lines[0].startswith(
        f"Added profile [DEFAULT] to {real} (reached through a symbolic link from {link}): "
    )
    assert f"warning: {real} can be read by other users" in "\n".join(lines)
    assert lines[-1] == f"Next: remoteit-proxy check --profile DEFAULT --credentials {link}"


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    target = existing(tmp_path)

    def fail(*args: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(ConfigError) as info:
        do_import(download(tmp_path, INI_DOWNLOAD), target, force=True)
    monkeypatch.undo()
    assert f"cannot write {target}: No space left on device" in str(info.value)
    assert "not changed" in str(info.value)
    assert target.read_bytes() == EXISTING
    assert [p.name for p in target.parent.iterdir()] == ["credentials"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_an_unwritable_folder_leaves_the_old_file(tmp_path: Path) -> None:
    target = existing(tmp_path)
    target.parent.chmod(0o500)
    try:
        with pytest.raises(ConfigError, match="Permission denied"):
            do_import(download(tmp_path, INI_DOWNLOAD), target, force=True)
    finally:
        target.parent.chmod(0o700)
    assert target.read_bytes() == EXISTING


def test_developer_key_file_errors(tmp_path: Path) -> None:
    source = download(tmp_path, CSV_DOWNLOAD)
    key_file = tmp_path / "devkey"
    for content, expected in [
        (None, "does not exist"),
        ("\n", "is empty"),
        ("DEV KEY\n", "R3_DEVELOPER_API_KEY contains white space"),
    ]:
        if content is not None:
            key_file.write_text(content)
        with pytest.raises(ConfigError) as info:
            do_import(source, tmp_path / "credentials", developer_key_file=key_file)
        assert f"--developer-key-file {key_file}" in str(info.value)
        assert expected in str(info.value)
    assert not (tmp_path / "credentials").exists()


@pytest.mark.parametrize("answer, stored", [(DEVELOPER_KEY, DEVELOPER_KEY), ("", None)])
def test_import_on_a_terminal_asks_for_the_developer_key(
    tmp_path: Path, answer: str, stored: str | None
) -> None:
    terminal, _ = scripted(secrets=[answer])
    target = tmp_path / "credentials"
    do_import(download(tmp_path, INI_DOWNLOAD), target, terminal=terminal)
    assert loaded(target) == (KEY_ID, SECRET, stored)


def test_environment_credentials_are_warned_about(tmp_path: Path) -> None:
    env = {"R3_ACCESS_KEY_ID": OTHER_KEY_ID, "R3_SECRET_ACCESS_KEY": "AAAA"}
    code, out, err = cli(tmp_path, "import", str(download(tmp_path, CSV_DOWNLOAD)), env=env)
    assert code == 0, err
    warning = next(line for line in out.splitlines() if line.startswith("warning:"))
    assert "R3_ACCESS_KEY_ID and R3_SECRET_ACCESS_KEY are set in the environment" in warning


@pytest.mark.parametrize(
    "stdin, developer_key",
    [
        (f"{KEY_ID}\n{SECRET_B64}\n{DEVELOPER_KEY}\n", DEVELOPER_KEY),
        (f"{KEY_ID}\r\n{SECRET_B64}", None),
    ],
    ids=["three-lines", "two-lines-crlf"],
)
def test_configure_reads_standard_input_lines(
    tmp_path: Path, stdin: str, developer_key: str | None
) -> None:
    code, out, err = cli(tmp_path, "configure", "--profile", "ci", stdin=stdin)
    assert code == 0, err
    assert loaded(tmp_path / ".remoteit" / "credentials", "ci") == (KEY_ID, SECRET, developer_key)
    assert mask(KEY_ID) in out and "--profile ci" in out


def test_configure_without_a_terminal_refuses_invalid_base64_at_once(tmp_path: Path) -> None:
    code, out, err = cli(tmp_path, "configure", stdin=f"{KEY_ID}\nnot base64!\n{DEVELOPER_KEY}\n")
    assert code == 2 and out == ""
    assert "standard input, line 2: R3_SECRET_ACCESS_KEY is not valid base64" in err
    assert not (tmp_path / ".remoteit" / "credentials").exists()


@pytest.mark.parametrize(
    "stdin, expected",
    [
        (f"{KEY_ID}\n", "line 2, R3_SECRET_ACCESS_KEY, is missing"),
        (f"{KEY_ID}\n\n{SECRET_B64}\n", "line 2, R3_SECRET_ACCESS_KEY, is missing"),
        ("", "line 1, R3_ACCESS_KEY_ID, is missing"),
        (f"{KEY_ID}\n{SECRET_B64}\nDEV KEY\n", "line 3: R3_DEVELOPER_API_KEY contains white"),
        (f"{KEY_ID}x\\\n{SECRET_B64}\n", "line 1: R3_ACCESS_KEY_ID contains a quote or a back"),
    ],
)
def test_configure_without_a_terminal_names_the_missing_or_invalid_line(
    tmp_path: Path, stdin: str, expected: str
) -> None:
    target = tmp_path / "credentials"
    with pytest.raises(ConfigError, match=expected):
        configure(target, scripted(interactive=False, stdin=stdin)[0])
    assert not target.exists()


def test_configure_without_a_terminal_needs_force_to_replace(tmp_path: Path) -> None:
    target = existing(tmp_path)
    stdin = f"{KEY_ID}\n{SECRET_B64}\n"
    code, _, err = cli(tmp_path, "configure", stdin=stdin)
    assert code == 2 and "--force" in err and target.read_bytes() == EXISTING
    code, _, err = cli(tmp_path, "configure", "--force", stdin=stdin)
    assert code == 0, err
    assert loaded(target) == (KEY_ID, SECRET, "OLD-DEVKEY")


def configure(target: Path, terminal: Terminal, force: bool = False) -> list[str]:
    return run_configure(
        credentials=target, profile="DEFAULT", force=force, terminal=terminal, environ={}
    )


def test_configure_on_a_terminal_asks_again_after_an_invalid_value(tmp_path: Path) -> None:
    terminal, told = scripted([" ", KEY_ID], ["not base64!", SECRET_B64, DEVELOPER_KEY])
    target = tmp_path / "credentials"
    lines = configure(target, terminal)
    assert loaded(target) == (KEY_ID, SECRET, DEVELOPER_KEY)
    assert len(told) == 2
    assert "R3_ACCESS_KEY_ID is empty" in told[0]
    assert "R3_SECRET_ACCESS_KEY is not valid base64" in told[1]
    assert all(SECRET_B64 not in text for text in told + lines)


def test_configure_on_a_terminal_gives_up_after_three_invalid_values(tmp_path: Path) -> None:
    terminal, told = scripted([KEY_ID], ["!!", "??", "**"])
    with pytest.raises(ConfigError, match="R3_SECRET_ACCESS_KEY is not valid base64.*3 tries"):
        configure(tmp_path / "credentials", terminal)
    assert len(told) == 2 and not (tmp_path / "credentials").exists()


@pytest.mark.parametrize("answer", ["n", ""])
def test_configure_on_a_terminal_asks_before_replacing(tmp_path: Path, answer: str) -> None:
    target = existing(tmp_path)
    prompts: list[str] = []
    terminal = Terminal(True, ask=lambda p: prompts.append(p) or answer, tell=prompts.append)
    with pytest.raises(ConfigError, match=r"profile \[DEFAULT\] .* was left as it was"):
        configure(target, terminal)
    assert prompts == [f"Profile [DEFAULT] exists in {target}; replace it? [y/N] "]
    assert target.read_bytes() == EXISTING


def test_configure_on_a_terminal_replaces_when_confirmed(tmp_path: Path) -> None:
    target = existing(tmp_path)
    prompts: list[str] = []
    answers = ["y", KEY_ID]
    secrets = [SECRET_B64, ""]

    def ask_secret(prompt: str) -> str:
        prompts.append(prompt)
        return secrets.pop(0)

    terminal = Terminal(True, ask=lambda p: answers.pop(0), ask_secret=ask_secret)
    lines = configure(target, terminal)
    assert loaded(target) == (KEY_ID, SECRET, "OLD-DEVKEY")
    assert "Enter to keep the current one" in prompts[1]
    assert lines[1] == "Developer API key: kept from the profile replaced."


def test_terminal_confirm_re_asks_and_falls_back_to_the_default() -> None:
    answers = ["maybe", "YES"]
    told: list[str] = []
    terminal = Terminal(True, ask=lambda p: answers.pop(0), tell=told.append)
    assert terminal.confirm("Go?", default=False) is True and len(told) == 1
    stubborn: Callable[[str], str] = lambda p: "what"  # noqa: E731
    assert Terminal(True, ask=stubborn, tell=told.append).confirm("Go?", default=True) is True


# --- the terminal: decided by standard input alone; prompts never on standard output ----------


class FakeStream(io.StringIO):
    def __init__(self, tty: bool, text: str = "") -> None:
        super().__init__(text)
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("stdin_tty", [True, False])
@pytest.mark.parametrize("stdout_tty", [True, False])
def test_from_stdio_is_interactive_when_standard_input_is_a_terminal(
    monkeypatch: pytest.MonkeyPatch, stdin_tty: bool, stdout_tty: bool
) -> None:
    monkeypatch.setattr(sys, "stdin", FakeStream(stdin_tty))
    monkeypatch.setattr(sys, "stdout", FakeStream(stdout_tty))
    assert Terminal.from_stdio().interactive is stdin_tty


def test_the_echoed_prompt_goes_to_standard_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", FakeStream(True, "typed in\r\n"))
    terminal = Terminal.from_stdio()
    assert terminal.ask("Access key ID: ") == "typed in"
    assert capsys.readouterr() == ("", "Access key ID: ")
    with pytest.raises(EOFError):  # end of input: the command says it was cancelled
        terminal.ask("Access key ID: ")


class Screen:
    """The far end of a pseudo-terminal: what the program shows on it, and the keys typed."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.shown = ""  # everything shown, echoed input included
        self.unread = 0  # where the next prompt is looked for

    def read(self, timeout: float) -> bool:
        if not select.select([self.fd], [], [], timeout)[0]:
            return False
        try:
            self.shown += os.read(self.fd, 4096).decode(errors="replace")
        except OSError:  # EIO: the program has exited
            return False
        return True

    def answer(self, prompt: str, typed: str) -> None:
        deadline = time.monotonic() + 20
        while prompt not in self.shown[self.unread :]:
            left = deadline - time.monotonic()
            assert left > 0 and self.read(left), f"no prompt {prompt!r} in {self.shown!r}"
        self.unread = self.shown.index(prompt, self.unread) + len(prompt)
        os.write(self.fd, typed.encode() + b"\n")


@pytest.mark.skipif(os.name != "posix", reason="pseudo-terminals are POSIX only")
def test_configure_on_a_terminal_with_standard_output_redirected(tmp_path: Path) -> None:
    """``configure > out.txt`` (or ``| tee log``): the keyboard still answers, on prompts shown
    on the terminal, the secret without echo; the file gets the result lines only."""
    master, slave = os.openpty()
    out = tmp_path / "out.txt"
    with out.open("wb") as stdout:
        # A session of its own: the pseudo-terminal, not the terminal running the tests, is
        # the only one the command can reach.
        process = subprocess.Popen(
            [sys.executable, "-m", "proxy", "configure", "--profile", "ci"],
            stdin=slave,
            stdout=stdout,
            stderr=slave,
            env=base_env(tmp_path),
            start_new_session=True,
        )
    os.close(slave)
    screen = Screen(master)
    try:
        screen.answer("Access key ID: ", KEY_ID)
        screen.answer("Secret access key (not shown): ", SECRET_B64)
        screen.answer("(optional, for the REST API; Enter to skip): ", "")
        screen.answer("Run 'remoteit-proxy check' now? [Y/n] ", "n")
        assert process.wait(timeout=20) == 0, screen.shown
        while screen.read(0.1):
            pass
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
    assert KEY_ID in screen.shown  # echoed, as typed
    assert SECRET_B64[:12] not in screen.shown  # not echoed
    result = out.read_text()
    assert result.splitlines()[0].startswith("Created ") and "profile [ci]" in result
    assert "Access key ID" not in result and "Secret access key" not in result
    assert "Run 'remoteit-proxy check'" not in result and SECRET_B64 not in result
    assert loaded(tmp_path / ".remoteit" / "credentials", "ci") == (KEY_ID, SECRET, None)


@pytest.mark.skipif(os.name != "posix", reason="pseudo-terminals are POSIX only")
@pytest.mark.parametrize("where", ["environment", "config file"])
async def test_configures_offered_check_uses_the_upstream_settings_check_uses(
    tmp_path: Path, upstream: FakeUpstream, where: str
) -> None:
    """The upstream named in the environment or the config file is the one asked, as by
    ``check`` (an offer that ignored them checked the real API instead)."""

    async def account(request: web.Request, received: Received) -> web.StreamResponse:
        login = {"email": "you@example.com", "apiKey": {"key": DEVELOPER_KEY}}
        return web.json_response({"data": {"login": login}})

    upstream.respond = account
    env = base_env(tmp_path)
    if where == "environment":
        env["REMOTEIT_PROXY_UPSTREAM"] = upstream.url
    else:
        (tmp_path / ".remoteit").mkdir()
        (tmp_path / ".remoteit" / "proxy.ini").write_text(f"[proxy]\nupstream = {upstream.url}\n")
    master, slave = os.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "proxy", "configure", "--profile", "ci"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    screen = Screen(master)
    try:
        await asyncio.to_thread(screen.answer, "Access key ID: ", KEY_ID)
        await asyncio.to_thread(screen.answer, "Secret access key (not shown): ", SECRET_B64)
        # (no developer key asked for: the account's is fetched from the same upstream)
        await asyncio.to_thread(screen.answer, "Run 'remoteit-proxy check' now? [Y/n] ", "y")
        code = await asyncio.to_thread(process.wait, 30)
        while await asyncio.to_thread(screen.read, 0.1):
            pass
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
    assert code == 0, screen.shown
    assert upstream.received, "the check did not reach the configured upstream"
    assert all(r.verified for r in upstream.received)
    assert f"upstream  {upstream.url}" in screen.shown and "you@example.com" in screen.shown


# --- messages name the real source of a value, with advice that fits it ------------------------


@pytest.mark.parametrize(
    "source, stdin, expected",
    [
        ("stdin", f"{KEY_ID}\n{SECRET_B64}\nYOUR_DEVELOPER_KEY\n", "or leave line 3 out"),
        ("key-file", "", "or leave the option out"),
        ("ini", "", "or remove the line"),
    ],
)
def test_a_placeholder_developer_key_is_named_with_its_source_not_the_environment(
    tmp_path: Path, source: str, stdin: str, expected: str
) -> None:
    text = INI_DOWNLOAD + ("R3_DEVELOPER_API_KEY=YOUR_DEVELOPER_KEY\n" if source == "ini" else "")
    key_file = tmp_path / "devkey"
    key_file.write_text("YOUR_DEVELOPER_KEY\n")
    args = {
        "stdin": ["configure"],
        "key-file": ["import", "--developer-key-file", str(key_file)],
        "ini": ["import"],
    }[source]
    if args[0] == "import":
        args.insert(1, str(download(tmp_path, text)))
    code, out, err = cli(tmp_path, *args, stdin=stdin)
    where = {
        "stdin": "standard input, line 3",
        "key-file": f"--developer-key-file {key_file}",
        "ini": str(tmp_path / "Downloads" / "credentials"),
    }[source]
    assert code == 2 and out == ""
    assert f"{where}: R3_DEVELOPER_API_KEY is 'YOUR_DEVELOPER_KEY', the placeholder" in err
    assert expected in err
    assert "unset" not in err and "environment" not in err
    assert not (tmp_path / ".remoteit").exists()


@pytest.mark.parametrize("name, text", [("k.csv", CSV_DOWNLOAD), ("credentials", INI_DOWNLOAD)])
def test_white_space_in_a_download_mentions_comments_only_for_the_ini_form(
    tmp_path: Path, name: str, text: str
) -> None:
    source = download(tmp_path, text.replace(KEY_ID, "TESTKEY ID"), name)
    with pytest.raises(ConfigError) as info:
        do_import(source, tmp_path / "credentials")
    message = str(info.value)
    assert message.startswith(f"{source}: R3_ACCESS_KEY_ID contains white space")
    assert ("a comment after a value" in message) == name.endswith("credentials")


def test_typed_values_get_advice_for_the_keyboard(tmp_path: Path) -> None:
    terminal, told = scripted(['KEY"ID', KEY_ID], [SECRET_B64, "YOUR_DEVELOPER_KEY", ""])
    configure(tmp_path / "credentials", terminal)
    assert "R3_ACCESS_KEY_ID contains a quote or a backslash" in told[0]
    assert "put quotes" not in told[0]  # quotes are dropped in a file, not at a prompt
    assert "or press Enter to skip it" in told[1] and "unset" not in told[1]
    assert loaded(tmp_path / "credentials") == (KEY_ID, SECRET, None)


@pytest.mark.parametrize("old", ["YOUR_DEVELOPER_KEY", "OLD DEVKEY"])
def test_force_drops_an_invalid_developer_key_of_the_profile_replaced(
    tmp_path: Path, old: str
) -> None:
    target = existing(tmp_path, EXISTING.replace(b"OLD-DEVKEY", old.encode()))
    code, out, err = cli(tmp_path, "import", str(download(tmp_path, INI_DOWNLOAD)), "--force")
    assert code == 0, err
    assert loaded(target) == (KEY_ID, SECRET, None)
    assert old.encode() not in target.read_bytes()
    note = next(line for line in out.splitlines() if line.startswith("Developer API key:"))
    assert note.startswith("Developer API key: the one in the profile replaced was not valid (")
    assert note.endswith("), not kept.") and "R3_DEVELOPER_API_KEY" in note
    assert (old in note) == (old == "YOUR_DEVELOPER_KEY")  # only a placeholder is named


def test_configure_offers_to_keep_only_a_valid_developer_key(tmp_path: Path) -> None:
    target = existing(tmp_path, EXISTING.replace(b"OLD-DEVKEY", b"YOUR_DEVELOPER_KEY"))
    prompts: list[str] = []
    secrets = [SECRET_B64, ""]

    def ask_secret(prompt: str) -> str:
        prompts.append(prompt)
        return secrets.pop(0)

    answers = [KEY_ID]
    terminal = Terminal(True, ask=lambda p: answers.pop(0), ask_secret=ask_secret)
    lines = configure(target, terminal, force=True)
    assert "Enter to skip" in prompts[1]
    assert "not valid" in lines[1] and loaded(target) == (KEY_ID, SECRET, None)


# --- the developer key file ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, stored",
    [
        ("R3_DEVELOPER_API_KEY=DEVKEY123\n", "DEVKEY123"),
        ("export R3_DEVELOPER_API_KEY=DEVKEY123", "DEVKEY123"),
        ("r3_developer_api_key = 'DEVKEY123'\r\n", "DEVKEY123"),
        ('\ufeffR3_DEVELOPER_API_KEY="DEVKEY123"\n', "DEVKEY123"),
        ("QUJDREVG==\n", "QUJDREVG=="),  # base64 padding is not a 'NAME=' line
    ],
)
def test_developer_key_file_with_the_variable_name(
    tmp_path: Path, content: str, stored: str
) -> None:
    key_file = tmp_path / "devkey"
    key_file.write_text(content, encoding="utf-8")
    source = download(tmp_path, CSV_DOWNLOAD)
    code, out, err = cli(tmp_path, "import", str(source), "--developer-key-file", str(key_file))
    assert code == 0, err
    assert loaded(tmp_path / ".remoteit" / "credentials")[2] == stored


@pytest.mark.parametrize(
    "content, expected",
    [
        (f"R3_ACCESS_KEY_ID={KEY_ID}\n", "holds a line R3_ACCESS_KEY_ID=..., not the developer"),
        ("MYSECRETNAME=abc\n", "holds a line NAME=... for another setting"),
        ("R3_DEVELOPER_API_KEY=\n", "R3_DEVELOPER_API_KEY is empty"),
        (f"{DEVELOPER_KEY}\nR3_DEVELOPER_API_KEY=X\n", "has more than one line"),
        ("A" * (64 * 1024 + 1), "is larger than 64 KiB"),
    ],
    ids=["access-key-id", "other-name", "empty", "two-lines", "too-large"],
)
def test_developer_key_file_refusals(tmp_path: Path, content: str, expected: str) -> None:
    key_file = tmp_path / "devkey"
    key_file.write_text(content)
    with pytest.raises(ConfigError) as info:
        do_import(download(tmp_path, CSV_DOWNLOAD), tmp_path / "c", developer_key_file=key_file)
    message = str(info.value)
    assert message.startswith(f"--developer-key-file {key_file}") and expected in message
    assert "MYSECRETNAME" not in message and KEY_ID not in message
    assert not (tmp_path / "c").exists()


@pytest.mark.skipif(os.name != "posix" or not os.path.exists("/dev/zero"), reason="POSIX only")
def test_developer_key_file_of_endless_zeros_is_refused_at_once(tmp_path: Path) -> None:
    source = download(tmp_path, CSV_DOWNLOAD)
    args = ("import", str(source), "--developer-key-file", "/dev/zero")
    # 1 GiB of address space: a command reading it all fails fast, not filling the memory.
    code, out, err = cli(tmp_path, *args, shell_first="ulimit -v 1048576")
    assert code == 2 and "--developer-key-file /dev/zero is larger than 64 KiB" in err


# --- the write: the file as read, or nothing; never through a link to nothing -------------------


def test_a_file_changed_since_it_was_read_is_not_overwritten(tmp_path: Path) -> None:
    target = existing(tmp_path)
    store = CredentialsFile.read(target)
    before = target.stat()
    changed = EXISTING.replace(b"WORKKEY", b"WORKKEZ")  # same size, same inode, same mtime
    with target.open("r+b") as file:
        file.write(changed)
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    with pytest.raises(ConfigError, match="changed while being updated; it was not: run again"):
        store.write("new", Profile(KEY_ID, SECRET_B64))
    assert target.read_bytes() == changed
    assert [p.name for p in target.parent.iterdir()] == ["credentials"]


def test_a_file_created_since_it_was_found_missing_is_not_overwritten(tmp_path: Path) -> None:
    target = tmp_path / "credentials"
    store = CredentialsFile.read(target)
    target.write_bytes(b"[work]\nR3_ACCESS_KEY_ID=W\nR3_SECRET_ACCESS_KEY=AAAA\n")
    with pytest.raises(ConfigError, match="changed while being updated"):
        store.write("DEFAULT", Profile(KEY_ID, SECRET_B64))
    assert target.read_bytes().startswith(b"[work]\n")


@pytest.mark.skipif(os.name != "posix", reason="symbolic links need privileges on Windows")
@pytest.mark.parametrize("dangling", ["file", "folder"])
def test_a_symbolic_link_to_nothing_is_refused_and_nothing_created(
    tmp_path: Path, dangling: str
) -> None:
    nowhere = tmp_path / "elsewhere" / "deep" / "down"
    folder = tmp_path / ".remoteit"
    if dangling == "file":
        folder.mkdir()
        (folder / "credentials").symlink_to(nowhere / "credentials")
        link, to = folder / "credentials", nowhere / "credentials"
    else:
        folder.symlink_to(nowhere)
        link, to = folder, nowhere
    code, out, err = cli(tmp_path, "import", str(download(tmp_path, CSV_DOWNLOAD)))
    assert code == 2 and out == ""
    to = Path(os.path.realpath(to))  # as named: tmp_path itself may be behind a link
    assert f"{link} is a symbolic link to {to}, which does not exist" in err
    assert not (tmp_path / "elsewhere").exists()


def test_every_folder_created_is_private(tmp_path: Path) -> None:
    if os.name != "posix":
        pytest.skip("POSIX file modes only")
    target = tmp_path / "a" / "b" / "credentials"
    previous = os.umask(0)
    try:
        do_import(download(tmp_path, CSV_DOWNLOAD), target)
    finally:
        os.umask(previous)
    assert [stat.S_IMODE(p.stat().st_mode) for p in (target.parent.parent, target.parent)] == [
        0o700,
        0o700,
    ]


# --- one rule for which profile a name selects ----------------------------------------------


@pytest.mark.parametrize(
    "names, name",
    [
        (["DEFAULT", "default"], "default"),
        (["default"], "DEFAULT"),
        (["Work", "WORK"], "work"),
        (["work"], "ci"),
        ([], "DEFAULT"),
    ],
)
def test_a_write_replaces_the_profile_serve_selects(names: list[str], name: str) -> None:
    profiles = {n: {"r3_access_key_id": n} for n in names}
    store = CredentialsFile(Path("credentials"), profiles=profiles)
    try:
        selected: str | None = select_profile(profiles, name, Path("credentials"))[0]
    except CredentialsError:
        selected = None
    assert store.find(name) == selected
