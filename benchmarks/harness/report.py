"""The printed report: the machine and versions, the signature checks and the tables."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import ssl
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from .common import BODY, CONNECTIONS, PATH
from .context import Context
from .tools import NJS_PACKAGES
from .workload import workload_notes, workload_table
from .wrk import Measurement, added_p50, info_vs_warning, ratios, reference_for


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
        f"--log-level warning but where said),",
        f"  wrk, clients and the upstream on CPU {env['load_cpu']}; all CPUs "
        f"{env['busy_before']:.0%} busy with other work just before the start",
    ]
    if measurements:
        lines += [
            f"  wrk -t1, POST {PATH} {BODY}",
            f"  {settings['rounds']} round(s) of {settings['duration_s']} s per setup and "
            f"connection count, after a {settings['warm_up_s']} s warm-up",
        ]
    lines += ["", "Signatures (independent verifier, tests/fake_upstream.py):"]
    checks = results["signature_checks"]
    width = max(len(check["signer"]) for check in checks)
    for check in checks:
        verdict = "valid" if check["verified"] else f"INVALID ({check['status']} {check['reason']})"
        lines.append(f"  {check['signer']:<{width}} {check['request']:<38} {verdict}")
    if measurements:
        lines += throughput_lines(results, measurements)
    workload = results.get("workload")
    if workload:
        headers, rows = workload_table(workload)
        lines += [
            "",
            f"User workload: {workload['calls']} sequential small GraphQL calls to a TLS upstream"
            f" behind a {workload['rtt_ms']} ms round trip",
            table(headers, rows),
            *workload_notes(workload),
        ]
    for error in results.get("errors", []):
        lines.append(f"ERROR: {error}")
    return "\n".join(lines)


def throughput_lines(results: dict[str, Any], measurements: Sequence[Measurement]) -> list[str]:
    """The throughput tables, RSS, start-up time and memory."""
    lines = ["", "Throughput and latency:", throughput_report(measurements, "http")]
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
    info = info_vs_warning(measurements)
    if any(value is not None for value in info.values()):
        per = ", ".join(f"{ratio(v)} at {c} conn(s)" for c, v in info.items())
        lines.append(
            "  remoteit at INFO: no --log-level (README's install, an access line per request);"
        )
        lines.append(f"  its req/s over remoteit-proxy's at --log-level warning: {per}")
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
    return lines


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
