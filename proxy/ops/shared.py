"""Metrics of several worker processes: each publishes its numbers, a scrape adds them all up."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from .metrics import Metrics

log = logging.getLogger("proxy.metrics")


def snapshot(metrics: Metrics) -> dict[str, Any]:
    """Every number a worker counts, as JSON can hold it (gauges are summed too: requests in
    flight, connections open, queued requests are the service's when added up)."""
    return {
        "requests": [[m, s, n] for (m, s), n in metrics.requests.items()],
        "refusals": [[c, r, n] for (c, r), n in metrics.refusals.items()],
        "limited": [[c, k, n] for (c, k), n in metrics.limited.items()],
        "upstream_errors": metrics.upstream_errors,
        "retries": metrics.retries,
        "client_timeouts": metrics.client_timeouts,
        "config_reloads": metrics.config_reloads,
        "credential_reloads": metrics.reloads(),
        "duration": [metrics.duration.counts, metrics.duration.sum],
        "upstream_duration": [metrics.upstream_duration.counts, metrics.upstream_duration.sum],
        **{name: getattr(metrics, name) for name in _SCALARS},
    }


_SCALARS = (
    "in_flight",
    "coalesced",
    "queued",
    "open_connections",
    "max_connections",
    "connections_refused",
    "descriptor_limit_hits",
)


def add(total: Metrics, snap: dict[str, Any], reloads: dict[str, int]) -> None:
    """Add one worker's snapshot into ``total`` (and its credential reloads into ``reloads``)."""
    for method, status, count in snap["requests"]:
        total.requests[(method, status)] = total.requests.get((method, status), 0) + count
    for client, rule, count in snap["refusals"]:
        total.refusals[(client, rule)] = total.refusals.get((client, rule), 0) + count
    for client, limit, count in snap["limited"]:
        total.limited[(client, limit)] = total.limited.get((client, limit), 0) + count
    for name in ("upstream_errors", "retries", "client_timeouts", "config_reloads"):
        counts: dict[str, int] = getattr(total, name)
        for key, count in snap[name].items():
            counts[key] = counts.get(key, 0) + count
    for key, count in snap["credential_reloads"].items():
        reloads[key] = reloads.get(key, 0) + count
    for name in ("duration", "upstream_duration"):
        histogram = getattr(total, name)
        counts_of, seconds = snap[name]
        histogram.counts = [a + b for a, b in zip(histogram.counts, counts_of, strict=True)]
        histogram.sum += seconds
    for name in _SCALARS:
        setattr(total, name, getattr(total, name) + snap[name])


class SharedMetrics:
    """One worker's part: its numbers written to ``directory`` (``publish``, about once a
    second and at every scrape), and the scrape it answers made of every worker's."""

    def __init__(self, directory: Path, worker: int, metrics: Metrics) -> None:
        self._directory, self._metrics = directory, metrics
        self._path = directory / f"worker-{worker}.json"

    def publish(self) -> None:
        temporary = self._path.with_suffix(".tmp")
        try:
            temporary.write_text(json.dumps(snapshot(self._metrics)))
            os.replace(temporary, self._path)  # whole or not at all for a reader
        except OSError as exc:
            log.warning("cannot publish this worker's metrics in %s: %s", self._directory, exc)

    def render(self) -> bytes:
        """Prometheus text for the whole service: this worker's numbers now, the others' as
        they last published them."""
        self.publish()
        reloads: dict[str, int] = {}
        total = Metrics(lambda: reloads, self._metrics.offset)
        for path in sorted(self._directory.glob("worker-*.json")):
            try:
                add(total, json.loads(path.read_text()), reloads)
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a worker just replaced: its file is written again in a moment
        return total.render()
