"""import and configure: a downloaded or typed access key stored as a profile, the rest kept."""

from __future__ import annotations

import codecs
import errno
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import DEVELOPER_KEY, KEY_ID, SECRET, SECRET_B64
from test_cli import base_env

from proxy.credentials import load_credentials, mask
from proxy.errors import ConfigError
from proxy.onboard import Terminal, run_configure, run_import

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
    b"R3_SECRET_ACCESS_KEY=AAAA\r\n"
    b"\r\n"
    b"; the old one\r\n"
    b"[DEFAULT]\r\n"
    b"# old@example.com\r\n"
    b"R3_ACCESS_KEY_ID=" + OTHER_KEY_ID.encode() + b"\r\n"
    b"R3_SECRET_ACCESS_KEY=AAAA\r\n"
    b"R3_DEVELOPER_API_KEY=OLD-DEVKEY\r\n"
    b"\r\n"
    b"# personal\r\n"
    b"[personal]\r\n"
    b"R3_ACCESS_KEY_ID=PERSONAL\r\n"
    b"R3_SECRET_ACCESS_KEY=AAAA"
)
OLD_DEFAULT_START = EXISTING.index(b"[DEFAULT]")
OLD_DEFAULT_END = EXISTING.index(b"\r\n\r\n# personal") + 2
LEAKS = (SECRET_B64, SECRET_B64.rstrip("="), DEVELOPER_KEY, repr(SECRET))


def cli(
    home: Path, *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """Run ``python -m proxy ARGS`` (standard input not a terminal); (code, stdout, stderr)."""
    result = subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        env=base_env(home) | (env or {}),
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


def test_a_profile_differing_only_in_case_counts_as_existing(tmp_path: Path) -> None:
    old = b"[work]\nR3_ACCESS_KEY_ID=W\nR3_SECRET_ACCESS_KEY=AAAA\n\n[default]\n" + (
        b"R3_ACCESS_KEY_ID=OLD\nR3_SECRET_ACCESS_KEY=AAAA\n"
    )
    target = existing(tmp_path, old)
    source = download(tmp_path, CSV_DOWNLOAD)
    with pytest.raises(ConfigError, match=r"profile \[default\] already exists .*--force"):
        do_import(source, target)
    assert target.read_bytes() == old
    lines = do_import(source, target, force=True)
    assert target.read_bytes() == old[: old.index(b"[default]")] + (
        f"[DEFAULT]\nR3_ACCESS_KEY_ID={KEY_ID}\nR3_SECRET_ACCESS_KEY={SECRET_B64}\n".encode()
    )
    assert "Replaced profile [default], now named [DEFAULT]" in lines[0]


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
def test_a_symbolic_link_stays_a_link(tmp_path: Path) -> None:
    real = existing(tmp_path, b"[work]\nR3_ACCESS_KEY_ID=W\nR3_SECRET_ACCESS_KEY=AAAA\n")
    link = tmp_path / "link"
    link.symlink_to(real)
    do_import(download(tmp_path, CSV_DOWNLOAD), link)
    assert link.is_symlink() and loaded(real) == (KEY_ID, SECRET, None)


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
