"""The README's set-up commands, CI and the example config agree with each other and the code."""

from __future__ import annotations

import re
from pathlib import Path

from proxy.config.options import CONFIG_OPTION, OPTIONS
from proxy.config.resolve import read_config_file, resolve

ROOT = Path(__file__).parent.parent
CLIENTS = "# --- Clients"
UPSTREAMS = "# --- Upstreams"


def shell_blocks(text: str) -> list[str]:
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", text, re.S)]


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text()
    setup = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    install, test = shell_blocks(setup)
    assert "remoteit-proxy" in install and "pip install ." in install
    assert "pytest" in test and "[test]" in test
    assert test in (ROOT / ".ci" / "run").read_text().splitlines()


def test_example_config_documents_every_setting_with_its_default(tmp_path: Path) -> None:
    example = (ROOT / "config.example.ini").read_text().split(CLIENTS)[0]
    # Uncommenting every "# key = value" line must give a valid file equal to the defaults.
    uncommented = re.sub(r"^# (\w+ = .*)$", r"\1", example, flags=re.M)
    config = tmp_path / "proxy.ini"
    config.write_text(uncommented)
    values = read_config_file(config)
    assert set(values) <= {option.key for option in OPTIONS}
    for option in OPTIONS:  # settings with no default are shown with an example value
        assert re.search(rf"^# ?{option.key} = ", example, re.M), option.key
    home = tmp_path / "home"
    from_file = resolve({"config": str(config)}, {"HOME": str(home)})
    defaults = resolve({}, {})
    for option in OPTIONS:
        if option.default is not None:
            assert values[option.key] == option.default
            assert getattr(from_file, option.key) == getattr(defaults, option.key)


def test_readme_configuration_table_lists_every_option_with_its_default() -> None:
    readme = (ROOT / "README.md").read_text()
    rows = {
        match.group(1): match.group(2)
        for match in re.finditer(r"^\| `(--[\w-]+)[^`]*` \| (.*) \|$", readme, re.M)
    }
    for option in (*OPTIONS, CONFIG_OPTION):
        assert option.flag in rows, option.flag
        if option.default is not None:
            assert f"`{option.default}`" in rows[option.flag], option.flag
    # The environment variable and config key are derived by the rule the README states.
    read_timeout = next(option for option in OPTIONS if option.name == "read-timeout")
    assert f"`{read_timeout.env}=30`" in readme and f"`{read_timeout.key} = 30`" in readme
    prose = " ".join(readme.split())
    assert "`REMOTEIT_PROXY_` and the option's name in capitals, `-` as `_`" in prose


def test_readme_is_short_enough_to_read() -> None:
    assert len((ROOT / "README.md").read_bytes()) < 21_000


def test_example_client_section_uncommented_is_a_working_client(tmp_path: Path) -> None:
    example = (ROOT / "config.example.ini").read_text()
    section = example.split(CLIENTS)[1].split(UPSTREAMS)[0]
    # Uncomment the example (its own comments start with "# #"); put its token where it says.
    token = tmp_path / "backup-token"
    token.write_text("backup-token-value\n")
    text = "\n".join(
        line[2:] for line in section.splitlines() if line.startswith("# ") and line[2:3] != "#"
    )
    text = text.replace("/run/secrets/backup-token", str(token))
    config = tmp_path / "proxy.ini"
    config.write_text(text[text.index("[client.backup]") :])
    settings = resolve({"config": str(config)}, {})
    (client,) = settings.clients
    assert (client.name, client.token, client.profile) == ("backup", "backup-token-value", "work")
    policy = client.policy
    assert policy.read_only and not policy.allow_user_header
    assert policy.graphql == {"query": {"login", "devices"}, "mutation": frozenset()}
    assert [str(rule) for rule in policy.rest or ()] == [
        "GET /apv/v27/device/list/*",
        "GET /apv/v27/user/*",
    ]


def test_example_upstream_section_uncommented_is_a_working_upstream(tmp_path: Path) -> None:
    section = (ROOT / "config.example.ini").read_text().split(UPSTREAMS)[1]
    text = "\n".join(
        line[2:] for line in section.splitlines() if line.startswith("# ") and line[2:3] != "#"
    )
    config = tmp_path / "proxy.ini"
    config.write_text(text[text.index("[upstream.events]") :])
    (events,) = resolve({"config": str(config)}, {}).upstreams
    assert str(events.upstream) == "https://ws.remote.it"
    assert events.mounts == ("/-/to/events", "/events") and events.scheme == "rfc9421"


def test_every_metric_is_documented() -> None:
    from proxy.ops.metrics import Metrics

    documented = (ROOT / "docs" / "metrics.md").read_text()
    families = list(Metrics(lambda: {}, lambda: 0).collect())
    assert len(families) >= 17
    for family in families:
        suffix = "_total" if family.type == "counter" else ""
        assert f"`{family.name}{suffix}" in documented, family.name


def test_every_error_code_the_proxy_answers_is_documented() -> None:
    import ast

    codes: set[str] = set()
    for module in (ROOT / "proxy").rglob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", getattr(node.func, "attr", "")) == "error_response"
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
            ):
                codes.add(node.args[1].value)
    assert {"rate_limited", "shutting_down", "shutdown_deadline", "header_timeout"} <= codes
    documented = (ROOT / "docs" / "errors.md").read_text()
    assert not {code for code in codes if f"`{code}`" not in documented}
