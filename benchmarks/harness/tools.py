"""nginx, its njs module, wrk and taskset: found on this machine, or installed with apt-get."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .common import BenchError, say

NJS_MODULE_FILE = "ngx_http_js_module.so"
NJS_PACKAGES = ("libnginx-mod-http-js", "nginx-module-njs")
MODULE_DIRS = ("/usr/lib/nginx/modules", "/usr/lib64/nginx/modules", "/etc/nginx/modules")


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
