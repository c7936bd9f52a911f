"""The container image and the deployment examples agree with the code, and their commands work.

There is no Docker here: the Dockerfile, the compose file and the Kubernetes manifests are
parsed, and what they would run (the image's ENTRYPOINT and CMD with its ENV, the compose
service's environment, the pod's proxy container, the health checks and probes, the compose
client's command) is run on this machine with the installed console script, against the
verifying fake upstream.
"""

from __future__ import annotations

import asyncio
import configparser
import contextlib
import fnmatch
import json
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path, PurePosixPath
from typing import Any

import aiohttp
import pytest
import yaml
from conftest import KEY_ID, SECRET_B64, ProxyFactory, write_credentials
from fake_upstream import FakeUpstream
from test_cli import base_env

from proxy import __version__
from proxy.config.addresses import Listen, parse_listen
from proxy.config.commandline import build_parser
from proxy.config.options import CONFIG_OPTION, OPTIONS

ROOT = Path(__file__).parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
KUBERNETES = DEPLOY / "kubernetes"
SECRET_DIR = DEPLOY / "secrets"
# The image's "remoteit-proxy", as installed in this environment.
BIN = Path(sys.executable).parent

PROXY_ENVS = frozenset(option.env for option in (*OPTIONS, CONFIG_OPTION))
R3_ENVS = frozenset({"R3_ACCESS_KEY_ID", "R3_SECRET_ACCESS_KEY", "R3_DEVELOPER_API_KEY"})
PREFIXES = ("REMOTEIT_PROXY_", "R3_")
HEALTH, READY = "/-/health", "/-/ready"
DEFAULT_SHUTDOWN = next(float(o.default or 0) for o in OPTIONS if o.name == "shutdown-timeout")
DOCKER_SECRETS = PurePosixPath("/run/secrets")
TOKEN = "deploy-test-token-5b7e0c2a9d"
URL_PATH = re.compile(r"http://[^/'\"\s]+(/[^'\"\s]*)")


def listen_of(value: str) -> Listen:
    """A listen address as the proxy reads it."""
    return parse_listen(value, "REMOTEIT_PROXY_LISTEN")


# --- Dockerfile ----------------------------------------------------------------------------


@dataclass
class Instruction:
    """One instruction: keyword (upper-case), its --flags, the rest, and the line it starts on."""

    keyword: str
    flags: dict[str, str]
    value: str
    line: int


@dataclass
class Stage:
    """One FROM and the instructions under it."""

    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"stage {self.name or self.image} has no {keyword}"
        return found[-1]

    @property
    def env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for instruction in self.all("ENV"):
            env.update(parse_env(instruction.value))
        return env


def logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Instructions with their continuation lines joined, as Docker does (escape char ``\\``).

    Comment lines (parser directives included) and blank lines are skipped, also inside a
    continued instruction.
    """
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if not parts:
            start = number
        if raw.rstrip().endswith("\\"):
            parts.append(raw.rstrip()[:-1])
            continue
        parts.append(raw)
        yield start, "".join(parts).strip()
        parts = []
    assert not parts, f"line {start}: the last instruction ends in a line continuation"


def parse_instruction(number: int, line: str) -> Instruction:
    match = re.fullmatch(r"(\S+)\s*(.*)", line, re.S)
    assert match, line
    keyword, rest = match.group(1).upper(), match.group(2)
    flags: dict[str, str] = {}
    while flag := re.match(r"--([\w-]+)(?:=(\S*))?\s+", rest):
        flags[flag.group(1)] = flag.group(2) or ""
        rest = rest[flag.end() :]
    return Instruction(keyword, flags, rest.strip(), number)


def parse_dockerfile(text: str) -> list[Stage]:
    stages: list[Stage] = []
    for number, line in logical_lines(text):
        instruction = parse_instruction(number, line)
        if instruction.keyword == "FROM":
            words = instruction.value.split()
            assert len(words) in (1, 3), f"line {number}: FROM image [AS name]"
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        else:
            assert stages, f"line {number}: {instruction.keyword} before the first FROM"
            stages[-1].instructions.append(instruction)
    return stages


def parse_env(value: str) -> dict[str, str]:
    """``ENV KEY=VALUE ...`` (quotes and escapes as a POSIX shell), or the legacy ``KEY VALUE``."""
    words = shlex.split(value)
    if words and "=" not in words[0]:
        key, _, rest = value.partition(" ")
        return {key: rest.strip()}
    pairs = [word.split("=", 1) for word in words]
    assert all(len(pair) == 2 for pair in pairs), value
    return {key: val for key, val in pairs}


def exec_form(value: str) -> list[str]:
    """A JSON array of strings: the exec form, run without a shell (so signals reach it)."""
    try:
        argv = json.loads(value)
    except json.JSONDecodeError:
        pytest.fail(f"not the exec (JSON) form: {value}")
    assert isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv), value
    return argv


def seconds(value: str | int | float) -> float:
    """A Docker duration such as ``30s``, ``1m30s`` or ``500ms``."""
    if isinstance(value, (int, float)):
        return float(value)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", value)
    assert parts and "".join(n + u for n, u in parts) == value, value
    return sum(float(n) * units[u] for n, u in parts)


@dataclass(frozen=True)
class Image:
    """What the final stage of the Dockerfile gives a container."""

    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    @property
    def env(self) -> dict[str, str]:
        return self.final.env

    @property
    def argv(self) -> list[str]:
        return exec_form(self.final.last("ENTRYPOINT").value) + exec_form(
            self.final.last("CMD").value
        )

    @property
    def healthcheck(self) -> Instruction:
        return self.final.last("HEALTHCHECK")

    @property
    def healthcheck_argv(self) -> list[str]:
        kind, _, command = self.healthcheck.value.partition(" ")
        assert kind == "CMD", "HEALTHCHECK CMD [...] (not NONE, not CMD-SHELL)"
        return exec_form(command)

    @property
    def uid(self) -> int:
        user = self.final.last("USER").value.split(":")[0]
        assert user.isdigit(), f"USER {user}: Kubernetes' runAsNonRoot needs a numeric uid"
        return int(user)


@pytest.fixture(scope="module")
def image() -> Image:
    return Image(parse_dockerfile(DOCKERFILE.read_text()))


def is_pinned(reference: str) -> bool:
    """A digest, or a tag that names a release (3.12.11-slim-bookworm), never ``latest``."""
    if "@" in reference:
        return re.fullmatch(r"[^@\s]+@sha256:[0-9a-f]{64}", reference) is not None
    name, _, tag = reference.rpartition(":")
    if not name or "/" in tag or tag == "latest":
        return False
    return re.search(r"\d+\.\d+", tag) is not None


def test_the_parser_reads_continuations_flags_and_both_env_forms() -> None:
    stages = parse_dockerfile(
        "# syntax=docker/dockerfile:1\nFROM a:1.2 AS one\nENV A=1 \\\n    # a comment\n"
        '    B="two words"\nENV C three words\nFROM one\n'
        'HEALTHCHECK --interval=5s \\\n  CMD ["x", \\\n "y"]\n'
    )
    assert [(s.image, s.name) for s in stages] == [("a:1.2", "one"), ("one", None)]
    assert stages[0].env == {"A": "1", "B": "two words", "C": "three words"}
    health = stages[1].last("HEALTHCHECK")
    assert health.flags == {"interval": "5s"} and health.value == 'CMD ["x",  "y"]'
    assert is_pinned("python:3.12.11-slim-bookworm")
    assert is_pinned("python:3.12-slim@sha256:" + "0" * 64)
    assert not is_pinned("python:latest") and not is_pinned("python")
    assert not is_pinned("localhost:5000/python") and not is_pinned("python:slim")
    assert seconds("1m30s") == 90 and seconds("500ms") == 0.5


def test_the_image_is_built_in_two_stages_from_a_pinned_python(image: Image) -> None:
    stages = image.stages
    assert len(stages) >= 2
    names = {stage.name for stage in stages if stage.name}
    for stage in stages:
        if stage.image not in names:
            assert is_pinned(stage.image), f"FROM {stage.image}: pin a release tag or digest"
            assert stage.image.startswith("python:") and "slim" in stage.image
    build = stages[0]
    assert build.name is not None
    wheel = [r.value for r in build.all("RUN") if "pip wheel" in r.value]
    assert wheel and "--no-deps" in wheel[0], "the first stage builds the project's wheel only"
    # The final stage has no source tree: whatever it copies comes from the build stage, and
    # what it installs is the wheel.
    final = image.final
    assert final.image not in names, "the final stage starts from the base image"
    for copy in final.all("COPY") + final.all("ADD"):
        assert copy.flags.get("from") == build.name, f"line {copy.line}: copies the source?"
    installs = [r for r in final.all("RUN") if "pip install" in r.value]
    assert len(installs) == 1 and "/*.whl" in installs[0].value
    takes_wheel = installs[0].flags.get("mount", "").split(",")
    assert f"from={build.name}" in takes_wheel or final.all("COPY"), "the wheel comes from build"
    assert re.search(r"pip install\s.*\s\.(\s|$)", installs[0].value) is None
    # ...and the build stage copies only files that exist and the build context keeps.
    for copy in build.all("COPY"):
        *sources, _ = shlex.split(copy.value)
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not dockerignored(source.rstrip("/")), f"{source} is in .dockerignore"


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert not any(p.startswith("!") for p in patterns), "the matcher below has no exceptions"
    return patterns


def dockerignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as Docker reads it: ``*``, ``?`` and ``[...]`` within one path
    segment, ``**`` across any number of them."""
    pattern, regex, i = pattern.strip("/"), "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            regex, i = regex + ".*", i + 2
        elif pattern[i] in "*?":
            regex, i = regex + ("[^/]*" if pattern[i] == "*" else "[^/]"), i + 1
        elif pattern[i] == "[":
            close = pattern.index("]", i)
            regex, i = regex + pattern[i : close + 1], close + 1
        else:
            regex, i = regex + re.escape(pattern[i]), i + 1
    return re.compile(regex)


