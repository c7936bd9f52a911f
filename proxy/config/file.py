"""The config file: ``[proxy]`` settings, ``[client.NAME]`` and ``[upstream.NAME]`` sections."""

from __future__ import annotations

import configparser
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..policy.bucket import Rate
from ..policy.rules import ANY, OPERATION_TYPES, Policy, RestRule
from .unknown import no_unknown
from .upstreams import UPSTREAM_KEYS, UPSTREAM_PREFIX
from .values import parse_bool, parse_count_or_auto, parse_rate, parse_token, with_burst

CONFIG_SECTION = "proxy"
CLIENT_PREFIX = "client."
CLIENT_KEYS = frozenset(
    {
        "token_file",
        "token_env",
        "profile",
        "read_only",
        "rest",
        "allow_user_header",
        "rate_limit",
        "burst",
        *(f"graphql_{kind}" for kind in OPERATION_TYPES),
    }
)
_CLIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
_GRAPHQL_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")  # GraphQL spec 2.1.9 Names
_METHOD = re.compile(r"[A-Z]+|\*")


@dataclass(frozen=True)
class ClientConfig:
    """One ``[client.NAME]`` section: the token that picks it, its profile and its policy."""

    name: str
    token: str = field(repr=False)
    profile: str
    policy: Policy
    rate: Rate | None = None
    rate_given: bool = False  # False: the proxy's --rate-limit applies (True with None: off)


@dataclass(frozen=True)
class ConfigFile:
    """What a config file holds: the ``[proxy]`` settings and the client sections."""

    values: dict[str, str]
    clients: dict[str, dict[str, str]]
    upstreams: dict[str, dict[str, str]] = field(default_factory=dict)


