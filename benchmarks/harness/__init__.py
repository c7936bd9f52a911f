"""The modules of benchmarks/bench.py, by concern; each imports only modules listed above it.

- common: the benchmark's folders, the request it sends, BenchError, say()
- tools: nginx, its njs module, wrk and taskset, found or installed with apt-get
- tls: the https upstream's throwaway certificates, the TLS session negotiated
- processes: the servers started and stopped, their RSS, free ports, one POST
- cpus: CPU time other programs use, waiting for idle CPUs, pinning
- context: Context, what every step needs
- launches: how to start nginx (from benchmarks/nginx/), remoteit-proxy and the floor
- setups: the rows of the comparison, started and answering
- signatures: the signing proxies' requests, checked by tests/fake_upstream.py
- wrk: wrk runs, Sample, Measurement, added latency and ratios (INFO over warning too)
- startup: time from process start to the first answered request
- memory: remoteit-proxy's RSS, through concurrency.py and stream_memory.py
- workload_calls: the user workload's five ways to make calls, checked by fake_upstream.py
- workload: the user workload through the delaying relay, wall times, its table's rows
- report: the environment and the printed report
- main: the command line, the run and the JSON file
"""

from __future__ import annotations
