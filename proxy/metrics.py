"""Prometheus metrics: bounded labels only (no paths, no ids), one registry per proxy."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _Live(Collector):
    """Values read at scrape time from the running proxy rather than pushed per request."""

    def __init__(self, reloads: Callable[[], dict[str, int]], offset: Callable[[], int]) -> None:
        self._reloads, self._offset = reloads, offset

    def collect(self) -> Iterator[Metric]:
        reloads = CounterMetricFamily(
            "remoteit_proxy_credential_reloads", "Credential reloads by result", labels=["result"]
        )
        for result in ("success", "error"):
            reloads.add_metric([result], self._reloads().get(result, 0))
        yield reloads
        yield GaugeMetricFamily(
            "remoteit_proxy_clock_offset_seconds",
            "Upstream clock minus this machine's clock, estimated from Date headers",
            value=self._offset(),
        )


class Metrics:
    """The proxy's metrics in a registry of its own (several proxies can share a process)."""

    def __init__(self, reloads: Callable[[], dict[str, int]], offset: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "remoteit_proxy_requests",
            "Requests answered, by method and status",
            ["method", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "remoteit_proxy_request_duration_seconds",
            "Time to answer a request in full",
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.upstream_duration = Histogram(
            "remoteit_proxy_upstream_duration_seconds",
            "Time from sending a request upstream to its response headers",
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "remoteit_proxy_in_flight_requests", "Requests being handled", registry=self.registry
        )
        self.upstream_errors = Counter(
            "remoteit_proxy_upstream_errors",
            "Upstream failures, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.registry.register(_Live(reloads, offset))
        self._request_children: dict[tuple[str, int], Counter] = {}

    def observe(self, method: str, status: int, seconds: float, upstream: float | None) -> None:
        """Record one answered request."""
        key = (method if method in METHODS else "other", status)
        child = self._request_children.get(key)
        if child is None:  # labels() takes a lock and formats strings: do it once per pair
            child = self._request_children[key] = self.requests.labels(key[0], str(status))
        child.inc()
        self.duration.observe(seconds)
        if upstream is not None:
            self.upstream_duration.observe(upstream)

    def render(self) -> bytes:
        return generate_latest(self.registry)
