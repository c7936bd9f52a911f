"""remoteit-proxy side by side with nginx: throughput, latency, memory and start-up time.

All on loopback, under the same load (wrk, a small GraphQL POST, at 1 and at 50 connections):

  (a) direct:   the upstream itself, nginx answering a fixed JSON body (no proxy);
  (b) nginx:    a plain nginx reverse-proxy hop to it, no signing, upstream keepalive;
  (c) njs:      nginx signing every request with njs the vendor's way (js_set variables for
                Date and Authorization, crypto.createHmac with the base64-decoded secret);
  (d) remoteit: remoteit-proxy at --log-level warning, and (e) the same with --read-only;
  (f) floor:    benchmarks/floor.py, aiohttp's server and the proxy's upstream client doing
                nothing else: what any proxy on this framework costs.

The real API is https, so (c) and (d) are also measured proxying to the upstream's second,
TLS port (https://localhost:PORT, a certificate from a throwaway CA that both proxies verify),
their added latency taken over wrk speaking https to that port directly; --skip-https leaves
these rows out.

Each proxy runs on CPU 0 (``taskset -c 0``; nginx with one worker), wrk and the upstream on
CPU 1. Before measuring, requests through each signing proxy go to an independent verifier
(tests/fake_upstream.py recomputes the HMAC) and must verify. Then remoteit-proxy's resident
memory is measured idle, under 1,000 connections (benchmarks/concurrency.py) and while
streaming 1 GiB each way (benchmarks/stream_memory.py), and its time from process start to
the first answered request (median of 5 starts; nginx + njs alongside for comparison).

nginx, its njs module and wrk come from Debian packages, installed with apt-get when missing.
Configurations, pid files and logs live in a temporary directory (templates in
benchmarks/nginx/); every process started here is stopped at the end, even on error.

    python benchmarks/bench.py [--duration 5] [--rounds 3] [--quick] [--skip-https]
                                             [--skip-memory] [--json results.json]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TEMPLATES = HERE / "nginx"
NJS_SCRIPT = TEMPLATES / "remoteit_sign.js"
TLS_NAME = "localhost"  # the https upstream's name, as proxies reach and verify it
PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")

PATH = "/graphql/v1"
BODY = '{"query":"{ login { email } }"}'
KEY_ID = "BENCHKEY0123456789ABCDEF"
CONNECTIONS = (1, 50)
WARM_UP_CONNECTIONS = 50
QUIET = 0.10  # all CPUs less busy than this before starting
OTHER_CPU_WARNING = 0.1  # CPUs' worth of time other programs may use during a run
NJS_MODULE_FILE = "ngx_http_js_module.so"
NJS_PACKAGES = ("libnginx-mod-http-js", "nginx-module-njs")
MODULE_DIRS = ("/usr/lib/nginx/modules", "/usr/lib64/nginx/modules", "/etc/nginx/modules")
# Would change which key remoteit-proxy signs with, or send its traffic to another host.
SCRUBBED_ENV = re.compile(r"R3_|REMOTEIT_PROXY_|(HTTPS?|ALL|NO|FTP)_PROXY$", re.IGNORECASE)
IMF_FIXDATE = re.compile(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT")

WRK_SCRIPT = """\
-- A small GraphQL POST, as a client of the Remote.It API sends it.
wrk.method = "POST"
wrk.body = '{"query":"{ login { email } }"}'
wrk.headers["Content-Type"] = "application/json"

-- One machine-readable line at the end; latencies in microseconds.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "max_us": %d, "connect_errors": %d, "read_errors": %d, ' ..
    '"write_errors": %d, "timeouts": %d, "non_2xx": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.timeout, e.status))
end
"""


class BenchError(Exception):
    """A step of the benchmark failed; the message says which and why."""


def say(message: str) -> None:
    """Progress goes to stderr, so that stdout holds only the report."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- tools ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tools:
    """The programs the benchmark runs, found (or installed) on this machine."""

    nginx: str
    wrk: str
    taskset: str | None
    njs_module: Path | None
    nginx_version: tuple[int, ...]


def _apt(args: Sequence[str]) -> bool:
    """Run one apt-get command, its output on stderr; True when it succeeded."""
    command = ["apt-get", *args]
    say("running: " + " ".join(command))
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(command, env=env, stdout=sys.stderr, check=False).returncode == 0


def _apt_knows(package: str) -> bool:
    done = subprocess.run(["apt-cache", "show", package], capture_output=True, check=False)
    return done.returncode == 0 and bool(done.stdout.strip())


def apt_install(packages: Sequence[str]) -> bool:
    """``apt-get install -y PACKAGES`` as root, with one ``apt-get update`` if it fails."""
    if not packages:
        return True
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        say(f"cannot install {' '.join(packages)}: needs root and apt-get")
        return False
    return _apt(["install", "-y", *packages]) or (
        _apt(["update"]) and _apt(["install", "-y", *packages])
    )


def njs_package() -> str | None:
    """The Debian package name of nginx's njs module here, if apt knows one."""
    for attempt in range(2):
        for package in NJS_PACKAGES:
            if _apt_knows(package):
                return package
        if attempt == 0 and (os.geteuid() != 0 or not _apt(["update"])):
            break
    return None


def find_njs_module(nginx: str | None) -> Path | None:
    """The njs dynamic module file, in nginx's --modules-path or a usual directory."""
    if nginx is None:
        return None
    build = subprocess.run([nginx, "-V"], capture_output=True, text=True, check=False).stderr
    match = re.search(r"--modules-path=(\S+)", build)
    for directory in ([match.group(1)] if match else []) + list(MODULE_DIRS):
        if (Path(directory) / NJS_MODULE_FILE).is_file():
            return Path(directory) / NJS_MODULE_FILE
    return None


def nginx_version(nginx: str) -> tuple[int, ...]:
    out = subprocess.run([nginx, "-v"], capture_output=True, text=True, check=False).stderr
    match = re.search(r"nginx/(\d+(?:\.\d+)*)", out)
    return tuple(int(part) for part in match.group(1).split(".")) if match else (0,)


