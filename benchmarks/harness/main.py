"""The command line and the run: every measurement, the report, the JSON file."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .common import CONNECTIONS, KEY_ID, BenchError, say
from .context import Context
from .cpus import pick_cpus, wait_until_quiet
from .memory import measure_memory
from .processes import Processes, rss_mib
from .report import environment, report
from .setups import start_setups
from .signatures import check_signatures
from .startup import measure_startup
from .tls import NO_CERTS, make_certificates, tls_session
from .tools import ensure_tools
from .workload import measure_workload
from .workload_calls import check_workload_signatures, ensure_programs
from .wrk import Measurement, added_p50, info_vs_warning, measure, ratios, reference_for

# Would change which key remoteit-proxy signs with, or send its traffic to another host.
SCRUBBED_ENV = re.compile(r"R3_|REMOTEIT_PROXY_|(HTTPS?|ALL|NO|FTP)_PROXY$", re.IGNORECASE)


def run(ctx: Context, args: argparse.Namespace) -> tuple[dict[str, Any], list[Measurement]]:
    """All measurements; later steps that fail are reported, not fatal."""
    workload = ctx.tls is not None and not args.skip_workload
    results: dict[str, Any] = {
        "environment": environment(ctx),
        "settings": {
            "only": args.only,
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
            "workload_calls": args.calls if workload else None,
        },
        "errors": [],
    }
    say("checking signatures against an independent verifier")
    checks = [] if args.only == "workload" else asyncio.run(check_signatures(ctx))
    if workload:
        try:
            ensure_programs(install=not args.no_install)
        except BenchError as exc:
            if args.only == "workload":
                raise
            results["errors"].append(f"user workload: {exc}")
            workload = False
    if workload:
        checks += asyncio.run(check_workload_signatures(ctx))
    results["signature_checks"] = [asdict(check) for check in checks]
    for check in checks:
        say(f"{check.signer} {check.request}: {'valid' if check.verified else check.reason}")
    if not all(check.verified for check in checks):
        raise BenchError("a signing proxy sent a request that does not verify; see above")

    results["environment"]["busy_before"] = wait_until_quiet(args.wait_quiet)
    measurements = [] if args.only == "workload" else run_throughput(ctx, args, results)
    if workload:
        try:
            results["workload"] = measure_workload(ctx, args.rounds, args.calls)
        except (BenchError, subprocess.TimeoutExpired) as exc:
            results["errors"].append(f"user workload: {exc}")
    elif ctx.tls is None and not (args.skip_workload or args.skip_https):
        results["errors"].append("user workload: it needs the https upstream's certificates")
    return results, measurements


def run_throughput(
    ctx: Context, args: argparse.Namespace, results: dict[str, Any]
) -> list[Measurement]:
    """The throughput tables, start-up time and memory, into ``results``."""
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
    results["info_vs_warning_rps"] = info_vs_warning(measurements)
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
    return measurements


def parse_args(argv: Sequence[str] | None, doc: str | None = None) -> argparse.Namespace:
    """The options; ``doc`` is bench.py's docstring, whose first line --help shows."""
    parser = argparse.ArgumentParser(
        description=doc.splitlines()[0] if doc else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--duration", type=int, help="seconds per wrk run (default 5, quick 2)")
    parser.add_argument(
        "--rounds", type=int, help="rounds per setup and connection count (default 3, quick 1)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="2 s runs, 1 round, 3 starts, 256 MiB streams"
    )
    parser.add_argument(
        "--only",
        choices=["workload"],
        help="workload: only the user-workload table (about a minute with --quick)",
    )
    parser.add_argument(
        "--skip-workload", action="store_true", help="leave out the user-workload table"
    )
    parser.add_argument(
        "--calls", type=int, default=100, help="calls per way in the user workload (default 100)"
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
    if args.calls < 1:
        parser.error("--calls must be at least 1")
    if args.only == "workload" and (args.skip_workload or args.skip_https):
        parser.error("--only workload runs over https: no --skip-workload or --skip-https")
    args.warm_up = 1 if args.quick else 2
    args.starts = 3 if args.quick else 5
    args.stream_mib = 256 if args.quick else 1024
    return args


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally that stops every process


def main(argv: Sequence[str] | None = None, doc: str | None = None) -> int:
    args = parse_args(argv, doc)
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
        # No NUL or newline byte: the vendor's recipe keeps the decoded secret in a shell
        # variable and passes it to openssl as an argument.
        secret = bytes(byte for byte in os.urandom(64) if byte not in (0, 10))[:32]
        secret_b64 = base64.b64encode(secret).decode()
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
