"""remoteit-proxy side by side with nginx: throughput, latency, memory and start-up time.

All on loopback, under the same load (wrk, a small GraphQL POST, at 1 and at 50 connections):

  (a) direct:   the upstream itself, nginx answering a fixed JSON body (no proxy);
  (b) nginx:    a plain nginx reverse-proxy hop to it, no signing, upstream keepalive;
  (c) njs:      nginx signing every request with njs the vendor's way (js_set variables for
                Date and Authorization, crypto.createHmac with the base64-decoded secret);
  (d) remoteit: remoteit-proxy at --log-level warning, beside it the same at the default
                INFO (what README users run), and (e) the same with --read-only;
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

Last, the user workload: 100 sequential small GraphQL calls to the TLS upstream behind an
emulated 20 ms round trip (benchmarks/delay_relay.py), as wall time, five ways: the vendor's
recipe (benchmarks/vendor_recipe.sh: bash, openssl and curl per call), remoteit-proxy sign +
curl per call, curl per call through remoteit-proxy, one kept-alive Python session through it,
and one kept-alive TLS connection direct (the physical floor); the first three are checked
against the same verifier first. --only workload runs this table alone.

nginx, its njs module and wrk come from Debian packages, installed with apt-get when missing.
Configurations, pid files and logs live in a temporary directory (templates in
benchmarks/nginx/); every process started here is stopped at the end, even on error.

    python benchmarks/bench.py [--duration 5] [--rounds 3] [--quick] [--skip-https]
                               [--skip-memory] [--only workload | --skip-workload]
                               [--calls 100] [--json results.json]
"""

from __future__ import annotations

import sys
from pathlib import Path

# The harness package sits beside this file: importable whatever the working directory.
HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from harness.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(doc=__doc__))