def ensure_tools(install: bool) -> Tools:
    """Find nginx, the njs module, wrk and taskset; install missing ones with apt-get."""
    required = [
        package
        for program, package in (("nginx", "nginx"), ("wrk", "wrk"), ("taskset", "util-linux"))
        if shutil.which(program) is None
    ]
    if required:
        say(f"missing: {', '.join(required)}")
        if install:
            apt_install(required)
    if install and find_njs_module(shutil.which("nginx")) is None:
        package = njs_package()
        if package is None:
            say(f"no njs package ({' or '.join(NJS_PACKAGES)}) is known to apt")
        else:
            say(f"the njs module {NJS_MODULE_FILE} is missing; installing {package}")
            apt_install([package])
    nginx, wrk = shutil.which("nginx"), shutil.which("wrk")
    if nginx is None or wrk is None:
        raise BenchError(
            "nginx and wrk are needed: apt-get install -y nginx wrk (as root), then run again"
        )
    njs = find_njs_module(nginx)
    if njs is None:
        say("nginx njs is unavailable: (c) nginx + njs is skipped; ratios are to plain nginx")
    return Tools(nginx, wrk, shutil.which("taskset"), njs, nginx_version(nginx))


# --- certificates -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Tls:
    """The https upstream's certificate, from a throwaway CA that the proxies are told to trust."""

    ca: Path  # the CA certificate: --ca-bundle, proxy_ssl_trusted_certificate
    cert: Path  # the upstream's certificate chain, for localhost and 127.0.0.1
    key: Path  # its private key
    source: str  # what made them: trustme or openssl


NO_CERTS = "neither trustme nor the openssl command could make the certificates"


def make_certificates(directory: Path) -> Tls | None:
    """A CA and a server certificate for localhost and 127.0.0.1 (PEM files in ``directory``),
    made with trustme or else the openssl command; None when neither can make them."""
    directory.mkdir()
    with contextlib.suppress(ImportError):
        return trustme_certificates(directory)
    openssl = shutil.which("openssl")
    if openssl is None:
        say(f"{NO_CERTS}: the https rows are skipped")
        return None
    say("trustme is not installed: making the https certificates with openssl")
    return openssl_certificates(openssl, directory)


def trustme_certificates(directory: Path) -> Tls:
    """The certificates from trustme (a test dependency of the project): ImportError without."""
    import trustme

    tls = Tls(directory / "ca.pem", directory / "server.pem", directory / "key.pem", "trustme")
    ca = trustme.CA()
    server = ca.issue_cert(TLS_NAME, "127.0.0.1")
    ca.cert_pem.write_to_path(tls.ca)
    for index, blob in enumerate(server.cert_chain_pems):
        blob.write_to_path(tls.cert, append=index > 0)
    server.private_key_pem.write_to_path(tls.key)
    return tls


def openssl_certificates(openssl: str, directory: Path) -> Tls | None:
    """What trustme would make (P-256 keys, one-day certificates), with the openssl command."""
    tls = Tls(directory / "ca.pem", directory / "server.pem", directory / "key.pem", "openssl")
    ca, cert, key = str(tls.ca), str(tls.cert), str(tls.key)
    ca_key, request, extensions = (directory / name for name in ("ca.key", "req.pem", "ext.cnf"))
    extensions.write_text(
        f"subjectAltName = DNS:{TLS_NAME}, IP:127.0.0.1\n"
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature\n"
        "extendedKeyUsage = serverAuth\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid\n"
    )
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    commands = [
        [openssl, "req", "-x509", *new_key, "-keyout", str(ca_key), "-out", ca, "-days", "1"]
        + ["-subj", "/CN=remoteit-proxy benchmark CA"]
        + ["-addext", "basicConstraints = critical, CA:TRUE"]
        + ["-addext", "keyUsage = critical, keyCertSign, cRLSign"],
        [openssl, "req", *new_key, "-keyout", key, "-out", str(request)]
        + ["-subj", f"/CN={TLS_NAME}"],
        [openssl, "x509", "-req", "-in", str(request), "-CA", ca, "-CAkey", str(ca_key)]
        + ["-days", "1", "-set_serial", f"0x{os.urandom(8).hex()}"]
        + ["-extfile", str(extensions), "-out", cert],
    ]
    for command in commands:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            say(f"openssl failed, the https rows are skipped: {done.stderr.strip()}")
            return None
    return tls


# --- processes --------------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """The direct children of a process (Linux /proc)."""
    found: list[int] = []
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found += [int(child) for child in path.read_text().split()]
    return found


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children (nginx: master and worker), in MiB."""
    total = 0
    for each in [pid, *children(pid)]:
        with contextlib.suppress(OSError, AttributeError):
            status = Path(f"/proc/{each}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
    return total / 1024


class Processes:
    """Every long-running process the benchmark starts, so that all are stopped at the end."""

    def __init__(self, taskset: str | None) -> None:
        self.taskset = taskset
        self.running: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        argv: Sequence[str],
        *,
        log: Path,
        env: Mapping[str, str],
        cpu: int | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` (pinned to ``cpu`` when given), its output appended to ``log``."""
        command = list(argv)
        if cpu is not None and self.taskset is not None:
            command = [self.taskset, "-c", str(cpu), *command]  # taskset execs: same pid
        with log.open("ab") as output:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=cwd,
            )
        self.running.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
        """SIGTERM (nginx: fast shutdown; remoteit-proxy: graceful), then SIGKILL if need be."""
        if proc in self.running:
            self.running.remove(proc)
        if proc.poll() is not None:
            return
        orphans = children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            for child in orphans:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
            proc.kill()
            proc.wait()

    def stop_all(self) -> None:
        for proc in reversed(list(self.running)):
            self.stop(proc)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> float:
    """CPU seconds spent in user and system mode by every process on the machine since boot."""
    user, nice, system = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:4]
    return (int(user) + int(nice) + int(system)) / CLOCK_TICKS


