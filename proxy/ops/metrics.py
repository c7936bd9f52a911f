"""Prometheus metrics: bounded labels only (no paths, no ids), one registry per proxy."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Why the proxy closed a slow client's connection: its head (408), its body, or its answer.
TIMEOUT_REASONS = ("header", "body", "answer")
CONFIG_RESULTS = ("success", "unchanged", "error")  # of a config reload (SIGHUP)
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _Histogram:
    """Counts per bucket and a sum: what a request adds costs one bisect and two additions."""

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(BUCKETS, value)] += 1
        self.sum += value

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        cumulative, buckets = 0, []
        for bound, count in zip((*map(str, BUCKETS), "+Inf"), self.counts, strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        family = HistogramMetricFamily(name, documentation)
        family.add_metric([], buckets, self.sum)
        return family


class Metrics(Collector):
    """The proxy's metrics, kept as plain numbers and turned into Prometheus text on scrape.

    The event loop is single-threaded, so the per-request updates need no lock; the
    prometheus-client objects are only built when ``/-/metrics`` is asked.
    """

    def __init__(self, reloads: Callable[[], dict[str, int]], offset: Callable[[], int]) -> None:
        self.reloads, self.offset = reloads, offset  # read at scrape time
        self.in_flight = 0
        self.requests: dict[tuple[str, int], int] = {}
        self.upstream_errors: dict[str, int] = {}
        self.refusals: dict[tuple[str, str], int] = {}  # (client, rule): bounded, from config
        self.retries: dict[str, int] = {}  # by reason (policy.retry): a few fixed labels
        self.limited: dict[tuple[str, str], int] = {}  # (client, limit): bounded, from config
        self.coalesced = 0
        self.config_reloads = dict.fromkeys(CONFIG_RESULTS, 0)
        self.queued = 0  # requests waiting for --max-upstream-concurrency
        self.duration = _Histogram()
        self.upstream_duration = _Histogram()
        # Client connections: set and counted by serve/limits.py, per connection, never per request.
        self.open_connections = 0
        self.max_connections = 0
        self.connections_refused = 0
        self.descriptor_limit_hits = 0
        self.client_timeouts = dict.fromkeys(TIMEOUT_REASONS, 0)
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def observe(self, method: str, status: int, seconds: float, upstream: float | None) -> None:
        """Record one answered request."""
        key = (method if method in METHODS else "other", status)
        self.requests[key] = self.requests.get(key, 0) + 1
        if status != 101:  # an open WebSocket's lifetime is no request's duration
            self.duration.observe(seconds)
        if upstream is not None:
            self.upstream_duration.observe(upstream)

    def upstream_error(self, reason: str) -> None:
        self.upstream_errors[reason] = self.upstream_errors.get(reason, 0) + 1

    def refusal(self, client: str, reason: str) -> None:
        """A request the policy refused: ``client`` is a configured name, ``reason`` a rule."""
        key = (client, reason)
        self.refusals[key] = self.refusals.get(key, 0) + 1

    def retry(self, reason: str) -> None:
        """A request sent upstream once more: ``reason`` is a label of policy.retry."""
        self.retries[reason] = self.retries.get(reason, 0) + 1

    def rate_limited(self, client: str, limit: str) -> None:
        """A request refused by a local limit: ``limit`` is ``rate`` or ``concurrency``."""
        key = (client, limit)
        self.limited[key] = self.limited.get(key, 0) + 1

    def config_reload(self, result: str) -> None:
        """A config reload on SIGHUP: ``result`` is one of CONFIG_RESULTS."""
        self.config_reloads[result] += 1

    def client_timeout(self, reason: str) -> None:
        """A slow client's connection closed: ``reason`` is one of TIMEOUT_REASONS."""
        self.client_timeouts[reason] += 1

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "remoteit_proxy_requests",
            "Requests answered, by method and status",
            labels=["method", "status"],
        )
        for (method, status), count in sorted(self.requests.items()):
            requests.add_metric([method, str(status)], count)
        yield requests
        yield self.duration.family(
            "remoteit_proxy_request_duration_seconds", "Time to answer a request in full"
        )
        yield self.upstream_duration.family(
            "remoteit_proxy_upstream_duration_seconds",
            "Time from sending a request upstream to its response headers",
        )
        yield GaugeMetricFamily(
            "remoteit_proxy_in_flight_requests", "Requests being handled", value=self.in_flight
        )
        errors = CounterMetricFamily(
            "remoteit_proxy_upstream_errors", "Upstream failures, by reason", labels=["reason"]
        )
        for reason, count in sorted(self.upstream_errors.items()):
            errors.add_metric([reason], count)
        yield errors
        refusals = CounterMetricFamily(
            "remoteit_proxy_policy_refusals",
            "Requests the policy refused, by client and reason",
            labels=["client", "reason"],
        )
        for (client, reason), count in sorted(self.refusals.items()):
            refusals.add_metric([client, reason], count)
        yield refusals
        reloads = CounterMetricFamily(
            "remoteit_proxy_credential_reloads", "Credential reloads by result", labels=["result"]
        )
        for result in ("success", "error"):
            reloads.add_metric([result], self.reloads().get(result, 0))
        yield reloads
        configs = CounterMetricFamily(
            "remoteit_proxy_config_reloads", "Config reloads (SIGHUP) by result", labels=["result"]
        )
        for result, count in self.config_reloads.items():
            configs.add_metric([result], count)
        yield configs
        yield from self._connections()
        yield from self._resilience()
        yield GaugeMetricFamily(
            "remoteit_proxy_clock_offset_seconds",
            "This machine's clock minus the API's (positive: ahead), from its Date headers",
            value=self.offset(),
        )

    def _connections(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "remoteit_proxy_open_connections",
            "Client connections open",
            value=self.open_connections,
        )
        yield GaugeMetricFamily(
            "remoteit_proxy_max_connections",
            "The cap on client connections (--max-connections); a few more answer /-/ only",
            value=self.max_connections,
        )
        yield CounterMetricFamily(
            "remoteit_proxy_connections_refused",
            "Client connections closed unserved because the cap was reached",
            value=self.connections_refused,
        )
        yield CounterMetricFamily(
            "remoteit_proxy_descriptor_limit_hits",
            "Connections the proxy failed to accept for lack of file descriptors",
            value=self.descriptor_limit_hits,
        )
        timeouts = CounterMetricFamily(
            "remoteit_proxy_client_timeouts",
            "Client connections closed for want of progress: in the header, body or answer",
            labels=["reason"],
        )
        for reason, count in self.client_timeouts.items():
            timeouts.add_metric([reason], count)
        yield timeouts

    def _resilience(self) -> Iterator[Metric]:
        retries = CounterMetricFamily(
            "remoteit_proxy_upstream_retries",
            "Requests sent upstream again, by reason (throttled, unavailable, connection, clock)",
            labels=["reason"],
        )
        for reason, count in sorted(self.retries.items()):
            retries.add_metric([reason], count)
        yield retries
        limited = CounterMetricFamily(
            "remoteit_proxy_rate_limited",
            "Requests answered 429 by a local limit, by client and limit (rate, concurrency)",
            labels=["client", "limit"],
        )
        for (client, limit), count in sorted(self.limited.items()):
            limited.add_metric([client, limit], count)
        yield limited
        yield GaugeMetricFamily(
            "remoteit_proxy_upstream_queued",
            "Requests waiting for a place under --max-upstream-concurrency",
            value=self.queued,
        )
        yield CounterMetricFamily(
            "remoteit_proxy_coalesced",
            "Requests answered with an identical query's answer (--coalesce-queries)",
            value=self.coalesced,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
