"""Other systems: the launchd agent, the Windows logon task, and no crash where unix sockets are
missing or shorter."""

from __future__ import annotations

import os
import plistlib
import re
import signal
import socket
import sys
from pathlib import Path

import pytest
from conftest import KEY_ID, SECRET_B64, write_credentials
from fake_upstream import FakeUpstream
from test_cli import base_env, run_failing

from proxy.commands.execute import run_exec
from proxy.config.resolve import resolve
from proxy.errors import ConfigError, ListenError
from proxy.serve.server import bind_unix

ROOT = Path(__file__).resolve().parent.parent
PLIST = ROOT / "deploy" / "launchd" / "com.remoteit.proxy.plist"
LAUNCHD_README = ROOT / "deploy" / "launchd" / "README.md"
WINDOWS = ROOT / "deploy" / "windows"
# The longest socket path each system binds: sun_path's size, less the final NUL.
UNIX_PATH_LIMITS = {"linux": 107, "darwin": 103}


def agent() -> dict[str, object]:
    with PLIST.open("rb") as file:
        loaded = plistlib.load(file)  # the same check plutil -lint makes, on any system
    assert isinstance(loaded, dict)
    return loaded


def sh_lines(text: str) -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


# --- macOS: the launchd agent ----------------------------------------------------------------


def test_the_launchd_agent_runs_serve_at_login_and_again_when_it_exits() -> None:
    plist = agent()
    assert plist["Label"] == PLIST.name.removesuffix(".plist")
    program = plist["ProgramArguments"]
    assert isinstance(program, list)
    assert Path(program[0]).name == "remoteit-proxy" and program[1] == "serve"
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] is True
    # Room for --shutdown-timeout (10 s) to drain before launchd's SIGKILL.
    exit_timeout = plist["ExitTimeOut"]
    assert isinstance(exit_timeout, int) and exit_timeout > 10


def test_the_launchd_agent_logs_to_one_file_under_library_logs() -> None:
    plist = agent()
    assert plist["StandardOutPath"] == plist["StandardErrorPath"]  # the log is stderr
    log = Path(str(plist["StandardErrorPath"]))
    assert log.parent.parts[-2:] == ("Library", "Logs") and log.name == "remoteit-proxy.log"


def test_installing_the_agent_as_documented_puts_every_path_in_the_home(tmp_path: Path) -> None:
    """launchd expands no ``~`` or ``$HOME``: the documented sed must leave no placeholder."""
    lines = sh_lines(LAUNCHD_README.read_text())
    install = next(line for line in lines if line.startswith("sed "))
    match = re.fullmatch(r'sed "s\|([^|]+)\|\$HOME\|g" (\S+) > (\S+)', install)
    assert match, install
    placeholder, source, target = match.groups()
    assert ROOT / source == PLIST
    assert target == f"~/Library/LaunchAgents/{PLIST.name}"
    home = "/Users/someone else"  # a space must survive: the plist holds no shell words
    installed = plistlib.loads(PLIST.read_bytes().replace(placeholder.encode(), home.encode()))
    program = installed["ProgramArguments"]
    paths = [program[0], installed["StandardOutPath"], installed["StandardErrorPath"]]
    assert all(path.startswith(home + "/") for path in paths), paths
    assert placeholder not in str(installed)


def test_the_launchd_commands_name_the_agent_s_label_and_file() -> None:
    label = agent()["Label"]
    lines = sh_lines(LAUNCHD_README.read_text())
    commands = [
        line.split("#")[0].replace("$(id -u)", "UID").split()
        for line in lines
        if line.startswith("launchctl ")
    ]
    verbs = {command[1] for command in commands}
    assert {"bootstrap", "kickstart", "bootout", "kill"} <= verbs, verbs
    for command in commands:
        target = command[-1]
        if command[1] == "bootstrap":
            assert target == f"~/Library/LaunchAgents/{PLIST.name}"
        else:
            assert target == f"gui/UID/{label}", command


# --- Windows: a Task Scheduler entry at logon --------------------------------------------------