def own_cpu_seconds(procs: Processes) -> float:
    """CPU seconds used by this script, its waited-for children (wrk) and its running servers."""
    used = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        used += usage.ru_utime + usage.ru_stime
    for proc in procs.running:
        for pid in [proc.pid, *children(proc.pid)]:
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                used += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
    return used


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        text = path.read_text(errors="replace").strip().splitlines()[-lines:]
        return "\n  ".join(["", *text]) if text else ""
    return ""


def wait_for_port(
    port: int, proc: subprocess.Popen[bytes], what: str, log: Path, timeout: float = 20.0
) -> None:
    """Wait until ``port`` accepts connections; fail early if the process exits."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with status {proc.returncode}:{tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        if time.monotonic() > deadline:
            raise BenchError(f"{what} does not accept connections on port {port}:{tail(log)}")
        time.sleep(0.01)


def tls_session(port: int, tls: Tls) -> str:
    """The protocol and cipher a TLS client in Python (as remoteit-proxy is) negotiates with
    the upstream's https port, for the report."""
    context = ssl.create_default_context(cafile=str(tls.ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname=TLS_NAME) as conn,
    ):
        cipher = conn.cipher()
        return f"{conn.version()} {cipher[0] if cipher else '?'}"


def post_status(port: int, tls: Tls | None = None) -> int | None:
    """Send one GraphQL POST to 127.0.0.1:port (over https, verified, with ``tls``); its status,
    or None if nothing answered."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    if tls is not None:
        context = ssl.create_default_context(cafile=str(tls.ca))
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=context)
    try:
        conn.request("POST", PATH, body=BODY, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


# --- the setups -------------------------------------------------------------------------------


@dataclass
class Context:
    """What every step needs: tools, processes, CPUs, the temporary directory and the key."""

    tools: Tools
    procs: Processes
    workdir: Path
    proxy_cpu: int | None
    load_cpu: int | None
    credentials: Path
    secret_b64: str
    env: dict[str, str]  # for children: no R3_*, REMOTEIT_PROXY_* or *_PROXY variables
    tls: Tls | None = None  # the https upstream's certificates; None: no https rows


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
    ctx: Context, name: str, port: int, upstream: int, *extra: str, https: bool = False
) -> Launch:
    """remoteit-proxy at --log-level warning: access lines at info would cost throughput.

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
    argv += ["--log-level", "warning", "--shutdown-timeout", "2", *extra]
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


@dataclass(frozen=True)
class Setup:
    """One row of the comparison: a name, a label and the server wrk talks to."""

    key: str
    label: str
    port: int
    proc: subprocess.Popen[bytes]
    upstream: str = "http"  # how the setup reaches the upstream: its table
    baseline: bool = False  # the upstream direct: what the others' added latency is over
    scheme: str = "http"  # how wrk talks to it

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{PATH}"


def start_setups(ctx: Context) -> list[Setup]:
    """Start the upstream (a), then the proxies (b) to (f) in front of it; with
    certificates, also (c) and (d) in front of its https port, measured against it direct."""
    upstream = free_port()
    tls_upstream = None if ctx.tls is None else free_port()
    launch = nginx_launch(ctx, "upstream", "upstream.conf", upstream, upstream, tls_upstream)
    proc = start(ctx, launch, upstream, ctx.load_cpu)
    setups = [Setup("direct", "upstream direct", upstream, proc, baseline=True)]
    plans: list[tuple[str, str, Callable[[int], Launch]]] = [
        ("nginx", "nginx proxy", lambda p: nginx_launch(ctx, "proxy", "proxy.conf", p, upstream))
    ]
    if ctx.tools.njs_module is not None:
        plans.append(
            ("njs", "nginx + njs", lambda p: nginx_launch(ctx, "njs", "njs.conf", p, upstream))
        )
    plans.append(
        ("remoteit", "remoteit-proxy", lambda p: proxy_launch(ctx, "remoteit", p, upstream))
    )
    # The cost of a policy: each GraphQL body read whole and parsed with graphql-core.
    plans.append(
        (
            "remoteit-ro",
            "remoteit --read-only",
            lambda p: proxy_launch(ctx, "remoteit-ro", p, upstream, "--read-only"),
        )
    )
    # The framework's own cost: the same server and client, no signing, no checks.
    plans.append(("floor", "aiohttp floor", lambda p: floor_launch(ctx, p, upstream)))
    for key, label, make in plans:
        setups.append(start_proxy(ctx, key, label, make))
    if tls_upstream is not None:
        setups += start_https_setups(ctx, proc, tls_upstream)
    return setups


def start_proxy(
    ctx: Context, key: str, label: str, make: Callable[[int], Launch], upstream: str = "http"
) -> Setup:
    """Start one proxy on a free port and check that it answers a GraphQL POST with 200."""
    port = free_port()
    launch = make(port)
    setup = Setup(key, label, port, start(ctx, launch, port, ctx.proxy_cpu), upstream)
    status = post_status(port)
    if status != 200:
        raise BenchError(f"{label} answered {status} instead of 200:{tail(launch.log)}")
    return setup


def start_https_setups(ctx: Context, proc: subprocess.Popen[bytes], port: int) -> list[Setup]:
    """The upstream's https ``port`` direct (wrk speaking TLS to it), then nginx + njs and
    remoteit-proxy proxying to it, each verifying its certificate."""
    assert ctx.tls is not None
    status = post_status(port, ctx.tls)
    if status != 200:
        raise BenchError(f"the upstream's https port answered {status} instead of 200")
    label = "upstream direct (https)"
    setups = [Setup("direct-https", label, port, proc, "https", baseline=True, scheme="https")]
    plans: list[tuple[str, str, Callable[[int], Launch]]] = []
    if ctx.tools.njs_module is not None:
        plans.append(
            (
                "njs-https",
                "nginx + njs (https)",
                lambda p: nginx_launch(ctx, "njs-https", "njs_https.conf", p, port),
            )
        )
    plans.append(
        (
            "remoteit-https",
            "remoteit-proxy (https)",
            lambda p: proxy_launch(ctx, "remoteit-https", p, port, https=True),
        )
    )
    return [*setups, *(start_proxy(ctx, *plan, upstream="https") for plan in plans)]


# --- signature check --------------------------------------------------------------------------