def read_config(path: Path, known: frozenset[str]) -> ConfigFile:
    """Read the file; unknown sections and keys are errors, not ignored."""
    parser = configparser.RawConfigParser(interpolation=None, default_section="\x00")
    try:
        with path.open(encoding="utf-8-sig") as file:
            parser.read_file(file, source=str(path))
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} does not exist; check --config or REMOTEIT_PROXY_CONFIG"
        ) from None
    except configparser.Error as exc:
        raise ConfigError(f"config file {path}: {_ini_problem(exc)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise ConfigError(f"config file {path} cannot be read ({reason})") from None
    if any("\x00" in name for name in parser.sections()):
        raise ConfigError(f"config file {path} has a NUL character; it is not a text file")
    clients = {
        name[len(CLIENT_PREFIX) :]: dict(parser.items(name))
        for name in parser.sections()
        if name.startswith(CLIENT_PREFIX)
    }
    upstreams = {
        name[len(UPSTREAM_PREFIX) :]: dict(parser.items(name))
        for name in parser.sections()
        if name.startswith(UPSTREAM_PREFIX)
    }
    others = [
        s
        for s in parser.sections()
        if s != CONFIG_SECTION and not s.startswith((CLIENT_PREFIX, UPSTREAM_PREFIX))
    ]
    if others:
        raise ConfigError(
            f"config file {path}: unknown section [{others[0]}]; the sections are "
            f"[{CONFIG_SECTION}], [{CLIENT_PREFIX}NAME] and [{UPSTREAM_PREFIX}NAME]"
        )
    if not parser.has_section(CONFIG_SECTION) and not clients and not upstreams:
        raise ConfigError(
            f"config file {path} has no [{CONFIG_SECTION}] section; put the settings under a "
            f"[{CONFIG_SECTION}] line (see config.example.ini)"
        )
    values = dict(parser.items(CONFIG_SECTION)) if parser.has_section(CONFIG_SECTION) else {}
    no_unknown(path, CONFIG_SECTION, values, known)
    for name, section in clients.items():
        no_unknown(path, CLIENT_PREFIX + name, section, CLIENT_KEYS)
    for name, section in upstreams.items():
        no_unknown(path, UPSTREAM_PREFIX + name, section, UPSTREAM_KEYS)
    return ConfigFile(values, clients, upstreams)


def _ini_problem(exc: configparser.Error) -> str:
    """What is wrong with an INI file, in words (never the line itself, nor a class name)."""
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return (
            f"line {exc.lineno} comes before any section header; put the settings under a "
            f"[{CONFIG_SECTION}] line at the top"
        )
    if isinstance(exc, configparser.DuplicateSectionError):
        return f"section [{exc.section}] appears twice (line {exc.lineno}); keep only one"
    if isinstance(exc, configparser.DuplicateOptionError):
        return (
            f"setting {exc.option} appears twice in [{exc.section}] (line {exc.lineno}); "
            "keep only one"
        )
    if isinstance(exc, configparser.ParsingError):
        lines = ", ".join(str(lineno) for lineno, _ in exc.errors[:5])
        return f"line {lines} is neither 'key = value' nor '[section]'; fix or remove it"
    return "it cannot be read as an INI file; check its syntax"


def read_token_file(path: Path, origin: str) -> str:
    """A token kept in a file (a Docker or Kubernetes secret); never echoed."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{origin}: cannot read {path} ({reason})") from None
    if not token:
        raise ConfigError(f"{origin}: {path} is empty; write the token into it")
    return parse_token(token, f"{origin} {path}")


def parse_client(
    path: Path, name: str, section: Mapping[str, str], environ: Mapping[str, str], profile: str
) -> ClientConfig:
    """One ``[client.NAME]`` section; ``profile`` is the default profile (``--profile``)."""
    where = f"config file {path} [{CLIENT_PREFIX}{name}]"
    if not _CLIENT_NAME.fullmatch(name):
        raise ConfigError(
            f"{where}: a client name is letters, digits, '-' and '_' (up to 63), so that it "
            "can appear in logs and metrics"
        )
    token_file, token_env = section.get("token_file", "").strip(), section.get("token_env", "")
    if bool(token_file) == bool(token_env.strip()):
        raise ConfigError(
            f"{where}: give the client's token as exactly one of token_file (a file holding "
            "it) or token_env (the name of an environment variable holding it)"
        )
    if token_file:
        token = read_token_file(Path(token_file).expanduser(), f"{where} token_file")
    else:
        variable = token_env.strip()
        if not environ.get(variable, "").strip():
            raise ConfigError(f"{where}: token_env names {variable}, which is not set or empty")
        token = parse_token(environ[variable].strip(), f"{where} token_env {variable}")
    graphql: dict[str, frozenset[str]] = {}
    for kind in OPERATION_TYPES:
        key = f"graphql_{kind}"
        if key in section:
            graphql[kind] = _fields(section[key], f"{where} {key}")
    rest = _rules(section["rest"], f"{where} rest") if "rest" in section else None
    policy = Policy(
        read_only=parse_bool(section.get("read_only", "false").strip(), f"{where} read_only"),
        graphql=graphql or None,
        rest=rest,
        allow_user_header=parse_bool(
            section.get("allow_user_header", "false").strip(), f"{where} allow_user_header"
        ),
    )
    rate = None
    if "rate_limit" in section:
        rate = parse_rate(section["rate_limit"].strip(), f"{where} rate_limit")
    if "burst" in section:
        burst = parse_count_or_auto(section["burst"].strip(), f"{where} burst")
        rate = with_burst(rate, burst, f"{where} burst")
    chosen = section.get("profile", profile).strip() or profile
    return ClientConfig(name, token, chosen, policy, rate, "rate_limit" in section)


def _fields(value: str, origin: str) -> frozenset[str]:
    """``login, devices`` / ``*`` (any) / ``none`` (no field: the type is denied)."""
    names = [n for n in re.split(r"[\s,]+", value.strip()) if n]
    if names == ["none"]:
        return frozenset()
    if not names or any(n != ANY and not _GRAPHQL_NAME.fullmatch(n) for n in names):
        raise ConfigError(
            f"{origin}: {value.strip()!r} is not a list of GraphQL root fields; write field "
            "names separated by commas (login, devices), * for any, or none"
        )
    return frozenset(names)


def _rules(value: str, origin: str) -> tuple[RestRule, ...]:
    """One ``METHOD /path/glob`` a line (``*`` for any method), or ``none``."""
    lines = [line.strip() for line in value.splitlines() if line.strip()]
    if lines == ["none"]:
        return ()
    rules = []
    for line in lines:
        method, _, pattern = line.partition(" ")
        pattern = pattern.strip()
        if not _METHOD.fullmatch(method) or not pattern.startswith("/") or " " in pattern:
            raise ConfigError(
                f"{origin}: {line!r} is not a rule; write one 'METHOD /path/pattern' a line "
                "(e.g. GET /apv/v27/device/*), indented under rest =, or none"
            )
        rules.append(RestRule(method, pattern))
    if not rules:
        raise ConfigError(f"{origin}: is empty; write rules, or none to allow no REST request")
    return tuple(rules)


def parse_clients(
    config: ConfigFile, path: Path, environ: Mapping[str, str], profile: str, token: str | None
) -> tuple[ClientConfig, ...]:
    """Every ``[client.NAME]`` section; ``token`` is the single --token, which they exclude."""
    clients = tuple(
        parse_client(path, name, section, environ, profile)
        for name, section in config.clients.items()
    )
    if clients and token is not None:
        raise ConfigError(
            f"config file {path} has [client.NAME] sections and a token is set (--token, "
            "REMOTEIT_PROXY_TOKEN or --token-file): with clients, each one has its own token; "
            "remove the single token or make it a client"
        )
    seen: dict[str, str] = {}
    for client in clients:
        if client.token in seen:
            raise ConfigError(
                f"config file {path}: [client.{seen[client.token]}] and [client.{client.name}] "
                "have the same token; the token picks the client, so each needs its own"
            )
        seen[client.token] = client.name
    return clients