def dockerignored(path: str) -> bool:
    """Whether .dockerignore leaves ``path`` (relative, /-separated) out of the build context:
    a pattern that matches the path or one of its directories."""
    candidates = [path, *(str(p) for p in PurePosixPath(path).parents if str(p) != ".")]
    regexes = [dockerignore_regex(pattern) for pattern in dockerignore_patterns()]
    return any(r.fullmatch(c) for r in regexes for c in candidates)


def test_dockerignore_keeps_the_repository_out_but_not_the_package() -> None:
    for path in (".git", ".venv", ".pytest_cache", "tests", "deploy/secrets/remoteit-credentials"):
        assert dockerignored(path), path
    for module in sorted((ROOT / "proxy").glob("*.py")):
        assert not dockerignored(module.relative_to(ROOT).as_posix()), module
    for path in ("pyproject.toml", "README.md"):
        assert not dockerignored(path), path


def test_the_image_runs_the_console_script_as_a_non_root_user(image: Image) -> None:
    final = image.final
    entrypoint = exec_form(final.last("ENTRYPOINT").value)
    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert entrypoint == ["remoteit-proxy"] and scripts["remoteit-proxy"] == "proxy.cli:main"
    build_parser().parse_args(image.argv[1:])  # CMD is a valid command line: "serve"
    assert image.uid != 0
    # USER comes after every RUN: nothing later runs as root.
    assert final.instructions.index(final.last("USER")) > final.instructions.index(
        final.all("RUN")[-1]
    )
    assert final.last("STOPSIGNAL").value == "SIGTERM"  # the proxy drains and exits 0 on it


def test_the_image_listens_on_its_exposed_port_and_keeps_the_token_default(image: Image) -> None:
    env = image.env
    assert env.get("PYTHONUNBUFFERED") == "1" and env.get("PYTHONDONTWRITEBYTECODE") == "1"
    listen = listen_of(env["REMOTEIT_PROXY_LISTEN"])
    assert not listen.is_loopback, "a container must listen on its own network"
    exposed = {p.removesuffix("/tcp") for i in image.final.all("EXPOSE") for p in i.value.split()}
    assert exposed == {str(listen.port)}
    for name in env:
        assert not name.startswith("REMOTEIT_PROXY_") or name in PROXY_ENVS, name
    # Secure by default: no token baked in, no opting out of it, TLS verified.
    for option in ("token", "token-file", "allow-unauthenticated", "insecure-skip-verify"):
        assert f"REMOTEIT_PROXY_{option.upper().replace('-', '_')}" not in env
    assert PurePosixPath(env["REMOTEIT_PROXY_CREDENTIALS"]).parent == DOCKER_SECRETS


def test_the_healthcheck_asks_the_health_endpoint_with_python(image: Image) -> None:
    argv = image.healthcheck_argv
    assert argv[:2] == ["python", "-c"] and len(argv) == 3
    assert f"http://127.0.0.1:{{port}}{HEALTH}'" in argv[2] and "ProxyHandler({})" in argv[2]
    flags = image.healthcheck.flags
    assert set(flags) >= {"interval", "timeout", "start-period", "retries"}
    timeout = re.search(r"timeout=(\d+)", argv[2])
    assert timeout and float(timeout.group(1)) < seconds(flags["timeout"])