@dataclass
class SignatureCheck:
    """One request through one signing proxy, as the independent verifier saw it."""

    signer: str
    request: str
    status: int
    verified: bool
    reason: str


CHECK_REQUESTS: tuple[tuple[str, str, dict[str, str], str | None], ...] = (
    ("POST", PATH, {"Content-Type": "application/json"}, BODY),
    ("GET", "/apv/v27/device/list/all?size=50", {}, None),
)
CHECK_BURST = 100  # concurrent POSTs per signer, to catch a Date/signature mismatch under load


def why_invalid(received: Any, host: str) -> str:
    """'' if the verifier accepted the request and its Host and Date look right, else why not."""
    if received.reason:
        return str(received.reason)
    if received.header("Host") != host:
        return f"Host {received.header('Host')!r}, not {host!r}"
    if not IMF_FIXDATE.fullmatch(received.header("Date") or ""):
        return f"Date {received.header('Date')!r} is not an IMF-fixdate"
    return ""


async def check_signer(
    session: aiohttp.ClientSession, fake: Any, signer: str, port: int, host: str
) -> list[SignatureCheck]:
    """The check requests one at a time, then a burst of concurrent POSTs."""
    checks = []
    for method, target, headers, body in CHECK_REQUESTS:
        seen = len(fake.received)
        url = f"http://127.0.0.1:{port}{target}"
        async with session.request(method, url, headers=headers, data=body) as response:
            await response.read()
        got = fake.received[seen:]
        reason = why_invalid(got[-1], host) if got else "the request never reached the upstream"
        verified = response.status == 200 and not reason
        checks.append(
            SignatureCheck(signer, f"{method} {target}", response.status, verified, reason)
        )

    async def post() -> int:
        url = f"http://127.0.0.1:{port}{PATH}"
        async with session.post(url, data=BODY, headers={"Content-Type": "application/json"}) as r:
            await r.read()
            return r.status

    seen = len(fake.received)
    statuses = await asyncio.gather(*(post() for _ in range(CHECK_BURST)))
    reasons = [why_invalid(got, host) for got in fake.received[seen:]]
    invalid = [reason for reason in reasons if reason]
    answered = sum(status == 200 for status in statuses)
    verified = answered == len(reasons) == CHECK_BURST and not invalid
    reason = "" if verified else f"{answered} answered 200, {len(invalid)} invalid {invalid[:1]}"
    status = next((status for status in statuses if status != 200), 200)
    checks.append(
        SignatureCheck(signer, f"{CHECK_BURST} concurrent POST {PATH}", status, verified, reason)
    )
    return checks


async def check_signatures(ctx: Context) -> list[SignatureCheck]:
    """Send requests through njs and remoteit-proxy to tests/fake_upstream.py's verifier; with
    certificates, also through both to the verifier over https, as the https rows run them."""
    sys.path.insert(0, str(ROOT / "tests"))
    from fake_upstream import FakeUpstream  # recomputes the HMAC without importing proxy

    fake = FakeUpstream(keys={KEY_ID: base64.b64decode(ctx.secret_b64)})
    runner = web.AppRunner(fake.app(), access_log=None)
    await runner.setup()
    started: list[subprocess.Popen[bytes]] = []
    checks: list[SignatureCheck] = []
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        signers = signers_to_check(ctx, runner.addresses[0][1], https=False)
        if ctx.tls is not None:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(ctx.tls.cert, ctx.tls.key)
            tls_port = free_port()
            await web.TCPSite(runner, "127.0.0.1", tls_port, ssl_context=tls).start()
            signers += signers_to_check(ctx, tls_port, https=True)
        for _, launch, port, _ in signers:
            started.append(await asyncio.to_thread(start, ctx, launch, port, None))
        async with aiohttp.ClientSession() as session:
            for signer, _, port, host in signers:
                checks += await check_signer(session, fake, signer, port, host)
    finally:
        for proc in started:
            ctx.procs.stop(proc)
        await runner.cleanup()
    return checks


def signers_to_check(
    ctx: Context, upstream: int, https: bool
) -> list[tuple[str, Launch, int, str]]:
    """nginx + njs and remoteit-proxy in front of the verifier's port ``upstream`` (its TLS
    port with ``https``): signer, launch, port, and the Host the verifier must see."""
    suffix, label = ("-https", " (https)") if https else ("", "")
    host = f"{TLS_NAME if https else '127.0.0.1'}:{upstream}"
    signers = []
    if ctx.tools.njs_module is not None:
        port = free_port()
        template = "njs_https.conf" if https else "njs.conf"
        launch = nginx_launch(ctx, f"njs{suffix}-check", template, port, upstream)
        signers.append((f"nginx + njs{label}", launch, port, host))
    port = free_port()
    launch = proxy_launch(ctx, f"remoteit{suffix}-check", port, upstream, https=https)
    signers.append((f"remoteit-proxy{label}", launch, port, host))
    return signers


# --- load -------------------------------------------------------------------------------------


