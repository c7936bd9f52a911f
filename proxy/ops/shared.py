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


_GAUGES = ("in_flight", "queued", "open_connections", "max_connections")
_SCALARS = (*_GAUGES, "coalesced", "connections_refused", "descriptor_limit_hits")


def add(total: Metrics, snap: dict[str, Any], reloads: dict[str, int]) -> None:
    """Add one worker's snapshot into ``total`` (and its credential reloads into ``reloads``)."""
    for method, status, count in snap["requests"]:
        total.requests[(method, status)] = total.requests.get((method, status), 0) + count
    for client, rule, count in snap["refusals"]:
        total.refusals[(client, rule)] = total.refusals.get((client, rule), 0) + count
    for client, limit, count in snap["limited"]:
        total.limited[(client, limit)] = total.limited.get((client, limit), 0) + count
    for name in ("upstream_errors", "retries", "client_timeouts"):
        counts: dict[str, int] = getattr(total, name)
        for key, count in snap[name].items():
            counts[key] = counts.get(key, 0) + count
    # Every worker reloads on the same SIGHUP: the service's count is the highest worker's
    # (added up, one SIGHUP would count once per worker).
    for key, count in snap["config_reloads"].items():
        total.config_reloads[key] = max(total.config_reloads.get(key, 0), count)
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
    second and at every scrape), and the scrape it answers made of every worker's.

    A worker started in place of one that died goes on from the counts its predecessor last
    published: the service's counters never go backwards (which Prometheus would read as a
    restart of the whole service). Its gauges start from nothing, as its connections do.
    """

    def __init__(self, directory: Path, worker: int, metrics: Metrics) -> None:
        self._directory, self._metrics = directory, metrics
        self._path = directory / f"worker-{worker}.json"
        self._before: dict[str, Any] | None = None
        try:
            before = json.loads(self._path.read_text())
            before.update(dict.fromkeys(_GAUGES, 0))
            add(_empty(), before, {})  # whole and readable, or not used
        except FileNotFoundError:
            pass  # the first of its number
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("the metrics of the worker replaced are lost (%s): %s", self._path, exc)
        else:
            self._before = before

    def _numbers(self) -> dict[str, Any]:
        """This worker's numbers, and its predecessors' counts."""
        if self._before is None:
            return snapshot(self._metrics)
        reloads: dict[str, int] = {}
        total = Metrics(lambda: reloads, self._metrics.offset)
        add(total, self._before, reloads)
        add(total, snapshot(self._metrics), reloads)
        # Its own config reloads come on top of its predecessor's (max is for across workers).
        for key, count in self._metrics.config_reloads.items():
            total.config_reloads[key] = self._before["config_reloads"].get(key, 0) + count
        return snapshot(total)

    def publish(self) -> None:
        temporary = self._path.with_suffix(".tmp")
        try:
            temporary.write_text(json.dumps(self._numbers()))
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


def _empty() -> Metrics:
    return Metrics(dict, lambda: 0)