# --- Running what the image runs -------------------------------------------------------------


def port_for(listen: str) -> str:
    """The same host as ``listen`` with a port free here.

    Not the image's own port (8181): a proxy may run on it on a developer's machine, and the
    tests that run the image's command in parallel would take it from each other (one of two
    failed now and then). The health checks and probes read the port from
    REMOTEIT_PROXY_LISTEN, so they follow.
    """
    parsed = listen_of(listen)
    with socket.socket() as probe:
        probe.bind((parsed.host, 0))
        return f"{parsed.host}:{probe.getsockname()[1]}"


def local(argv: list[str]) -> list[str]:
    """A container's command, run here: its programs are this environment's, by the same name.

    The image's ``python`` is the interpreter the proxy is installed in, as ``sys.executable``
    is here; ``remoteit-proxy`` is the console script installed next to it.
    """
    program = sys.executable if argv[0] == "python" else str(BIN / argv[0])
    return [program, *argv[1:]]


@dataclass
class Running:
    """A proxy started from a container's command: where to reach it, what it logged."""

    url: str
    env: dict[str, str]
    lines: list[str]


@contextlib.asynccontextmanager
async def run_container(
    argv: list[str], env: dict[str, str], stop_signal: str = "SIGTERM"
) -> AsyncIterator[Running]:
    """Run a container's command; ready when its port accepts; stopped with ``stop_signal``."""
    listen = listen_of(env["REMOTEIT_PROXY_LISTEN"])
    host = "127.0.0.1" if listen.host in ("0.0.0.0", "localhost") else listen.host
    process = await asyncio.create_subprocess_exec(
        *local(argv), env=env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert process.stderr is not None
    lines: list[str] = []
    reader = asyncio.create_task(collect(process.stderr, lines))
    try:
        for _ in range(200):
            assert process.returncode is None, f"exited {process.returncode}: {lines}"
            try:
                _, writer = await asyncio.open_connection(host, listen.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            break
        else:
            pytest.fail(f"the proxy did not listen on {listen} in 10 s: {lines}")
        yield Running(f"http://{host}:{listen.port}", env, lines)
        process.send_signal(signal.Signals[stop_signal])
        assert await asyncio.wait_for(process.wait(), 15) == 0, lines
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await reader


async def collect(stream: asyncio.StreamReader, lines: list[str]) -> None:
    while line := await stream.readline():
        lines.append(line.decode())


async def run_check(argv: list[str], env: Mapping[str, str], timeout: float = 10) -> int:
    """Run a health check or probe command here, as the container would; its exit code."""
    process = await asyncio.create_subprocess_exec(
        *local(argv), env=dict(env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return await asyncio.wait_for(process.wait(), timeout)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def image_env(image: Image, home: Path, extra: Mapping[str, str]) -> dict[str, str]:
    """This machine's environment (without R3_* and REMOTEIT_PROXY_*), the image's ENV, extra."""
    env = base_env(home) | image.env | dict(extra)
    env["REMOTEIT_PROXY_LISTEN"] = port_for(env["REMOTEIT_PROXY_LISTEN"])
    return env


async def test_the_image_command_serves_signed_requests_and_passes_its_healthcheck(
    image: Image, upstream: FakeUpstream, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    env = image_env(
        image,
        tmp_path,
        {
            "R3_ACCESS_KEY_ID": KEY_ID,
            "R3_SECRET_ACCESS_KEY": SECRET_B64,
            "REMOTEIT_PROXY_TOKEN_FILE": str(token_file),
            "REMOTEIT_PROXY_UPSTREAM": upstream.url,  # the only other override
        },
    )
    stop = image.final.last("STOPSIGNAL").value
    health_timeout = seconds(image.healthcheck.flags["timeout"])
    async with (
        run_container(image.argv, env, stop) as running,
        aiohttp.ClientSession() as client,
    ):
        assert await run_check(image.healthcheck_argv, env, health_timeout) == 0
        # An HTTP_PROXY meant for the upstream does not capture the health check.
        elsewhere = f"http://127.0.0.1:{closed_port()}"
        behind_proxy = env | {"HTTP_PROXY": elsewhere, "http_proxy": elsewhere}
        assert await run_check(image.healthcheck_argv, behind_proxy, health_timeout) == 0
        async with client.get(running.url + HEALTH) as response:
            assert response.status == 200
            body = await response.json()
            assert body["status"] == "ok" and body["version"] == __version__
        async with client.get(running.url + READY) as response:
            assert response.status == 200
        query = b'{"query":"{ login { email } }"}'
        async with client.post(running.url + "/graphql/v1", data=query) as response:
            assert response.status == 401
        assert upstream.received == []
        bearer = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        async with client.post(running.url + "/graphql/v1", data=query, headers=bearer) as response:
            assert response.status == 200
            assert (await response.json())["path"] == "/graphql/v1"
    received = upstream.received[-1]
    assert received.verified, received.reason
    assert (received.header("Authorization") or "").startswith("Signature ")
    assert TOKEN not in "".join(running.lines)
    # Stopped, the health check fails: it is not a check that always passes.
    assert await run_check(image.healthcheck_argv, env, health_timeout) != 0


def test_the_image_command_refuses_to_start_without_a_token_or_credentials(
    image: Image, tmp_path: Path
) -> None:
    keys = {"R3_ACCESS_KEY_ID": KEY_ID, "R3_SECRET_ACCESS_KEY": SECRET_B64}
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    listen = image.env["REMOTEIT_PROXY_LISTEN"]
    for extra, expected in [
        (keys, (f"refusing to listen on {listen} without a token", "REMOTEIT_PROXY_TOKEN")),
        (
            {"REMOTEIT_PROXY_TOKEN_FILE": str(token_file)},
            (image.env["REMOTEIT_PROXY_CREDENTIALS"],),
        ),
    ]:
        result = subprocess.run(
            local(image.argv),
            env=base_env(tmp_path) | image.env | extra,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 2, result.stderr
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and all(word in lines[0] for word in expected), lines


# --- docker-compose.yml --------------------------------------------------------------------


def load_yaml(path: Path) -> list[dict[str, Any]]:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert documents and all(isinstance(d, dict) for d in documents), path
    return documents


def environment(value: Any) -> dict[str, str]:
    """A compose ``environment`` (mapping or KEY=VALUE list) or a Kubernetes ``env`` list."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    result: dict[str, str] = {}
    for item in value:
        if isinstance(item, dict):
            assert "value" in item, f"{item['name']}: only literal values in these examples"
            result[item["name"]] = str(item["value"])
        else:
            key, _, val = str(item).partition("=")
            result[key] = val
    return result


def check_env_names(env: Mapping[str, str], where: str) -> None:
    for name in env:
        assert name in PROXY_ENVS | R3_ENVS, f"{where}: {name} is not an option of the proxy"


@dataclass(frozen=True)
class Compose:
    data: dict[str, Any]

    @property
    def proxy_name(self) -> str:
        names = [n for n, s in self.data["services"].items() if "build" in s]
        assert len(names) == 1, "one service is built from this repository: the proxy"
        return names[0]

    @property
    def proxy(self) -> dict[str, Any]:
        return dict(self.data["services"][self.proxy_name])

    @property
    def clients(self) -> dict[str, dict[str, Any]]:
        return {n: s for n, s in self.data["services"].items() if n != self.proxy_name}

    def secret_paths(self, service: Mapping[str, Any]) -> dict[str, str]:
        """Where each secret of ``service`` is mounted in its container: path -> secret name."""
        paths: dict[str, str] = {}
        for secret in service.get("secrets", []):
            source = secret if isinstance(secret, str) else secret["source"]
            target = source if isinstance(secret, str) else secret.get("target", source)
            paths[str(DOCKER_SECRETS / target)] = source
        return paths


@pytest.fixture(scope="module")
def compose() -> Compose:
    (data,) = load_yaml(COMPOSE)
    return Compose(data)


def test_compose_builds_this_image_and_configures_it_with_real_options(
    compose: Compose, image: Image
) -> None:
    proxy = compose.proxy
    build = proxy["build"]
    assert (COMPOSE.parent / build["context"]).resolve() == ROOT
    assert (ROOT / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE
    env = environment(proxy.get("environment"))
    check_env_names(env, "compose")
    listen = listen_of(env.get("REMOTEIT_PROXY_LISTEN", image.env["REMOTEIT_PROXY_LISTEN"]))
    assert not listen.is_loopback and [str(p) for p in proxy.get("expose", [])] == [
        str(listen.port)
    ]
    assert "ports" not in proxy, "the proxy's port is not published to the host"
    # Non-loopback: a token is required, from a secret; and the credentials are a secret too.
    mounted = compose.secret_paths(proxy)
    for name in ("REMOTEIT_PROXY_TOKEN_FILE", "REMOTEIT_PROXY_CREDENTIALS"):
        assert env.get(name, image.env.get(name)) in mounted, name
    assert "REMOTEIT_PROXY_TOKEN" not in env and "REMOTEIT_PROXY_ALLOW_UNAUTHENTICATED" not in env
    # The same health check as the image's, at the same pace; the image's stop signal.
    health = proxy["healthcheck"]
    assert health["test"] == ["CMD", *image.healthcheck_argv]
    flags = image.healthcheck.flags
    for key in ("interval", "timeout", "start_period"):
        assert seconds(health[key]) == seconds(flags[key.replace("_", "-")]), key
    assert str(health["retries"]) == flags["retries"]
    assert proxy["stop_signal"] == image.final.last("STOPSIGNAL").value
    assert seconds(proxy["stop_grace_period"]) > DEFAULT_SHUTDOWN
    for service in compose.data["services"].values():
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]


def test_compose_secrets_are_placeholders_kept_out_of_git(compose: Compose) -> None:
    ignored = (SECRET_DIR / ".gitignore").read_text().splitlines()
    assert "*" in ignored
    kept = [line[1:] for line in ignored if line.startswith("!")]
    readme = (SECRET_DIR / "README").read_text()
    for name, secret in compose.data["secrets"].items():
        path = (COMPOSE.parent / secret["file"]).resolve()
        assert path.parent == SECRET_DIR, name
        assert not any(fnmatch.fnmatchcase(path.name, pattern) for pattern in kept), name
        assert path.with_name(path.name + ".example").is_file(), name
        assert path.name in readme and str(DOCKER_SECRETS / name) in readme


def test_compose_client_waits_for_the_healthy_proxy_and_holds_only_the_token(
    compose: Compose, image: Image
) -> None:
    proxy_env = environment(compose.proxy.get("environment"))
    port = listen_of(proxy_env["REMOTEIT_PROXY_LISTEN"]).port
    token_path = proxy_env["REMOTEIT_PROXY_TOKEN_FILE"]
    assert compose.clients
    for name, client in compose.clients.items():
        assert client["depends_on"][compose.proxy_name]["condition"] == "service_healthy"
        assert set(compose.secret_paths(client)) == {token_path}, name
        command = " ".join(client["command"])
        assert f"http://{compose.proxy_name}:{port}/graphql/v1" in command
        assert token_path in command
        assert client.get("user", f"{image.uid}").split(":")[0] == str(image.uid)


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("sh")), reason="needs sh and curl")
async def test_compose_services_run_as_configured(
    compose: Compose, image: Image, upstream: FakeUpstream, tmp_path: Path
) -> None:
    """The proxy service with its environment and secrets, then the client's command."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    write_credentials(
        secrets / "remoteit-credentials",
        f"[DEFAULT]\nR3_ACCESS_KEY_ID={KEY_ID}\nR3_SECRET_ACCESS_KEY={SECRET_B64}\n",
    )
    (secrets / "remoteit-proxy-token").write_text(TOKEN + "\n")
    # Secrets, mounted at /run/secrets/NAME in the containers, are here in tmp_path/secrets.
    here = {path: str(secrets / name) for path, name in compose.secret_paths(compose.proxy).items()}
    env = {k: here.get(v, v) for k, v in environment(compose.proxy["environment"]).items()}
    env = image_env(image, tmp_path, env | {"REMOTEIT_PROXY_UPSTREAM": upstream.url})
    proxy = compose.proxy
    port = listen_of(environment(proxy["environment"])["REMOTEIT_PROXY_LISTEN"]).port
    async with run_container(image.argv, env, proxy["stop_signal"]) as running:
        assert await run_check(proxy["healthcheck"]["test"][1:], env) == 0
        for client in compose.clients.values():
            command = " ".join(client["command"]).replace("$$", "$")
            command = command.replace(f"http://{compose.proxy_name}:{port}", running.url)
            for path, local_path in here.items():
                command = command.replace(path, local_path)
            process = await asyncio.create_subprocess_exec(
                *client["entrypoint"], command, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            out, err = await asyncio.wait_for(process.communicate(), 30)
            assert process.returncode == 0, err
            assert json.loads(out)["path"] == "/graphql/v1"
            received = upstream.received[-1]
            assert received.verified, received.reason


# --- Kubernetes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pod:
    deployment: dict[str, Any]
    secret: dict[str, Any]

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self.deployment["spec"]["template"]["spec"])

    @property
    def containers(self) -> list[dict[str, Any]]:
        return list(self.spec["containers"]) + list(self.spec.get("initContainers", []))

    @property
    def proxy(self) -> dict[str, Any]:
        (proxy,) = [c for c in self.containers if "remoteit-proxy" in c["image"]]
        return proxy

    @property
    def apps(self) -> list[dict[str, Any]]:
        return [c for c in self.containers if c is not self.proxy]

    @property
    def env(self) -> dict[str, str]:
        return environment(self.proxy.get("env"))

    def volume(self, name: str) -> dict[str, Any]:
        (volume,) = [v for v in self.spec["volumes"] if v["name"] == name]
        return dict(volume)

    def secret_files(self) -> dict[str, tuple[str, int]]:
        """Files of secret volumes in the proxy container: path -> (key, mode)."""
        files: dict[str, tuple[str, int]] = {}
        for mount in self.proxy.get("volumeMounts", []):
            secret = self.volume(mount["name"]).get("secret")
            if secret is None:
                continue
            mode = secret.get("defaultMode", 0o644)
            for item in secret["items"]:
                path = str(PurePosixPath(mount["mountPath"]) / item["path"])
                files[path] = (item["key"], item.get("mode", mode))
        return files


@pytest.fixture(scope="module")
def pod() -> Pod:
    (deployment,) = load_yaml(KUBERNETES / "deployment.yaml")
    (secret,) = load_yaml(KUBERNETES / "secret.example.yaml")
    assert deployment["kind"] == "Deployment" and secret["kind"] == "Secret"
    return Pod(deployment, secret)


def url_path(text: str) -> str:
    """The path of the one http:// URL in a command."""
    paths = URL_PATH.findall(text)
    assert len(paths) == 1, text
    return str(paths[0])


def probe_path(probe: Mapping[str, Any]) -> str:
    if "httpGet" in probe:
        return str(probe["httpGet"]["path"])
    return url_path(" ".join(probe["exec"]["command"]))


def test_kubernetes_pod_runs_the_proxy_on_loopback_with_exec_probes(pod: Pod, image: Image) -> None:
    env = pod.env
    check_env_names(env, "kubernetes")
    for app in pod.apps:
        app_env = environment(app.get("env"))
        check_env_names({k: v for k, v in app_env.items() if k.startswith(PREFIXES)}, app["name"])
    listen = listen_of(env["REMOTEIT_PROXY_LISTEN"])
    # The choice made here: loopback, so no token. Any other address needs one.
    assert listen.is_loopback and "REMOTEIT_PROXY_ALLOW_UNAUTHENTICATED" not in env
    for app in pod.apps:
        assert f"http://127.0.0.1:{listen.port}/" in " ".join(
            app.get("command", []) + app.get("args", [])
        )
    proxy = pod.proxy
    assert "command" not in proxy and "args" not in proxy, "the image's ENTRYPOINT and CMD"
    assert probe_path(proxy["livenessProbe"]) == HEALTH
    assert probe_path(proxy["readinessProbe"]) == READY
    for kind in ("livenessProbe", "readinessProbe"):
        # kubelet's httpGet goes to the pod IP, where a loopback listener is not.
        assert "exec" in proxy[kind], kind
        command = proxy[kind]["exec"]["command"]
        assert command == [*image.healthcheck_argv[:2], command[2]]
        assert command[2] == image.healthcheck_argv[2].replace(HEALTH, probe_path(proxy[kind]))
    assert pod.spec["terminationGracePeriodSeconds"] > DEFAULT_SHUTDOWN
    labels = pod.deployment["spec"]["template"]["metadata"]["labels"]
    assert pod.deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_kubernetes_credentials_are_a_read_only_secret_of_the_proxy_only(pod: Pod) -> None:
    files = pod.secret_files()
    path = pod.env["REMOTEIT_PROXY_CREDENTIALS"]
    assert path in files
    key, mode = files[path]
    assert mode in (0o400, 0o440)
    for mount in pod.proxy["volumeMounts"]:
        assert mount.get("readOnly") is True and "subPath" not in mount, mount
    secret_volumes = {v["name"] for v in pod.spec["volumes"] if "secret" in v}
    for app in pod.apps:
        assert not {m["name"] for m in app.get("volumeMounts", [])} & secret_volumes
    # The example Secret is what the Deployment mounts, with placeholders only.
    (volume,) = [pod.volume(name) for name in secret_volumes]
    assert volume["secret"]["secretName"] == pod.secret["metadata"]["name"]
    data = pod.secret["stringData"][key]
    parser = configparser.ConfigParser()
    parser.read_string(data)
    values = {k.upper(): v for k, v in parser["DEFAULT"].items()}
    assert values.keys() >= {"R3_ACCESS_KEY_ID", "R3_SECRET_ACCESS_KEY"}
    assert all(v.startswith("YOUR_") for v in values.values()), "placeholders only"


def test_kubernetes_containers_are_locked_down(pod: Pod, image: Image) -> None:
    pod_context = pod.spec["securityContext"]
    assert pod.spec["automountServiceAccountToken"] is False
    assert pod_context["runAsNonRoot"] is True
    for container in pod.containers:
        context = pod_context | container["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] != 0
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert "ALL" in context["capabilities"]["drop"]
        resources = container["resources"]
        for kind in ("requests", "limits"):
            assert set(resources[kind]) >= {"cpu", "memory"}, (container["name"], kind)
    proxy_context = pod_context | pod.proxy["securityContext"]
    assert proxy_context["runAsUser"] == image.uid
    # Secret files belong to root: the proxy reads them as group fsGroup (mode 0440).
    assert proxy_context["fsGroup"] == proxy_context["runAsGroup"]
    assert all(mode & 0o040 for _, mode in pod.secret_files().values())


async def test_kubernetes_proxy_container_runs_as_configured_and_its_probes_pass(
    pod: Pod, image: Image, upstream: FakeUpstream, tmp_path: Path
) -> None:
    """The proxy container: the image's command, its ENV, the pod's env and Secret volume."""
    here: dict[str, str] = {}
    for path, (key, mode) in pod.secret_files().items():
        local_path = tmp_path / "volume" / key
        local_path.parent.mkdir(exist_ok=True)
        write_credentials(
            local_path,
            f"[DEFAULT]\nR3_ACCESS_KEY_ID={KEY_ID}\nR3_SECRET_ACCESS_KEY={SECRET_B64}\n",
        ).chmod(mode)
        here[path] = str(local_path)
    env = {k: here.get(v, v) for k, v in pod.env.items()}
    env = image_env(image, tmp_path, env | {"REMOTEIT_PROXY_UPSTREAM": upstream.url})
    proxy = pod.proxy
    async with (
        run_container(image.argv, env) as running,
        aiohttp.ClientSession() as client,
    ):
        for kind in ("livenessProbe", "readinessProbe"):
            command = proxy[kind]["exec"]["command"]
            assert await run_check(command, env, proxy[kind]["timeoutSeconds"]) == 0, kind
        query = b'{"query":"{ login { email } }"}'
        async with client.post(running.url + "/graphql/v1", data=query) as response:
            assert response.status == 200  # no token on loopback
    assert upstream.received[-1].verified


async def test_every_path_the_checks_and_probes_ask_is_an_endpoint(
    make_proxy: ProxyFactory, image: Image, compose: Compose, pod: Pod
) -> None:
    paths = {url_path(image.healthcheck_argv[2]), url_path(compose.proxy["healthcheck"]["test"][3])}
    paths |= {probe_path(pod.proxy[k]) for k in ("livenessProbe", "readinessProbe")}
    assert paths == {HEALTH, READY}
    client = await make_proxy(token=TOKEN)
    for path in sorted(paths):
        async with client.get(path) as response:  # no token: checks and probes send none
            assert response.status == 200, path


def test_the_wheel_the_image_installs_holds_every_module(tmp_path: Path) -> None:
    # The image installs a wheel built from pyproject.toml, README.md, LICENSE and proxy/
    # alone (as the Dockerfile copies them): a package left out of [tool.setuptools] would be
    # missing there while an editable install still finds it.
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(
        ROOT / "proxy", tmp_path / "proxy", ignore=shutil.ignore_patterns("__pycache__")
    )
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "--wheel-dir",
            str(tmp_path / "wheels"),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "wheels").glob("*.whl")
    inside = {name for name in zipfile.ZipFile(wheel).namelist() if name.endswith(".py")}
    modules = {path.relative_to(ROOT).as_posix() for path in (ROOT / "proxy").rglob("*.py")}
    assert modules <= inside, sorted(modules - inside)
    # The MIT licence pyproject.toml declares travels with the wheel.
    names = zipfile.ZipFile(wheel).namelist()
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names), names