@dataclass
class Sample:
    """One wrk run."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    socket_errors: int
    non_2xx: int
    other_cpu: float  # CPUs' worth of time other programs used meanwhile (a lower bound)


@dataclass
class Measurement:
    """One setup at one connection count, over several rounds; figures are medians."""

    setup: str
    label: str
    connections: int
    upstream: str = "http"  # how the setup reaches the upstream: http or https
    baseline: bool = False  # the upstream direct
    samples: list[Sample] = field(default_factory=list)

    def median(self, name: str) -> float:
        return float(statistics.median(getattr(sample, name) for sample in self.samples))

    @property
    def rps(self) -> float:
        return self.median("rps")

    @property
    def p50_ms(self) -> float:
        return self.median("p50_ms")

    @property
    def p99_ms(self) -> float:
        return self.median("p99_ms")

    @property
    def errors(self) -> int:
        return sum(sample.socket_errors + sample.non_2xx for sample in self.samples)

    @property
    def other_cpu(self) -> float:
        return max(sample.other_cpu for sample in self.samples)

    @property
    def spread(self) -> float:
        """Half the range of requests/s over the rounds, as a fraction of the median."""
        values = [sample.rps for sample in self.samples]
        return (max(values) - min(values)) / 2 / self.rps if self.rps else 0.0

    def as_json(
        self, added_p50_ms: float | None, reference: str | None, ratios: dict[str, float | None]
    ) -> dict[str, Any]:
        return {
            "setup": self.setup,
            "label": self.label,
            "upstream": self.upstream,
            "connections": self.connections,
            "rps": self.rps,
            "p50_ms": self.p50_ms,
            "p90_ms": self.median("p90_ms"),
            "p99_ms": self.p99_ms,
            "added_p50_ms": added_p50_ms,
            "reference": reference,
            "vs_reference": ratios,
            "errors": self.errors,
            "other_cpu_max": self.other_cpu,
            "rounds": [asdict(sample) for sample in self.samples],
        }


def run_wrk(ctx: Context, url: str, connections: int, seconds: int) -> Sample:
    """One wrk run (one thread, on the upstream's CPU), read from the script's WRK_RESULT."""
    script = ctx.workdir / "graphql.lua"
    if not script.exists():
        script.write_text(WRK_SCRIPT)
    argv = [ctx.tools.wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    argv += ["--timeout", "5s", "-s", str(script), url]
    if ctx.load_cpu is not None and ctx.tools.taskset is not None:
        argv = [ctx.tools.taskset, "-c", str(ctx.load_cpu), *argv]
    machine, own, started = machine_cpu_seconds(), own_cpu_seconds(ctx.procs), time.monotonic()
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=seconds + 60, env=ctx.env, check=False
    )
    others = machine_cpu_seconds() - machine - (own_cpu_seconds(ctx.procs) - own)
    other_cpu = max(0.0, others) / (time.monotonic() - started)
    match = re.search(r"^WRK_RESULT (\{.*\})$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or match is None:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    raw: dict[str, int] = json.loads(match.group(1))
    elapsed = raw["duration_us"] / 1e6
    errors = ("connect_errors", "read_errors", "write_errors", "timeouts")
    return Sample(
        requests=raw["requests"],
        seconds=round(elapsed, 3),
        rps=raw["requests"] / elapsed if elapsed else 0.0,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        socket_errors=sum(raw[name] for name in errors),
        non_2xx=raw["non_2xx"],
        other_cpu=round(other_cpu, 3),
    )


def measure(
    ctx: Context, setups: Sequence[Setup], seconds: int, warm_up: int, rounds: int
) -> list[Measurement]:
    """Warm every setup up, then ``rounds`` rounds, the setups taking turns within each."""
    found = {
        (s.key, c): Measurement(s.key, s.label, c, s.upstream, s.baseline)
        for c in CONNECTIONS
        for s in setups
    }
    for setup in setups:
        say(f"{setup.label}: warm-up, {warm_up} s at {WARM_UP_CONNECTIONS} connections")
        run_wrk(ctx, setup.url, WARM_UP_CONNECTIONS, warm_up)
    for round_ in range(1, rounds + 1):
        for connections in CONNECTIONS:
            for setup in setups:
                say(f"round {round_}/{rounds}: {setup.label}, {connections} connection(s)")
                sample = run_wrk(ctx, setup.url, connections, seconds)
                if sample.other_cpu > OTHER_CPU_WARNING:
                    say(f"WARNING: other programs used {sample.other_cpu:.2f} CPU meanwhile")
                if sample.requests == 0 or sample.socket_errors or sample.non_2xx:
                    say(
                        f"WARNING {setup.label}: {sample.requests} requests, "
                        f"{sample.socket_errors} socket errors, {sample.non_2xx} non-2xx answers"
                    )
                found[(setup.key, connections)].samples.append(sample)
    return list(found.values())


def added_p50(measurements: Sequence[Measurement]) -> dict[tuple[str, int], float | None]:
    """p50 latency each setup adds over the upstream alone (over https for the https rows), at
    the same connection count."""
    direct = {(m.upstream, m.connections): m.p50_ms for m in measurements if m.baseline}
    return {
        (m.setup, m.connections): None
        if m.baseline or (m.upstream, m.connections) not in direct
        else m.p50_ms - direct[(m.upstream, m.connections)]
        for m in measurements
    }


# The setup the others' figures are ratios to, by upstream: the first one measured.
REFERENCES = {"http": ("njs", "nginx"), "https": ("njs-https",)}


def reference_for(measurements: Sequence[Measurement], upstream: str) -> str | None:
    """nginx + njs (over http, the plain nginx proxy when njs is unavailable); None if absent."""
    measured = {m.setup for m in measurements}
    return next((key for key in REFERENCES[upstream] if key in measured), None)


def ratios(
    measurements: Sequence[Measurement], added: Mapping[tuple[str, int], float | None]
) -> dict[tuple[str, int], dict[str, float | None]]:
    """Each setup's req/s, p50, p99 and added p50 over its reference's, at the same
    connection count; None where there is no reference or no figure."""
    by_key = {(m.setup, m.connections): m for m in measurements}

    def over(value: float | None, reference: float | None) -> float | None:
        return None if value is None or not reference else value / reference

    found: dict[tuple[str, int], dict[str, float | None]] = {}
    for m in measurements:
        key = (m.setup, m.connections)
        ref = by_key.get((reference_for(measurements, m.upstream) or "", m.connections))
        if ref is None:
            found[key] = dict.fromkeys(("rps", "p50_ms", "p99_ms", "added_p50_ms"))
            continue
        found[key] = {
            "rps": over(m.rps, ref.rps),
            "p50_ms": over(m.p50_ms, ref.p50_ms),
            "p99_ms": over(m.p99_ms, ref.p99_ms),
            "added_p50_ms": over(added[key], added[(ref.setup, ref.connections)]),
        }
    return found


# --- start-up time and memory -----------------------------------------------------------------


def first_answer_seconds(ctx: Context, launch: Launch, port: int, timeout: float = 30.0) -> float:
    """Seconds from spawning the server to its first 200 for a GraphQL POST."""
    started = time.perf_counter()
    proc = ctx.procs.start(
        launch.argv, log=launch.log, env=launch.env, cpu=ctx.proxy_cpu, cwd=launch.cwd
    )
    try:
        while True:
            if post_status(port) == 200:
                return time.perf_counter() - started
            if proc.poll() is not None:
                raise BenchError(f"{launch.what} exited with {proc.returncode}:{tail(launch.log)}")
            if time.perf_counter() - started > timeout:
                raise BenchError(f"{launch.what} did not answer within {timeout:g} s")
            time.sleep(0.002)
    finally:
        ctx.procs.stop(proc)


def measure_startup(ctx: Context, upstream: int, starts: int) -> dict[str, Any]:
    """Median time to the first answer over ``starts`` starts, through the nginx upstream."""
    plans: list[tuple[str, Callable[[int, int], Launch]]] = [
        ("remoteit-proxy", lambda i, p: proxy_launch(ctx, f"remoteit-start-{i}", p, upstream))
    ]
    if ctx.tools.njs_module is not None:
        plans.append(
            (
                "nginx + njs",
                lambda i, p: nginx_launch(ctx, f"njs-start-{i}", "njs.conf", p, upstream),
            )
        )
    results: dict[str, Any] = {}
    for label, make in plans:
        times = []
        for i in range(starts):
            port = free_port()
            times.append(first_answer_seconds(ctx, make(i, port), port))
        results[label] = {"median_s": statistics.median(times), "all_s": times}
        say(f"{label}: first answer after {statistics.median(times):.3f} s (median of {starts})")
    return results


def run_helper(ctx: Context, script: str, args: Sequence[str], timeout: float) -> str:
    """Run one of the other benchmarks/ scripts in its own process group; its stdout."""
    argv = [sys.executable, str(HERE / script), *args]
    say("running: " + " ".join(argv[1:]))
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ctx.env,
        cwd=ROOT,
        start_new_session=True,  # so that its proxy and upstream can be stopped with it
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=5)
                break
        raise
    if not out.strip():
        raise BenchError(f"{script} printed nothing (status {proc.returncode}): {err[-2000:]}")
    return out


def _number(pattern: str, text: str, script: str) -> re.Match[str]:
    match = re.search(pattern, text)
    if match is None:
        raise BenchError(f"unexpected output from {script}:\n{text}")
    return match


def measure_memory(ctx: Context, stream_mib: int) -> dict[str, Any]:
    """remoteit-proxy's RSS idle, under 1,000 connections and streaming, via the helpers."""
    out = run_helper(ctx, "concurrency.py", ["--connections", "1000"], timeout=300)
    ok = _number(r"succeeded: (\d+)/(\d+), wall time ([\d.]+) s", out, "concurrency.py")
    rss = _number(r"proxy RSS: idle ([\d.]+) MiB, peak ([\d.]+) MiB", out, "concurrency.py")
    memory: dict[str, Any] = {
        "idle_mib": float(rss.group(1)),
        "connections": int(ok.group(2)),
        "connections_ok": int(ok.group(1)),
        "connections_wall_s": float(ok.group(3)),
        "connections_peak_mib": float(rss.group(2)),
    }
    out = run_helper(ctx, "stream_memory.py", ["--size-mib", str(stream_mib)], timeout=1800)
    idle = _number(r"proxy RSS idle: ([\d.]+) MiB", out, "stream_memory.py")
    memory["stream_mib"] = stream_mib
    memory["stream_idle_mib"] = float(idle.group(1))
    for way in ("upload", "download"):
        match = _number(
            rf"{way}\s*: peak RSS ([\d.]+) MiB \(\+(-?[\d.]+) MiB over idle\), (\d+) MiB/s",
            out,
            "stream_memory.py",
        )
        memory[f"{way}_peak_mib"] = float(match.group(1))
        memory[f"{way}_mib_per_s"] = int(match.group(3))
    return memory


# --- report -----------------------------------------------------------------------------------


def ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """A plain-text table; ``align`` has one letter per column, l or r (default: l, then r)."""
    align = align or "l" + "r" * (len(headers) - 1)
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.ljust(width) if side == "l" else cell.rjust(width)
            for cell, width, side in zip(cells, widths, align, strict=True)
        ]
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def throughput_report(measurements: Sequence[Measurement], upstream: str) -> str:
    """The table of the setups reaching the upstream over ``upstream`` (http or https), one
    block per connection count, with ratios to the reference setup."""
    added = added_p50(measurements)
    versus = ratios(measurements, added)
    reference = reference_for(measurements, upstream)
    name = "vs " + ("njs" if reference and reference.startswith("njs") else "nginx")
    headers = ["setup", "conns", "req/s", "spread", name, "p50 ms", name, "p99 ms", name]
    headers += ["added p50 ms", name, "errors", "other CPU"]
    rows = []
    for connections in CONNECTIONS:
        for m in measurements:
            if m.upstream != upstream or m.connections != connections:
                continue
            extra, vs = added[(m.setup, m.connections)], versus[(m.setup, m.connections)]
            rows.append(
                [
                    m.label,
                    str(connections),
                    f"{m.rps:,.0f}",
                    f"±{m.spread:.0%}" if len(m.samples) > 1 else "-",
                    ratio(vs["rps"]),
                    f"{m.p50_ms:.3f}",
                    ratio(vs["p50_ms"]),
                    f"{m.p99_ms:.3f}",
                    ratio(vs["p99_ms"]),
                    "-" if extra is None else f"{extra:+.3f}",
                    ratio(vs["added_p50_ms"]),
                    str(m.errors),
                    f"{m.other_cpu:.2f}",
                ]
            )
    return table(headers, rows)


