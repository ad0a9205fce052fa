"""The node's metrics, on ``prometheus-client`` (specs/api.md section A.5).

Counters, gauges and histograms with labels, rendered in the Prometheus text exposition format by the
library the ecosystem uses. There is no global registry: :func:`node_metrics` builds one
:class:`NodeMetrics` per application on its own ``CollectorRegistry``, so tests and several in-process
nodes never share counters. The thin classes here keep the node's call style (``inc(route=...)``) and
add what the library leaves out: a bound on series per metric and collectors run before each render.

Label values come from the node's own code (route templates, status codes, error kinds, member ids),
never from raw request paths, so series stay bounded; a metric still refuses new series past
``max_series`` rather than grow without limit. The library's metrics are thread-safe.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, generate_latest

__all__ = [
    "CONTENT_TYPE", "DEFAULT_BUCKETS", "Counter", "Gauge", "Histogram", "NodeMetrics", "Registry", "node_metrics",
]  # fmt: skip

#: The Content-Type of the text exposition format 0.0.4, which ``generate_latest`` writes.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Latency buckets in seconds.
DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

log = logging.getLogger(__name__)
_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
prometheus_client.disable_created_metrics()  # no *_created series: the names stay those of spec A.5


class _Metric:
    """One metric of a :class:`Registry`: the library's metric, with bounded series."""

    def __init__(self, metric: Any, name: str, labelnames: Sequence[str], max_series: int) -> None:
        self._metric = metric
        self.name = name
        self.labelnames = tuple(labelnames)
        self.max_series = max_series
        self._series: set[tuple[str, ...]] = set()
        self._lock = threading.Lock()

    def _child(self, labels: dict[str, str], create: bool = True) -> Any:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"metric {self.name} takes labels {self.labelnames}, got {tuple(labels)}")
        if not self.labelnames:
            return self._metric
        key = tuple(str(labels[n]) for n in self.labelnames)
        with self._lock:
            if key not in self._series:
                if not create or len(self._series) >= self.max_series:
                    return None
                self._series.add(key)
        return self._metric.labels(*key)

    def _sample(self, suffix: str, labels: dict[str, str]) -> float:
        child = self._child(labels, create=False)
        if child is None:
            return 0
        for metric in child.collect():
            for sample in metric.samples:
                if sample.name == self.name + suffix or (suffix == "" and sample.name == self.name):
                    return float(sample.value)
        return 0


class Counter(_Metric):
    """A monotonically increasing count. Name it ``..._total``."""

    def inc(self, amount: float = 1, **labels: str) -> None:
        """Add ``amount`` (>= 0) to the series named by ``labels``.

        Raises:
            ValueError: negative amount, or labels that differ from the metric's.
        """
        if amount < 0:
            raise ValueError("a counter only goes up")
        child = self._child(labels)
        if child is not None:
            child.inc(amount)

    def value(self, **labels: str) -> float:
        """The current value of one series (0 if it was never touched)."""
        return self._sample("", labels)


class Gauge(_Metric):
    """A value that goes up and down, or is set."""

    def set(self, value: float, **labels: str) -> None:
        """Set the series named by ``labels`` to ``value``.

        Raises:
            ValueError: labels that differ from the metric's.
        """
        child = self._child(labels)
        if child is not None:
            child.set(value)

    def inc(self, amount: float = 1, **labels: str) -> None:
        """Add ``amount`` to the series."""
        child = self._child(labels)
        if child is not None:
            child.inc(amount)

    def dec(self, amount: float = 1, **labels: str) -> None:
        """Subtract ``amount`` from the series."""
        child = self._child(labels)
        if child is not None:
            child.dec(amount)

    def remove(self, **labels: str) -> None:
        """Forget one series (for example a peer that left the network)."""
        key = tuple(str(labels[n]) for n in self.labelnames)
        with self._lock:
            if key in self._series:
                self._series.discard(key)
                self._metric.remove(*key)

    def value(self, **labels: str) -> float:
        """The current value of one series (0 if it was never set)."""
        return self._sample("", labels)


class Histogram(_Metric):
    """Observations counted into cumulative buckets, with their sum and count."""

    def observe(self, value: float, **labels: str) -> None:
        """Record one observation.

        Raises:
            ValueError: labels that differ from the metric's.
        """
        child = self._child(labels)
        if child is not None:
            child.observe(value)

    def count(self, **labels: str) -> int:
        """Number of observations in one series."""
        return int(self._sample("_count", labels))