def test_the_windows_logon_task_runs_the_wrapper_that_serves_and_logs() -> None:
    readme = (WINDOWS / "README.md").read_text()
    create = next(line for line in readme.splitlines() if line.startswith("schtasks /Create"))
    assert "/SC ONLOGON" in create
    wrapper = re.search(r"\\([\w.-]+\.cmd)", create)
    assert wrapper, create
    assert f"copy deploy\\windows\\{wrapper.group(1)} " in readme  # installed where it runs
    script = (WINDOWS / wrapper.group(1)).read_text()
    command = next(line for line in script.splitlines() if line.startswith('"'))
    log = re.search(r'remoteit-proxy\.exe" serve >> "([^"]+\.log)" 2>&1$', command)
    assert log, command
    assert f'type "{log.group(1)}"' in readme  # where the README says to look
    task = re.search(r"/TN (\S+)", create)
    assert task and f"schtasks /Delete /TN {task.group(1)}" in readme


def test_the_windows_notes_say_what_differs_there() -> None:
    text = " ".join((WINDOWS / "README.md").read_text().split())
    for difference in ("SIGTERM", "unix socket", "--workers", "Credential Locker", "SIGHUP"):
        assert difference in text, difference


# --- no unix sockets, or shorter paths ------------------------------------------------------


def test_a_unix_socket_where_the_system_has_none_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delattr(socket, "AF_UNIX", raising=False)  # as on Windows
    with pytest.raises(ConfigError) as exc:
        resolve({"listen": f"unix:{tmp_path / 'proxy.sock'}"}, {})
    message = str(exc.value)
    assert message.startswith("--listen: ") and "unix socket" in message
    assert "127.0.0.1:8181" in message  # what to use instead


@pytest.mark.skipif(sys.platform not in UNIX_PATH_LIMITS, reason="a system whose limit is known")
def test_a_socket_path_over_the_system_s_limit_names_the_limit(tmp_path: Path) -> None:
    limit = UNIX_PATH_LIMITS[sys.platform]
    at_limit = str(tmp_path / "s").ljust(limit, "x")
    assert len(os.fsencode(at_limit)) == limit
    assert str(resolve({"listen": f"unix:{at_limit}"}, {}).listen) == f"unix:{at_limit}"
    with pytest.raises(ConfigError) as exc:
        resolve({}, {"REMOTEIT_PROXY_LISTEN": f"unix:{at_limit}y"})
    message = str(exc.value)
    assert message.startswith("REMOTEIT_PROXY_LISTEN: ")
    assert f"{limit + 1} bytes" in message and f"the limit here is {limit}" in message
    assert "choose a shorter path" in message


def test_a_socket_path_with_a_nul_in_the_config_file_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "proxy.ini"
    config.write_text("[proxy]\nlisten = unix:/tmp/a\x00b.sock\n")
    with pytest.raises(ConfigError) as exc:
        resolve({"config": str(config)}, {})
    assert str(exc.value).startswith(f"config file {config} [proxy] listen: ")
    assert "NUL" in str(exc.value)


def test_a_socket_path_too_long_to_bind_says_so_not_none(tmp_path: Path) -> None:
    # Where the limit is not known beforehand, the bind's own refusal is named.
    path = tmp_path / ("s" * 200)
    with pytest.raises(ListenError) as exc:
        bind_unix(path, 0o600)
    message = str(exc.value)
    assert "None" not in message and "too long" in message
    assert not path.exists()


@pytest.mark.skipif(sys.platform not in UNIX_PATH_LIMITS, reason="a system whose limit is known")
def test_serve_on_a_socket_path_over_the_limit_stops_with_the_limit(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".remoteit").mkdir(parents=True)
    write_credentials(
        home / ".remoteit" / "credentials",
        f"[DEFAULT]\nR3_ACCESS_KEY_ID={KEY_ID}\nR3_SECRET_ACCESS_KEY={SECRET_B64}\n",
    )
    path = tmp_path / ("s" * 200)
    line = run_failing(["serve", "--listen", f"unix:{path}"], base_env(home))
    assert "(None)" not in line
    assert f"the limit here is {UNIX_PATH_LIMITS[sys.platform]}" in line


# --- no SIGHUP ----------------------------------------------------------------------------------


async def test_exec_runs_its_command_where_there_is_no_sighup(
    monkeypatch: pytest.MonkeyPatch, upstream: FakeUpstream, credentials_file: Path
) -> None:
    monkeypatch.delattr(signal, "SIGHUP")  # as on Windows
    settings = resolve({"upstream": upstream.url, "credentials": str(credentials_file)}, {})
    environ = base_env(credentials_file.parent)
    command = [sys.executable, "-c", "raise SystemExit(3)"]
    assert await run_exec(settings, command, None, environ) == 3
