"""Resolving the options: command line > environment > config file > defaults."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..keys.credentials import default_credentials_path
from .addresses import Listen
from .file import ClientConfig, parse_clients, read_config, read_token_file
from .options import CONFIG_OPTION, OPTIONS
from .settings import Settings
from .upstreams import NamedUpstream, parse_upstreams
from .values import with_burst

_KNOWN = frozenset(option.key for option in OPTIONS)


def default_config_path() -> Path:
    """``~/.remoteit/proxy.ini``, next to the credentials file: read when it exists."""
    return default_credentials_path().with_name("proxy.ini")


def read_config_file(path: Path) -> dict[str, str]:
    """The ``[proxy]`` section of a config file; unknown keys are errors, not ignored."""
    return read_config(path, _KNOWN).values


def exposed(listen: Listen, token: str | None, allow_unauthenticated: bool, clients: bool) -> bool:
    """Whether others could use the account through a proxy listening there: not loopback,
    no token, no client sections (each client presents its own token), not allowed anyway."""
    return not (listen.is_loopback or token is not None or allow_unauthenticated or clients)


def _check_exposure(values: Mapping[str, Any], clients: tuple[ClientConfig, ...]) -> None:
    if not exposed(
        values["listen"], values["token"], values["allow_unauthenticated"], bool(clients)
    ):
        return
    listen: Listen = values["listen"]
    raise ConfigError(
        f"refusing to listen on {listen} without a token: anyone who can reach that address "
        "could use your Remote.It account through this proxy. Set a token that clients must "
        "send (--token, REMOTEIT_PROXY_TOKEN or --token-file), or, on a network you trust, "
        "pass --allow-unauthenticated"
    )


def resolve(
    cli: Mapping[str, str],
    environ: Mapping[str, str],
    serving: bool = True,
    used: Collection[str] | None = None,
    defaults: Mapping[str, str] | None = None,
    read_default: bool = True,
) -> Settings:
    """Resolve every option: command line > environment > config file > defaults.

    ``cli`` maps option names (``log-level``) to the strings given on the command line.
    ``serving`` False skips what only serving needs: the token, the client sections and the
    listener's exposure check. ``used`` names the options a command reads (None: all); the
    others keep their defaults, so that a value meant for ``serve`` cannot stop ``check``.
    ``defaults`` replaces some options' defaults (by name) for one command. ``read_default``
    False reads no config file unless one is named (not even ``~/.remoteit/proxy.ini``).
    """
    defaults = defaults or {}
    config_path: Path | None = None
    if "config" in cli:
        config_path = Path(cli["config"]).expanduser()
    elif environ.get(CONFIG_OPTION.env):
        config_path = Path(environ[CONFIG_OPTION.env]).expanduser()
    elif read_default and (home_config := default_config_path()).is_file():
        config_path = home_config  # read when present, as ~/.remoteit/credentials is
    config = read_config(config_path, _KNOWN) if config_path is not None else None
    from_file = config.values if config is not None else {}

    values: dict[str, Any] = {}
    for option in OPTIONS:
        if used is not None and option.name not in used:
            default = option.default
            values[option.key] = None if default is None else option.parse(default, "default")
            continue
        if option.name in cli:
            raw, origin = cli[option.name], option.flag
        elif environ.get(option.env):
            raw, origin = environ[option.env], option.env
        elif option.key in from_file:
            raw, origin = from_file[option.key], f"config file {config_path} [proxy] {option.key}"
        elif option.name in defaults:
            raw, origin = defaults[option.name], f"default {option.flag}"
        elif option.default is not None:
            raw, origin = option.default, f"default {option.flag}"
        else:
            values[option.key] = None
            continue
        values[option.key] = option.parse(raw.strip(), origin)
    if values["credentials"] is None:
        values["credentials"] = default_credentials_path()
    if values["token_file"] is not None and serving:  # the other commands take no token
        if values["token"] is not None:
            raise ConfigError("--token and --token-file are both set; use only one of them")
        values["token"] = read_token_file(values["token_file"], "--token-file")
    values["rate_limit"] = with_burst(values["rate_limit"], values["burst"], "--burst")
    if values["sign_content_digest"] and values["scheme"] != "rfc9421":
        raise ConfigError("--sign-content-digest needs --scheme rfc9421 (cavage signs no digest)")
    clients: tuple[ClientConfig, ...] = ()
    if config is not None and config_path is not None and serving:  # the clients' tokens too
        clients = parse_clients(config, config_path, environ, values["profile"], values["token"])
    if serving:
        _check_exposure(values, clients)
    upstreams: tuple[NamedUpstream, ...] = ()
    if config is not None and config_path is not None:
        upstreams = parse_upstreams(config_path, config.upstreams)
    return Settings(config=config_path, clients=clients, upstreams=upstreams, **values)