def report(results: dict[str, Any], measurements: Sequence[Measurement]) -> str:
    """The whole printed report: set-up, signature check, then one table per measurement."""
    env, settings = results["environment"], results["settings"]
    lines = [
        "remoteit-proxy benchmark, all on loopback",
        f"  {env['cpu']}, {env['cpus']} CPUs; Linux {env['kernel']}; Python {env['python']}",
        f"  nginx {env['nginx']}, njs {env['njs']}, {env['wrk']}, "
        f"remoteit-proxy {env['remoteit_proxy']}, aiohttp {env['aiohttp']}",
        f"  OpenSSL {env['openssl']} (Python), {env['nginx_openssl']} (nginx build)",
        f"  proxies on CPU {env['proxy_cpu']} (nginx: 1 worker; remoteit-proxy: "
        f"--log-level warning),",
        f"  wrk and the upstream on CPU {env['load_cpu']}; all CPUs {env['busy_before']:.0%} "
        "busy with other work just before the start",
        f"  wrk -t1, POST {PATH} {BODY}",
        f"  {settings['rounds']} round(s) of {settings['duration_s']} s per setup and "
        f"connection count, after a {settings['warm_up_s']} s warm-up",
        "",
        "Signatures (independent verifier, tests/fake_upstream.py):",
    ]
    checks = results["signature_checks"]
    width = max(len(check["signer"]) for check in checks)
    for check in checks:
        verdict = "valid" if check["verified"] else f"INVALID ({check['status']} {check['reason']})"
        lines.append(f"  {check['signer']:<{width}} {check['request']:<38} {verdict}")
    lines += ["", "Throughput and latency:", throughput_report(measurements, "http")]
    lines += [
        "  medians over the rounds; spread = half the range of req/s over the rounds;",
        "  added p50 = p50 of the setup minus p50 of the upstream direct at the same connections;",
        "  errors = socket errors + non-2xx answers, all rounds; other CPU = most CPU time other",
        "  programs used during a round, in CPUs (a lower bound; above 0.10 the figures are off)",
    ]
    if any(m.setup == "floor" for m in measurements):
        lines.append(
            "  aiohttp floor: aiohttp's server and the proxy's upstream client with no signing,"
            " no checks: what any proxy on this framework costs"
        )
    if reference_for(measurements, "http") != "njs":
        lines.append("  nginx njs is unavailable: ratios are to the plain nginx proxy")
    https = results["settings"]["https"]
    if any(m.upstream == "https" for m in measurements):
        lines += [
            "",
            "Throughput and latency, proxying to the upstream over https:",
            throughput_report(measurements, "https"),
            "  wrk -> proxy over http as above; proxy -> upstream https://localhost:PORT with",
            f"  keepalive, its certificate (from {https['certificates']}) verified, "
            f"{https['tls']};",
            "  added p50 = p50 of the setup minus p50 of wrk to the upstream over https",
        ]
        if reference_for(measurements, "https") is None:
            lines.append("  nginx njs is unavailable: no ratios")
    elif https["skipped"]:
        lines += ["", f"https rows skipped: {https['skipped']}"]
    rss = results.get("rss_after_load_mib", {})
    if rss:
        lines += [
            "",
            "RSS after the load runs: " + ", ".join(f"{k} {v:.1f} MiB" for k, v in rss.items()),
        ]
    startup = results.get("startup")
    if startup:
        starts = results["settings"]["starts"]
        lines += [
            "",
            f"Time from process start to the first answered request (median of {starts}):",
        ]
        for label, figures in startup.items():
            spread = ", ".join(f"{s:.3f}" for s in figures["all_s"])
            lines.append(f"  {label:<15} {figures['median_s']:.3f} s  ({spread})")
    memory = results.get("memory")
    if memory:
        size = memory["stream_mib"]
        rows = [
            ["idle", f"{memory['idle_mib']:.1f}", "after start, no requests"],
            [
                f"{memory['connections']:,} concurrent connections",
                f"{memory['connections_peak_mib']:.1f}",
                f"{memory['connections_ok']}/{memory['connections']} answered, upstream 1 s "
                f"each, wall {memory['connections_wall_s']:.2f} s",
            ],
            [
                f"streaming {size} MiB up",
                f"{memory['upload_peak_mib']:.1f}",
                f"idle {memory['stream_idle_mib']:.1f} MiB, {memory['upload_mib_per_s']} MiB/s",
            ],
            [
                f"streaming {size} MiB down",
                f"{memory['download_peak_mib']:.1f}",
                f"idle {memory['stream_idle_mib']:.1f} MiB, {memory['download_mib_per_s']} MiB/s",
            ],
        ]
        lines += ["", "remoteit-proxy resident memory (peak RSS):"]
        lines.append(table(["case", "MiB", "notes"], rows, align="lrl"))
    for error in results.get("errors", []):
        lines.append(f"ERROR: {error}")
    return "\n".join(lines)


