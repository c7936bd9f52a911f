"""How to start each server: nginx from a template, remoteit-proxy, the aiohttp floor."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .common import HERE, KEY_ID, ROOT, TLS_NAME, BenchError
from .context import Context
from .processes import wait_for_port

TEMPLATES = HERE / "nginx"
NJS_SCRIPT = TEMPLATES / "remoteit_sign.js"
PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


@dataclass
class Launch:
    """How to start one server: its command line, environment and log file."""

    what: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    cwd: Path | None = None


def render(template: Path, values: Mapping[str, str | None]) -> str:
    """Fill the ``{{NAME}}`` placeholders of an nginx configuration template; the lines with a
    placeholder whose value is None are left out (upstream.conf's https listener)."""
    text = "".join(
        line
        for line in template.read_text().splitlines(keepends=True)
        if not any(values.get(name, "") is None for name in PLACEHOLDER.findall(line))
    )
    for name, value in values.items():
        if value is not None:
            text = text.replace("{{" + name + "}}", value)
    if left := PLACEHOLDER.findall(text):
        raise BenchError(f"{template.name}: no value for {', '.join(left)}")
    return text


def nginx_launch(
    ctx: Context, name: str, template: str, port: int, upstream: int, tls_port: int | None = None
) -> Launch:
    """Write an nginx configuration under its own prefix; nothing system-wide is used.

    ``upstream`` is the port proxied to (njs_https.conf: the upstream's https port);
    ``tls_port`` the upstream's own https port (upstream.conf; None: http only).
    """
    prefix = ctx.workdir / name
    prefix.mkdir()
    tls = ctx.tls
    listener = None if tls_port is None else tls  # None: the https listener's lines left out
    values: dict[str, str | None] = {
        "PREFIX": str(prefix),
        "PORT": str(port),
        "UPSTREAM": f"127.0.0.1:{upstream}",
        "TLS_PORT": None if listener is None else str(tls_port),
        "TLS_CERT": None if listener is None else str(listener.cert),
        "TLS_KEY": None if listener is None else str(listener.key),
        "CA": None if tls is None else str(tls.ca),
        "TLS_NAME": TLS_NAME,
        "HOST": f"{TLS_NAME}:{upstream}",  # the https upstream's authority, sent and signed
    }
    env = dict(ctx.env)
    if template.startswith("njs"):
        assert ctx.tools.njs_module is not None
        values |= {"NJS_MODULE": str(ctx.tools.njs_module), "JS_FILE": str(NJS_SCRIPT)}
        env |= {"R3_ACCESS_KEY_ID": KEY_ID, "R3_SECRET_ACCESS_KEY": ctx.secret_b64}
    conf = prefix / "nginx.conf"
    conf.write_text(render(TEMPLATES / template, values))
    argv = [ctx.tools.nginx, "-p", f"{prefix}/", "-c", str(conf), "-g", "daemon off;"]
    if ctx.tools.nginx_version >= (1, 19, 5):  # -e: no start-up message to the system log
        argv[1:1] = ["-e", str(prefix / "error.log")]
    return Launch(f"nginx ({name})", argv, env, prefix / "error.log")


def proxy_launch(
    ctx: Context,
    name: str,
    port: int,
    upstream: int,
    *extra: str,
    https: bool = False,
    log_level: str | None = "warning",
) -> Launch:
    """remoteit-proxy at --log-level warning: access lines at info would cost throughput;
    ``log_level`` None gives no --log-level, the default (INFO) that README users run.

    With ``https``, ``upstream`` is the upstream's https port, reached as
    https://localhost:PORT and its certificate verified against the benchmark's CA
    (--ca-bundle; the environment holds no REMOTEIT_PROXY_* variable that could turn it off).
    """
    origin = f"http://127.0.0.1:{upstream}"
    if https:
        assert ctx.tls is not None
        origin = f"https://{TLS_NAME}:{upstream}"
        extra = ("--ca-bundle", str(ctx.tls.ca), *extra)
    argv = [sys.executable, "-m", "proxy", "--listen", f"127.0.0.1:{port}"]
    argv += ["--upstream", origin, "--credentials", str(ctx.credentials)]
    if log_level is not None:
        argv += ["--log-level", log_level]
    argv += ["--shutdown-timeout", "2", *extra]
    return Launch(
        f"remoteit-proxy ({name})", argv, dict(ctx.env), ctx.workdir / f"{name}.log", ROOT
    )


def floor_launch(ctx: Context, port: int, upstream: int) -> Launch:
    """benchmarks/floor.py: aiohttp's server forwarding through the proxy's upstream client,
    with no signing and no checks; from the repository root, as remoteit-proxy runs."""
    argv = [sys.executable, str(HERE / "floor.py"), "--listen", f"127.0.0.1:{port}"]
    argv += ["--upstream", f"http://127.0.0.1:{upstream}"]
    return Launch("aiohttp floor", argv, dict(ctx.env), ctx.workdir / "floor.log", ROOT)


def start(ctx: Context, launch: Launch, port: int, cpu: int | None) -> subprocess.Popen[bytes]:
    """Start a server and wait until its port accepts connections."""
    proc = ctx.procs.start(launch.argv, log=launch.log, env=launch.env, cpu=cpu, cwd=launch.cwd)
    wait_for_port(port, proc, launch.what, launch.log)
    return proc
