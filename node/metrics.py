"""A small Prometheus metrics registry and the node's metric set.

Counters, gauges and histograms with labels, rendered in the Prometheus text
exposition format version 0.0.4 (specs/api.md section A.5). There is no global
registry: :func:`node_metrics` builds one :class:`NodeMetrics` per application,
so tests and several in-process nodes never share counters.

Label values come from the node's own code (route templates, status codes,
error kinds, member ids), never from raw request paths, so series stay
bounded; a metric still refuses new series past ``max_series`` rather than
grow without limit. Updates take a lock, so worker threads may update too.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "CONTENT_TYPE", "DEFAULT_BUCKETS", "Counter", "Gauge", "Histogram", "NodeMetrics", "Registry", "node_metrics",
]  # fmt: skip

#: The Content-Type of the text exposition format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Latency buckets in seconds.
DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

log = logging.getLogger(__name__)

_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

LabelKey = tuple[str, ...]


def _fmt(value: float) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = (), *, max_series: int = 10_000) -> None:
        if not _NAME_RE.fullmatch(name):
            raise ValueError(f"bad metric name {name!r}")
        for label in labelnames:
            if not _LABEL_RE.fullmatch(label) or label.startswith("__") or label == "le":
                raise ValueError(f"bad label name {label!r} for metric {name}")
        if len(set(labelnames)) != len(labelnames):
            raise ValueError(f"duplicate label names for metric {name}")
        self.name = name
        self.help = help_text
        self.labelnames = tuple(labelnames)
        self.max_series = max_series
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> LabelKey:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"metric {self.name} takes labels {self.labelnames}, got {tuple(labels)}")
        return tuple(str(labels[n]) for n in self.labelnames)

    def _labels_text(self, key: LabelKey, extra: tuple[tuple[str, str], ...] = ()) -> str:
        pairs = list(zip(self.labelnames, key)) + list(extra)
        if not pairs:
            return ""
        return "{" + ",".join(f'{n}="{_escape_label(v)}"' for n, v in pairs) + "}"

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]

    def render(self) -> list[str]:  # pragma: no cover - overridden
        raise NotImplementedError


class _ValueMetric(_Metric):
    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = (), *, max_series: int = 10_000) -> None:
        super().__init__(name, help_text, labelnames, max_series=max_series)
        self._values: dict[LabelKey, float] = {}

    def _add(self, amount: float, labels: dict[str, str]) -> None:
        key = self._key(labels)
        with self._lock:
            if key in self._values:
                self._values[key] += amount
            elif len(self._values) < self.max_series:
                self._values[key] = amount

    def value(self, **labels: str) -> float:
        """The current value of one series (0 if it was never touched)."""
        with self._lock:
            return self._values.get(self._key(labels), 0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [f"{self.name}{self._labels_text(k)} {_fmt(v)}" for k, v in items]


class Counter(_ValueMetric):
    """A monotonically increasing count. Name it ``..._total``."""

    kind = "counter"

    def inc(self, amount: float = 1, **labels: str) -> None:
        """Add ``amount`` (>= 0) to the series named by ``labels``.

        Raises:
            ValueError: negative amount, or labels that differ from the metric's.
        """
        if amount < 0:
            raise ValueError("a counter only goes up")
        self._add(amount, labels)


class Gauge(_ValueMetric):
    """A value that goes up and down, or is set."""

    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        """Set the series named by ``labels`` to ``value``.

        Raises:
            ValueError: labels that differ from the metric's.
        """
        key = self._key(labels)
        with self._lock:
            if key in self._values or len(self._values) < self.max_series:
                self._values[key] = value

    def inc(self, amount: float = 1, **labels: str) -> None:
        """Add ``amount`` to the series."""
        self._add(amount, labels)

    def dec(self, amount: float = 1, **labels: str) -> None:
        """Subtract ``amount`` from the series."""
        self._add(-amount, labels)

    def remove(self, **labels: str) -> None:
        """Forget one series (for example a peer that left the network)."""
        key = self._key(labels)
        with self._lock:
            self._values.pop(key, None)


class Histogram(_Metric):
    """Observations counted into cumulative buckets, with their sum and count."""

    kind = "histogram"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = (), *,
                 buckets: Sequence[float] = DEFAULT_BUCKETS, max_series: int = 10_000) -> None:
        super().__init__(name, help_text, labelnames, max_series=max_series)
        bounds = [float(b) for b in buckets if not math.isinf(b)]
        if not bounds or bounds != sorted(set(bounds)):
            raise ValueError(f"histogram {name}: buckets must be increasing and non-empty")
        self.buckets = tuple(bounds)
        # per series: counts per bucket (non-cumulative, last = +Inf), sum
        self._series: dict[LabelKey, tuple[list[int], list[float]]] = {}

    def observe(self, value: float, **labels: str) -> None:
        """Record one observation.

        Raises:
            ValueError: labels that differ from the metric's.
        """
        key = self._key(labels)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                if len(self._series) >= self.max_series:
                    return
                series = ([0] * (len(self.buckets) + 1), [0.0])
                self._series[key] = series
            counts, total = series
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    counts[i] += 1
                    break
            else:
                counts[-1] += 1
            total[0] += value

    def count(self, **labels: str) -> int:
        """Number of observations in one series."""
        with self._lock:
            series = self._series.get(self._key(labels))
            return 0 if series is None else sum(series[0])

    def render(self) -> list[str]:
        with self._lock:
            items = sorted((k, (list(c), s[0])) for k, (c, s) in self._series.items())
        lines = self.header()
        for key, (counts, total) in items:
            running = 0
            for bound, n in zip((*self.buckets, math.inf), counts):
                running += n
                le = (("le", _fmt(bound)),)
                lines.append(f"{self.name}_bucket{self._labels_text(key, le)} {running}")
            lines.append(f"{self.name}_sum{self._labels_text(key)} {_fmt(total)}")
            lines.append(f"{self.name}_count{self._labels_text(key)} {running}")
        return lines


class Registry:
    """A set of uniquely named metrics and collectors, rendered together."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}
        self._collectors: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def _register(self, metric: _Metric) -> None:
        with self._lock:
            if metric.name in self._metrics:
                raise ValueError(f"metric {metric.name} is already registered")
            self._metrics[metric.name] = metric

    def counter(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> Counter:
        """Create and register a :class:`Counter`.

        Raises:
            ValueError: bad or duplicate name, bad label names.
        """
        metric = Counter(name, help_text, labelnames)
        self._register(metric)
        return metric

    def gauge(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> Gauge:
        """Create and register a :class:`Gauge`.

        Raises:
            ValueError: bad or duplicate name, bad label names.
        """
        metric = Gauge(name, help_text, labelnames)
        self._register(metric)
        return metric

    def histogram(self, name: str, help_text: str, labelnames: Sequence[str] = (), *,
                  buckets: Sequence[float] = DEFAULT_BUCKETS) -> Histogram:
        """Create and register a :class:`Histogram`.

        Raises:
            ValueError: bad or duplicate name, bad label names or buckets.
        """
        metric = Histogram(name, help_text, labelnames, buckets=buckets)
        self._register(metric)
        return metric

    def add_collector(self, collect: Callable[[], None]) -> None:
        """Run ``collect`` before every render, to set gauges from live state.

        A collector that raises is skipped for that render; the others still run.
        """
        self._collectors.append(collect)

    def metrics(self) -> Iterable[_Metric]:
        """The registered metrics, by name."""
        with self._lock:
            return [self._metrics[n] for n in sorted(self._metrics)]

    def render(self) -> str:
        """The text exposition format of every metric, collectors run first."""
        for collect in list(self._collectors):
            try:
                collect()
            except Exception:  # a broken collector must not break /metrics
                log.exception("metrics collector %r failed", collect)
        lines: list[str] = []
        for metric in self.metrics():
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"


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
    )