def environment(ctx: Context) -> dict[str, Any]:
    """Versions and machine, for the report."""

    def first_line(argv: Sequence[str]) -> str:
        with contextlib.suppress(OSError):
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            return (done.stdout + done.stderr).strip().splitlines()[0]
        return "unknown"

    cpu = "unknown"
    with contextlib.suppress(OSError, AttributeError):
        cpuinfo = Path("/proc/cpuinfo").read_text()
        cpu = re.search(r"model name\s*:\s*(.+)", cpuinfo).group(1).strip()  # type: ignore[union-attr]
    njs = "unavailable"
    if ctx.tools.njs_module is not None:
        njs = "unknown"
        for package in NJS_PACKAGES:
            out = first_line(["dpkg-query", "-W", "-f", "${Version}", package])
            if re.match(r"\d", out):
                njs = out
                break
    version = first_line([sys.executable, "-m", "proxy", "--version"]).split()[-1]
    build = subprocess.run([ctx.tools.nginx, "-V"], capture_output=True, text=True, check=False)
    nginx_openssl = re.search(r"built with OpenSSL (\S+)", build.stderr)
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "remoteit_proxy": version,
        "nginx": ".".join(map(str, ctx.tools.nginx_version)),
        "njs": njs,
        "wrk": " ".join(first_line([ctx.tools.wrk, "-v"]).split()[:2]),
        "openssl": ssl.OPENSSL_VERSION.split()[1],  # Python's: remoteit-proxy's TLS
        "nginx_openssl": nginx_openssl.group(1) if nginx_openssl else "unknown",
        "proxy_cpu": "-" if ctx.proxy_cpu is None else ctx.proxy_cpu,
        "load_cpu": "-" if ctx.load_cpu is None else ctx.load_cpu,
    }


# --- main -------------------------------------------------------------------------------------


