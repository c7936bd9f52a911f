"""The config file's setting names: a misspelt one, or one written as on the command line, is
refused with the name it was likely meant as."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config.resolve import resolve
from proxy.errors import ConfigError


def refusal(tmp_path: Path, text: str) -> str:
    config = tmp_path / "proxy.ini"
    config.write_text(text)
    with pytest.raises(ConfigError) as exc:
        resolve({"config": str(config)}, {"HOME": str(tmp_path)})
    message = str(exc.value)
    assert message.startswith(f"config file {config}: ")
    return message


@pytest.mark.parametrize(
    ("line", "meant"),
    [
        ("read_timout = 5", "read_timeout"),
        ("Log_Levle = debug", "log_level"),
        ("upstreams = https://api.remote.it", "upstream"),
    ],
)
def test_a_misspelt_setting_gets_the_nearest_known_one(
    tmp_path: Path, line: str, meant: str
) -> None:
    message = refusal(tmp_path, f"[proxy]\n{line}\n")
    name = line.split(" =")[0].lower()
    assert f"unknown setting {name} in [proxy]; did you mean '{meant}'?" in message


@pytest.mark.parametrize("name", ["read-only", "log-level", "max-buffered-body"])
def test_a_setting_written_with_dashes_is_named_with_underscores(tmp_path: Path, name: str) -> None:
    message = refusal(tmp_path, f"[proxy]\n{name} = 1\n")
    meant = name.replace("-", "_")
    assert (
        f"unknown setting {name} in [proxy]; write it {meant}: in the file, setting names "
        "have '_' where the command line has '-'"
    ) in message


def test_client_and_upstream_sections_name_the_setting_meant_too(tmp_path: Path) -> None:
    client = "[client.backup]\ntoken_env = BACKUP_TOKEN\nread-only = true\n"
    message = refusal(tmp_path, client)
    assert "unknown setting read-only in [client.backup]; write it read_only" in message
    message = refusal(tmp_path, "[upstream.events]\nurl = wss://ws.remote.it\nmonut = /ev\n")
    assert "unknown setting monut in [upstream.events]; did you mean 'mount'?" in message


def test_a_name_near_none_still_lists_the_known_settings(tmp_path: Path) -> None:
    message = refusal(tmp_path, "[proxy]\ncolour = blue\n")
    assert "unknown setting colour in [proxy]; known settings: " in message
    assert "did you mean" not in message
