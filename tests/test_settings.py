"""Settings: defaults, precedence of the layers, parsing and validation of every option."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from proxy.config.addresses import Listen, Upstream, parse_listen, parse_upstream
from proxy.config.options import OPTIONS
from proxy.config.resolve import read_config_file, resolve
from proxy.config.settings import Settings
from proxy.errors import ConfigError


@pytest.fixture(autouse=True)
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A private home directory, so that defaults never depend on the real one."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USERPROFILE", str(home))
    return home


def write_config(path: Path, body: str, section: str = "proxy") -> Path:
    path.write_text(f"[{section}]\n{body}", encoding="utf-8")
    return path


def config_error(cli: dict[str, str], environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as exc:
        resolve(cli, environ or {})
    return str(exc.value)


def summary(settings: Settings) -> dict[str, Any]:
    """Every resolved option as a comparable plain value."""
    return {
        "listen": str(settings.listen),
        "upstream": str(settings.upstream),
        "credentials": settings.credentials,
        "profile": settings.profile,
        "log-level": settings.log_level,
        "connect-timeout": settings.connect_timeout,
        "read-timeout": settings.read_timeout,
        "token": settings.token,
        "allow-unauthenticated": settings.allow_unauthenticated,
        "socket-mode": settings.socket_mode,
        "ca-bundle": settings.ca_bundle,
        "insecure-skip-verify": settings.insecure_skip_verify,
        "shutdown-timeout": settings.shutdown_timeout,
        "websocket-idle-timeout": settings.websocket_idle_timeout,
    }


# --- the option table and the defaults --------------------------------------------------------


def test_option_table_names_env_and_keys() -> None:
    assert [o.name for o in OPTIONS] == [
        "listen",
        "upstream",
        "credentials",
        "profile",
        "log-level",
        "connect-timeout",
        "read-timeout",
        "header-timeout",
        "client-timeout",
        "max-connections",
        "retries",
        "retry-budget",
        "rate-limit",
        "burst",
        "max-upstream-concurrency",
        "queue-timeout",
        "coalesce-queries",
        "admin-endpoints",
        "token",
        "token-file",
        "allow-unauthenticated",
        "socket-mode",
        "ca-bundle",
        "insecure-skip-verify",
        "shutdown-timeout",
        "websocket-idle-timeout",
        "log-format",
        "clock-skew-threshold",
        "no-clock-correction",
        "scheme",
        "sign-headers",
        "sign-content-digest",
        "max-buffered-body",
        "workers",
        "read-only",
        "graphql-paths",
    ]
    by_name = {o.name: o for o in OPTIONS}
    assert by_name["log-level"].flag == "--log-level"
    assert by_name["log-level"].env == "REMOTEIT_PROXY_LOG_LEVEL"
    assert by_name["log-level"].key == "log_level"
    assert by_name["connect-timeout"].env == "REMOTEIT_PROXY_CONNECT_TIMEOUT"
    assert by_name["read-timeout"].key == "read_timeout"
    assert by_name["listen"].env == "REMOTEIT_PROXY_LISTEN"
    for option in OPTIONS:
        assert option.help


def test_defaults(home: Path) -> None:
    settings = resolve({}, {})
    assert settings.listen == Listen("127.0.0.1", 8181)
    assert settings.upstream == Upstream("https", "api.remote.it", 443, "")
    assert str(settings.upstream) == "https://api.remote.it"
    assert settings.credentials == home / ".remoteit" / "credentials"
    assert settings.profile == "DEFAULT"
    assert settings.log_level == "info"
    assert settings.connect_timeout == 10.0
    assert settings.read_timeout == 60.0
    assert settings.config is None


def test_option_table_defaults_match_resolved_defaults() -> None:
    defaults = {o.name: o.default for o in OPTIONS}
    assert defaults == {
        "listen": "127.0.0.1:8181",
        "upstream": "https://api.remote.it",
        "credentials": None,
        "profile": "DEFAULT",
        "log-level": "info",
        "connect-timeout": "10",
        "read-timeout": "60",
        "header-timeout": "10",
        "client-timeout": "60",
        "max-connections": "auto",
        "retries": "2",
        "retry-budget": "20",
        "rate-limit": "off",
        "burst": "auto",
        "max-upstream-concurrency": "off",
        "queue-timeout": "10",
        "coalesce-queries": "false",
        "admin-endpoints": "false",
        "token": None,
        "token-file": None,
        "allow-unauthenticated": "false",
        "socket-mode": "0600",
        "ca-bundle": None,
        "insecure-skip-verify": "false",
        "shutdown-timeout": "10",
        "websocket-idle-timeout": "off",
        "log-format": "text",
        "clock-skew-threshold": "5",
        "no-clock-correction": "false",
        "scheme": "cavage",
        "sign-headers": "(request-target) host date content-type",
        "sign-content-digest": "false",
        "max-buffered-body": "10MiB",
        "workers": "1",
        "read-only": "false",
        "graphql-paths": "/graphql/v1 /graphql/beta",
    }


# --- precedence: command line > environment > config file > defaults -------------------------

# For each option: the raw value given in each layer and what it resolves to.
LAYER_VALUES: dict[str, dict[str, tuple[str, Any]]] = {
    "cli": {
        "listen": ("127.0.0.1:1111", "127.0.0.1:1111"),
        "upstream": ("https://cli.example", "https://cli.example"),
        "credentials": ("/cli/credentials", Path("/cli/credentials")),
        "profile": ("cli", "cli"),
        "log-level": ("debug", "debug"),
        "connect-timeout": ("1", 1.0),
        "read-timeout": ("4", 4.0),
        "token": ("cli-token", "cli-token"),
        "allow-unauthenticated": ("true", True),
        "socket-mode": ("0660", 0o660),
        "ca-bundle": ("/cli/ca.pem", Path("/cli/ca.pem")),
        "insecure-skip-verify": ("false", False),
        "shutdown-timeout": ("7", 7.0),
        "websocket-idle-timeout": ("30", 30.0),
    },
    "env": {
        "listen": ("[::1]:2222", "[::1]:2222"),
        "upstream": ("http://env.example:8080/api/", "http://env.example:8080/api"),
        "credentials": ("/env/credentials", Path("/env/credentials")),
        "profile": ("env", "env"),
        "log-level": ("WARNING", "warning"),
        "connect-timeout": ("2.5", 2.5),
        "read-timeout": ("5", 5.0),
        "token": ("env-token", "env-token"),
        "allow-unauthenticated": ("0", False),
        "socket-mode": ("640", 0o640),
        "ca-bundle": ("/env/ca.pem", Path("/env/ca.pem")),
        "insecure-skip-verify": ("TRUE", True),
        "shutdown-timeout": ("8", 8.0),
        "websocket-idle-timeout": ("off", None),
    },
    "file": {
        "listen": ("localhost:3333", "localhost:3333"),
        "upstream": ("https://FILE.example:8443", "https://file.example:8443"),
        "credentials": ("/file/credentials", Path("/file/credentials")),
        "profile": ("file", "file"),
        "log-level": ("error", "error"),
        "connect-timeout": ("3", 3.0),
        "read-timeout": ("6", 6.0),
        "token": ("file-token", "file-token"),
        "allow-unauthenticated": ("on", True),
        "socket-mode": ("0o600", 0o600),
        "ca-bundle": ("/file/ca.pem", Path("/file/ca.pem")),
        "insecure-skip-verify": ("no", False),
        "shutdown-timeout": ("9", 9.0),
        "websocket-idle-timeout": ("0.5", 0.5),
    },
}


def env_name(option: str) -> str:
    return "REMOTEIT_PROXY_" + option.upper().replace("-", "_")


def layers(tmp_path: Path, use: set[str]) -> tuple[dict[str, str], dict[str, str]]:
    """The cli and environ mappings with every option set in each layer of ``use``."""
    cli: dict[str, str] = {}
    environ: dict[str, str] = {}
    if "file" in use:
        body = "".join(
            f"{name.replace('-', '_')} = {raw}\n" for name, (raw, _) in LAYER_VALUES["file"].items()
        )
        cli["config"] = str(write_config(tmp_path / "proxy.ini", body))
    if "env" in use:
        environ.update({env_name(n): raw for n, (raw, _) in LAYER_VALUES["env"].items()})
    if "cli" in use:
        cli.update({n: raw for n, (raw, _) in LAYER_VALUES["cli"].items()})
    return cli, environ


def expected(layer: str) -> dict[str, Any]:
    return {name: value for name, (_, value) in LAYER_VALUES[layer].items()}


@pytest.mark.parametrize(
    ("use", "winner"),
    [
        ({"cli", "env", "file"}, "cli"),
        ({"cli", "file"}, "cli"),
        ({"cli", "env"}, "cli"),
        ({"cli"}, "cli"),
        ({"env", "file"}, "env"),
        ({"env"}, "env"),
        ({"file"}, "file"),
    ],
    ids=["all", "cli-over-file", "cli-over-env", "cli", "env-over-file", "env", "file"],
)
def test_each_layer_wins_over_the_next(tmp_path: Path, use: set[str], winner: str) -> None:
    cli, environ = layers(tmp_path, use)
    assert summary(resolve(cli, environ)) == expected(winner)


def test_file_wins_over_defaults_and_defaults_fill_the_rest(tmp_path: Path, home: Path) -> None:
    config = write_config(tmp_path / "proxy.ini", "log_level = debug\nread_timeout = 7\n")
    settings = resolve({"config": str(config)}, {})
    assert settings.log_level == "debug"
    assert settings.read_timeout == 7.0
    assert settings.connect_timeout == 10.0
    assert str(settings.listen) == "127.0.0.1:8181"
    assert settings.credentials == home / ".remoteit" / "credentials"
    assert settings.config == config


def test_each_option_from_a_different_layer(tmp_path: Path) -> None:
    config = write_config(tmp_path / "proxy.ini", "profile = fromfile\nlisten = localhost:9\n")
    settings = resolve(
        {"config": str(config), "listen": "127.0.0.1:1"},
        {"REMOTEIT_PROXY_UPSTREAM": "http://env.example", "REMOTEIT_PROXY_LISTEN": "x:2"},
    )
    assert str(settings.listen) == "127.0.0.1:1"  # command line
    assert str(settings.upstream) == "http://env.example"  # environment
    assert settings.profile == "fromfile"  # config file
    assert settings.log_level == "info"  # default


def test_empty_environment_variable_is_ignored(tmp_path: Path) -> None:
    config = write_config(tmp_path / "proxy.ini", "profile = fromfile\n")
    environ = {"REMOTEIT_PROXY_PROFILE": "", "REMOTEIT_PROXY_LOG_LEVEL": ""}
    settings = resolve({"config": str(config)}, environ)
    assert settings.profile == "fromfile"
    assert settings.log_level == "info"


def test_config_file_from_the_environment(tmp_path: Path) -> None:
    config = write_config(tmp_path / "proxy.ini", "profile = fromenvconfig\n")
    settings = resolve({}, {"REMOTEIT_PROXY_CONFIG": str(config)})
    assert settings.profile == "fromenvconfig"
    assert settings.config == config


def test_config_on_command_line_wins_over_environment(tmp_path: Path) -> None:
    config = write_config(tmp_path / "proxy.ini", "profile = fromcli\n")
    environ = {"REMOTEIT_PROXY_CONFIG": str(tmp_path / "does-not-exist.ini")}
    settings = resolve({"config": str(config)}, environ)
    assert settings.profile == "fromcli"
    assert settings.config == config


def test_paths_expand_the_home_directory(home: Path) -> None:
    write_config(home / "proxy.ini", "profile = tilde\n")
    settings = resolve({"config": "~/proxy.ini", "credentials": "~/creds"}, {})
    assert settings.config == home / "proxy.ini"
    assert settings.credentials == home / "creds"
    assert settings.profile == "tilde"


def test_values_are_stripped() -> None:
    settings = resolve({"listen": " 127.0.0.1:1 ", "profile": " work "}, {})
    assert settings.listen == Listen("127.0.0.1", 1)
    assert settings.profile == "work"


@pytest.mark.parametrize("option", ["profile", "credentials"])
def test_empty_text_value_is_rejected(option: str) -> None:
    message = config_error({option: "  "})
    assert f"--{option}" in message
    assert "empty" in message


# --- parse_listen ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "host", "port"),
    [
        ("127.0.0.1:8181", "127.0.0.1", 8181),
        ("[::1]:8181", "::1", 8181),
        ("localhost:0", "localhost", 0),
        ("0.0.0.0:65535", "0.0.0.0", 65535),
        ("[::]:80", "::", 80),
        ("[::ffff:127.0.0.1]:1", "::ffff:127.0.0.1", 1),
        ("proxy-1.example.com:443", "proxy-1.example.com", 443),
    ],
)
def test_parse_listen(value: str, host: str, port: int) -> None:
    listen = parse_listen(value, "--listen")
    assert listen == Listen(host, port)
    assert str(listen) == value


@pytest.mark.parametrize(
    "value",
    ["8181", ":8181", "host:99999", "host:65536", "[::1]", "a b:1", "host:", "", "[::1]8181"]
    + ["host:-1", "host:1x", "[zz]:1", "::1:8181", "host:1\n", "http://host:1"],
)
@pytest.mark.parametrize("origin", ["--listen", "REMOTEIT_PROXY_LISTEN"])
def test_parse_listen_rejects(value: str, origin: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_listen(value, origin)
    assert str(exc.value).startswith(f"{origin}: ")
    assert repr(value) in str(exc.value)


def test_bad_listen_names_its_origin() -> None:
    assert config_error({"listen": "8181"}).startswith("--listen: ")
    message = config_error({}, {"REMOTEIT_PROXY_LISTEN": ":8181"})
    assert message.startswith("REMOTEIT_PROXY_LISTEN: ")


# --- parse_upstream -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "authority", "port", "prefix", "text"),
    [
        ("https://api.remote.it", "api.remote.it", 443, "", "https://api.remote.it"),
        ("https://api.remote.it/", "api.remote.it", 443, "", "https://api.remote.it"),
        ("https://api.remote.it:443", "api.remote.it", 443, "", "https://api.remote.it"),
        ("http://example.com:80/", "example.com", 80, "", "http://example.com"),
        ("https://example.com:80", "example.com:80", 80, "", "https://example.com:80"),
        ("http://example.com:443", "example.com:443", 443, "", "http://example.com:443"),
        (
            "https://API.Remote.IT:8443",
            "api.remote.it:8443",
            8443,
            "",
            "https://api.remote.it:8443",
        ),
        ("HTTPS://Api.Remote.It", "api.remote.it", 443, "", "https://api.remote.it"),
        ("http://[::1]:8080", "[::1]:8080", 8080, "", "http://[::1]:8080"),
        ("http://[::1]", "[::1]", 80, "", "http://[::1]"),
        ("http://[FE80::1]:81/", "[fe80::1]:81", 81, "", "http://[fe80::1]:81"),
        ("https://h.example/api/v1/", "h.example", 443, "/api/v1", "https://h.example/api/v1"),
        ("https://h.example/Api", "h.example", 443, "/Api", "https://h.example/Api"),
        ("http://127.0.0.1:9/p", "127.0.0.1:9", 9, "/p", "http://127.0.0.1:9/p"),
    ],
)
def test_parse_upstream(value: str, authority: str, port: int, prefix: str, text: str) -> None:
    upstream = parse_upstream(value, "--upstream")
    assert upstream.authority == authority
    assert upstream.port == port
    assert upstream.prefix == prefix
    assert upstream.host == upstream.host.lower()
    assert upstream.origin == f"{upstream.scheme}://{authority}"
    assert str(upstream) == text


@pytest.mark.parametrize(
    "value",
    [
        "ftp://api.remote.it",
        "ws://api.remote.it",
        "api.remote.it",
        "//api.remote.it",
        "https://",
        "https:///path",
        "https://user:pass@api.remote.it",
        "https://user@api.remote.it",
        "https://api.remote.it/?x=1",
        "https://api.remote.it?",
        "https://api.remote.it/#frag",
        "https://api.remote.it:99999",
        "https://api.remote.it:port",
        "https://api.remote.it:-1",
        "https://[::1",
        "",
    ],
)
@pytest.mark.parametrize("origin", ["--upstream", "REMOTEIT_PROXY_UPSTREAM"])
def test_parse_upstream_rejects(value: str, origin: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_upstream(value, origin)
    assert str(exc.value).startswith(f"{origin}: ")


def test_upstream_error_does_not_echo_a_password() -> None:
    message = config_error({}, {"REMOTEIT_PROXY_UPSTREAM": "https://me:Pa55w0rd@api.remote.it"})
    assert message.startswith("REMOTEIT_PROXY_UPSTREAM: ")
    assert "Pa55w0rd" not in message


def test_parse_upstream_rejects_port_zero() -> None:
    with pytest.raises(ConfigError, match="--upstream"):
        parse_upstream("https://api.remote.it:0", "--upstream")


def test_parse_upstream_rejects_empty_fragment() -> None:
    with pytest.raises(ConfigError, match="--upstream"):
        parse_upstream("https://api.remote.it#", "--upstream")


@pytest.mark.parametrize("value", ["https://api remote.it", "https://api.remote.it;x"])
def test_parse_upstream_rejects_invalid_host_characters(value: str) -> None:
    with pytest.raises(ConfigError, match="--upstream"):
        parse_upstream(value, "--upstream")


# --- timeouts and log level -----------------------------------------------------------------


@pytest.mark.parametrize(("value", "seconds"), [("0.5", 0.5), ("1e3", 1000.0), (" 7 ", 7.0)])
@pytest.mark.parametrize("option", ["connect-timeout", "read-timeout"])
def test_timeouts(option: str, value: str, seconds: float) -> None:
    settings = resolve({option: value}, {})
    assert getattr(settings, option.replace("-", "_")) == seconds


@pytest.mark.parametrize("value", ["0", "-1", "-0.5", "abc", "nan", "inf", "", "1s"])
@pytest.mark.parametrize("option", ["connect-timeout", "read-timeout"])
def test_timeouts_must_be_positive_numbers(option: str, value: str) -> None:
    message = config_error({option: value})
    assert message.startswith(f"--{option}: ")
    assert "positive" in message
    message = config_error({}, {env_name(option): value or "0"})
    assert message.startswith(f"{env_name(option)}: ")


@pytest.mark.parametrize(
    ("value", "seconds"), [("off", None), ("OFF", None), ("0", None), ("2.5", 2.5)]
)
def test_websocket_idle_timeout_is_seconds_or_off(value: str, seconds: float | None) -> None:
    assert resolve({"websocket-idle-timeout": value}, {}).websocket_idle_timeout == seconds


@pytest.mark.parametrize("value", ["-1", "abc", "nan", "inf", "", "1s", "never"])
def test_websocket_idle_timeout_names_what_it_takes(value: str) -> None:
    message = config_error({"websocket-idle-timeout": value})
    assert message.startswith("--websocket-idle-timeout: ")
    assert message.endswith("is not a positive number of seconds, or off")


@pytest.mark.parametrize(
    ("value", "level"), [("debug", "debug"), ("INFO", "info"), ("Warning", "warning")]
)
def test_log_levels(value: str, level: str) -> None:
    assert resolve({"log-level": value}, {}).log_level == level
    assert resolve({}, {"REMOTEIT_PROXY_LOG_LEVEL": value}).log_level == level


@pytest.mark.parametrize("value", ["warn", "critical", "verbose", "", "10"])
def test_log_level_must_be_known(value: str) -> None:
    message = config_error({"log-level": value})
    assert message.startswith("--log-level: ")
    for level in ("debug", "info", "warning", "error"):
        assert level in message


# --- config file ----------------------------------------------------------------------------


def test_read_config_file(tmp_path: Path) -> None:
    path = tmp_path / "proxy.ini"
    path.write_bytes(
        b"\xef\xbb\xbf# comment\n[proxy]\n; comment\n"
        b"LOG_LEVEL = debug\nlisten: [::1]:1\nprofile = 100%\n"
    )
    assert read_config_file(path) == {"log_level": "debug", "listen": "[::1]:1", "profile": "100%"}
    # Any other section is refused: a misspelt one would silently not apply.
    path.write_text("[proxy]\n[other]\nanything = goes\n")
    with pytest.raises(ConfigError, match=r"unknown section \[other\]"):
        read_config_file(path)


def test_every_option_key_is_accepted_in_the_config_file(tmp_path: Path) -> None:
    file_values = {name: raw for name, (raw, _) in LAYER_VALUES["file"].items()}
    body = "".join(f"{o.key} = {file_values.get(o.name, '/some/path')}\n" for o in OPTIONS)
    values = read_config_file(write_config(tmp_path / "proxy.ini", body))
    assert set(values) == {option.key for option in OPTIONS}


@pytest.mark.parametrize("via", ["cli", "env"])
def test_missing_config_file(tmp_path: Path, via: str) -> None:
    missing = tmp_path / "missing.ini"
    if via == "cli":
        message = config_error({"config": str(missing)})
    else:
        message = config_error({}, {"REMOTEIT_PROXY_CONFIG": str(missing)})
    assert str(missing) in message
    assert "does not exist" in message
    with pytest.raises(ConfigError, match="does not exist"):
        read_config_file(missing)


def test_config_path_is_a_directory(tmp_path: Path) -> None:
    message = config_error({"config": str(tmp_path)})
    assert str(tmp_path) in message


@pytest.mark.parametrize(
    "data",
    [b"[proxy]\nlisten = caf\xe9:1\n", b"listen = 127.0.0.1:1\n", b"[proxy]\nnot a setting\n"]
    + [b"[proxy]\nprofile = a\nprofile = b\n", b"[proxy]\n[proxy]\n"],
    ids=["non-utf8", "no-section-header", "garbage", "duplicate-key", "duplicate-section"],
)
def test_unreadable_config_file(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "proxy.ini"
    path.write_bytes(data)
    message = config_error({"config": str(path)})
    assert str(path) in message


@pytest.mark.parametrize("section", ["other", "PROXY", "Proxy"])
def test_config_file_without_proxy_section(tmp_path: Path, section: str) -> None:
    path = write_config(tmp_path / "proxy.ini", "listen = 127.0.0.1:1\n", section)
    message = config_error({"config": str(path)})
    assert str(path) in message
    assert "[proxy]" in message


@pytest.mark.parametrize("key", ["log-level", "colour", "config", "timeout"])
def test_unknown_config_key(tmp_path: Path, key: str) -> None:
    path = write_config(tmp_path / "proxy.ini", f"profile = x\n{key} = 1\n")
    message = config_error({"config": str(path)})
    assert str(path) in message
    assert f"unknown setting {key} " in message
    assert "log_level" in message  # the known settings are listed


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("listen", "8181"),
        ("upstream", "ftp://x"),
        ("log_level", "loud"),
        ("connect_timeout", "0"),
        ("read_timeout", "soon"),
        ("profile", ""),
        ("credentials", ""),
    ],
)
def test_bad_value_in_config_file_names_file_and_key(tmp_path: Path, key: str, value: str) -> None:
    path = write_config(tmp_path / "proxy.ini", f"{key} = {value}\n")
    message = config_error({"config": str(path)})
    assert str(path) in message
    assert key in message
    assert "[proxy]" in message


def test_bad_value_in_config_file_is_ignored_when_overridden(tmp_path: Path) -> None:
    path = write_config(tmp_path / "proxy.ini", "log_level = loud\n")
    assert resolve({"config": str(path), "log-level": "error"}, {}).log_level == "error"
    environ = {"REMOTEIT_PROXY_LOG_LEVEL": "debug"}
    assert resolve({"config": str(path)}, environ).log_level == "debug"


@pytest.mark.parametrize(
    "option", ["workers", "max-connections", "retries", "max-upstream-concurrency", "burst"]
)
def test_a_count_in_other_digits_is_refused_with_a_message(option: str) -> None:
    # "\u00b2" (a superscript two) passes str.isdigit; int() then raised ValueError, a traceback.
    extra = {"rate-limit": "1/s"} if option == "burst" else {}
    message = config_error({option: "\u00b2", **extra})
    assert message.startswith(f"--{option}: '\u00b2' is not a number")