class Registry:
    """The metrics of one node on their own ``CollectorRegistry``, and collectors run before each render."""

    def __init__(self, max_series: int = 10_000) -> None:
        self._registry = CollectorRegistry(auto_describe=True)
        self._collectors: list[Callable[[], None]] = []
        self._names: set[str] = set()
        self._max_series = max_series

    def _name(self, name: str, labelnames: Sequence[str]) -> None:
        if not _NAME_RE.fullmatch(name):
            raise ValueError(f"bad metric name {name!r}")
        for label in labelnames:
            if not _LABEL_RE.fullmatch(label) or label.startswith("__") or label == "le":
                raise ValueError(f"bad label name {label!r} for metric {name}")
        if len(set(labelnames)) != len(labelnames):
            raise ValueError(f"duplicate label names for metric {name}")
        if name in self._names:
            raise ValueError(f"metric {name} is already registered")
        self._names.add(name)

    def counter(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> Counter:
        """Create and register a :class:`Counter` (the exposed name is ``name``, ending in ``_total``).

        Raises:
            ValueError: bad or duplicate name, bad label names.
        """
        self._name(name, labelnames)
        base = name.removesuffix("_total")
        metric = prometheus_client.Counter(base, help_text, labelnames, registry=self._registry)
        return Counter(metric, name, labelnames, self._max_series)

    def gauge(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> Gauge:
        """Create and register a :class:`Gauge`.

        Raises:
            ValueError: bad or duplicate name, bad label names.
        """
        self._name(name, labelnames)
        metric = prometheus_client.Gauge(name, help_text, labelnames, registry=self._registry)
        return Gauge(metric, name, labelnames, self._max_series)

    def histogram(self, name: str, help_text: str, labelnames: Sequence[str] = (), *,
                  buckets: Sequence[float] = DEFAULT_BUCKETS) -> Histogram:
        """Create and register a :class:`Histogram`.

        Raises:
            ValueError: bad or duplicate name, bad label names or buckets.
        """
        self._name(name, labelnames)
        metric = prometheus_client.Histogram(name, help_text, labelnames, buckets=buckets, registry=self._registry)
        return Histogram(metric, name, labelnames, self._max_series)

    def add_collector(self, collect: Callable[[], None]) -> None:
        """Run ``collect`` before every render, to set gauges from live state.

        A collector that raises is skipped for that render; the others still run.
        """
        self._collectors.append(collect)

    def names(self) -> Iterable[str]:
        """The registered metric names, sorted."""
        return sorted(self._names)

    def render(self) -> str:
        """The text exposition format of every metric, collectors run first."""
        for collect in list(self._collectors):
            try:
                collect()
            except Exception:  # a broken collector must not break /metrics
                log.exception("metrics collector %r failed", collect)
        return generate_latest(self._registry).decode("utf-8")


@dataclass(frozen=True, slots=True)
class NodeMetrics:
    """The node's metrics, all in one :class:`Registry` (specs/api.md section A.5).

    Attributes:
        registry: the registry rendered at ``/metrics``.
        requests: HTTP requests by route template, method and status.
        request_seconds: HTTP request latency by route template and method.
        in_flight: requests being handled now.
        errors: error responses by error kind (the ``error`` field of the body).
        submissions_rejected: refused entry submissions by reason (set by the submission handler).
        log_size: entries stored per log.
        final_size: size of the latest final checkpoint per log.
        witness_lag_entries: entries between a log's size and the latest checkpoint a witness cosigned.
        witness_lag_seconds: seconds since a witness last cosigned a checkpoint of a log.
        client_errors: connections and requests clients broke or sent malformed, by exception kind (the log
            shows one line per kind and minute, :mod:`node.logfilter`).
    """

    registry: Registry
    requests: Counter
    request_seconds: Histogram
    in_flight: Gauge
    errors: Counter
    submissions_rejected: Counter
    log_size: Gauge
    final_size: Gauge
    witness_lag_entries: Gauge
    witness_lag_seconds: Gauge
    client_errors: Counter


def node_metrics() -> NodeMetrics:
    """Build a fresh registry with the node's metrics."""
    r = Registry()
    return NodeMetrics(
        registry=r,
        requests=r.counter("mekong_http_requests_total", "HTTP requests handled.", ("route", "method", "status")),
        request_seconds=r.histogram("mekong_http_request_duration_seconds", "HTTP request latency.",
                                    ("route", "method")),
        in_flight=r.gauge("mekong_http_requests_in_flight", "HTTP requests being handled."),
        errors=r.counter("mekong_http_errors_total", "Error responses by error kind.", ("kind",)),
        submissions_rejected=r.counter("mekong_submissions_rejected_total", "Entry submissions refused, by reason.",
                                       ("reason",)),
        log_size=r.gauge("mekong_log_size_entries", "Entries stored per log.", ("log",)),
        final_size=r.gauge("mekong_log_final_size_entries", "Size of the latest final checkpoint per log.",
                           ("log",)),
        witness_lag_entries=r.gauge("mekong_witness_lag_entries",
                                    "Entries between a log's size and the checkpoint a witness last cosigned.",
                                    ("log", "witness")),
        witness_lag_seconds=r.gauge("mekong_witness_lag_seconds",
                                    "Seconds since a witness last cosigned a checkpoint of a log.",
                                    ("log", "witness")),
        client_errors=r.counter("mekong_client_errors_total",
                                "Connections and requests clients broke off or sent malformed, by kind.", ("kind",)),
    )