def cpu_busy(seconds: float = 1.0) -> float:
    """The fraction of all CPUs busy over the next ``seconds`` (Linux /proc/stat)."""

    def sample() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        return values[3] + values[4], sum(values)  # idle + iowait, all

    idle, total = sample()
    time.sleep(seconds)
    idle2, total2 = sample()
    return 1 - (idle2 - idle) / max(total2 - total, 1)


def wait_until_quiet(limit: float) -> float:
    """Wait up to ``limit`` seconds for the CPUs to be idle; the last busy fraction seen."""
    deadline = time.monotonic() + limit
    while (busy := cpu_busy()) >= QUIET and time.monotonic() < deadline:
        say(f"the CPUs are {busy:.0%} busy with other work; waiting for them to be quiet")
    if busy >= QUIET:
        say(f"WARNING: the CPUs are {busy:.0%} busy with other work: figures will be off")
    return busy


def pick_cpus(taskset: str | None) -> tuple[int | None, int | None]:
    """CPU for the proxies, CPU for wrk and the upstream: the first two this process may use."""
    allowed = sorted(os.sched_getaffinity(0))
    if taskset is None or len(allowed) < 2:
        say("WARNING: fewer than 2 CPUs or no taskset: nothing is pinned; figures will be noisy")
        return None, None
    return allowed[0], allowed[1]


def run(ctx: Context, args: argparse.Namespace) -> tuple[dict[str, Any], list[Measurement]]:
    """All measurements; later steps that fail are reported, not fatal."""
    results: dict[str, Any] = {
        "environment": environment(ctx),
        "settings": {
            "duration_s": args.duration,
            "warm_up_s": args.warm_up,
            "rounds": args.rounds,
            "connections": list(CONNECTIONS),
            "starts": args.starts,
            "stream_mib": args.stream_mib,
            "https": {
                "certificates": None if ctx.tls is None else ctx.tls.source,
                "skipped": "" if ctx.tls else "--skip-https" if args.skip_https else NO_CERTS,
            },
        },
        "errors": [],
    }
    say("checking signatures against an independent verifier")
    checks = asyncio.run(check_signatures(ctx))
    results["signature_checks"] = [asdict(check) for check in checks]
    for check in checks:
        say(f"{check.signer} {check.request}: {'valid' if check.verified else check.reason}")
    if not all(check.verified for check in checks):
        raise BenchError("a signing proxy sent a request that does not verify; see above")

    results["environment"]["busy_before"] = wait_until_quiet(args.wait_quiet)
    setups = start_setups(ctx)
    https = next((s.port for s in setups if s.key == "direct-https"), None)
    if https is not None and ctx.tls is not None:
        results["settings"]["https"]["tls"] = tls_session(https, ctx.tls)
    measurements = measure(ctx, setups, args.duration, args.warm_up, args.rounds)
    added = added_p50(measurements)
    versus = ratios(measurements, added)
    results["throughput"] = [
        m.as_json(
            added[(m.setup, m.connections)],
            reference_for(measurements, m.upstream),
            versus[(m.setup, m.connections)],
        )
        for m in measurements
    ]
    # The proxies only (not the upstream); nginx's master and worker together.
    results["rss_after_load_mib"] = {
        s.label: round(rss_mib(s.proc.pid), 1) for s in setups if not s.baseline
    }

    try:
        results["startup"] = measure_startup(ctx, setups[0].port, args.starts)
    except BenchError as exc:
        results["errors"].append(f"start-up time: {exc}")
    for setup in setups:
        ctx.procs.stop(setup.proc)

    if not args.skip_memory:
        try:
            results["memory"] = measure_memory(ctx, args.stream_mib)
        except (BenchError, subprocess.TimeoutExpired) as exc:
            results["errors"].append(f"memory: {exc}")
    return results, measurements


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--duration", type=int, help="seconds per wrk run (default 5, quick 2)")
    parser.add_argument(
        "--rounds", type=int, help="rounds per setup and connection count (default 3, quick 1)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="2 s runs, 1 round, 3 starts, 256 MiB streams"
    )
    parser.add_argument("--skip-memory", action="store_true", help="skip the memory helpers")
    parser.add_argument(
        "--skip-https", action="store_true", help="leave out the rows proxying to https"
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write results as JSON")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=60,
        metavar="S",
        help="wait up to S seconds for other work to leave the CPUs idle (default 60)",
    )
    parser.add_argument(
        "--no-install", action="store_true", help="never run apt-get; skip what is missing"
    )
    args = parser.parse_args(argv)
    if args.duration is None:
        args.duration = 2 if args.quick else 5
    if args.duration < 1:
        parser.error("--duration must be at least 1 second (wrk counts whole seconds)")
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    args.warm_up = 1 if args.quick else 2
    args.starts = 3 if args.quick else 5
    args.stream_mib = 256 if args.quick else 1024
    return args


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally that stops every process


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        tools = ensure_tools(install=not args.no_install)
    except BenchError as exc:
        say(f"error: {exc}")
        return 2
    proxy_cpu, load_cpu = pick_cpus(tools.taskset)
    procs = Processes(tools.taskset)
    with tempfile.TemporaryDirectory(prefix="remoteit-bench-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)  # nginx workers (user nobody) may need to reach their prefix
        secret_b64 = base64.b64encode(os.urandom(32)).decode()
        credentials = workdir / "credentials"
        credentials.write_text(
            f"[DEFAULT]\nR3_ACCESS_KEY_ID={KEY_ID}\nR3_SECRET_ACCESS_KEY={secret_b64}\n"
        )
        credentials.chmod(0o600)
        env = {k: v for k, v in os.environ.items() if not SCRUBBED_ENV.match(k)}
        tls = None if args.skip_https else make_certificates(workdir / "tls")
        ctx = Context(tools, procs, workdir, proxy_cpu, load_cpu, credentials, secret_b64, env, tls)
        try:
            results, measurements = run(ctx, args)
        except BenchError as exc:
            say(f"error: {exc}")
            return 1
        finally:
            procs.stop_all()
    print(report(results, measurements))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        say(f"results written to {args.json}")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
