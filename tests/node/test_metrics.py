"""The Prometheus registry (node/metrics.py, specs/api.md section A.5)."""

from __future__ import annotations

import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from node.metrics import Registry, node_metrics


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a rendering, parsed by prometheus-client's own parser: (name, labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_counter_gauge_render() -> None:
    r = Registry()
    c = r.counter("x_total", "Things.\nSecond line \\ here", ("kind",))
    g = r.gauge("level", "A level.")
    c.inc(kind="a")
    c.inc(2, kind='we"ird\\\nvalue')
    g.set(2.5)
    g.inc()
    g.dec(0.25)
    assert c.value(kind="a") == 1 and c.value(kind="none") == 0 and g.value() == 3.25
    text = r.render()
    assert "# TYPE x_total counter" in text and "# TYPE level gauge" in text and "_created" not in text
    assert _samples(text) == {("level", ()): 3.25, ("x_total", (("kind", "a"),)): 1,
                              ("x_total", (("kind", 'we"ird\\\nvalue'),)): 2}


def test_histogram_render() -> None:
    r = Registry()
    h = r.histogram("lat_seconds", "Latency.", ("route",), buckets=(0.1, 1))
    for v in (0.05, 0.1, 0.5, 3):
        h.observe(v, route="/a")
    assert h.count(route="/a") == 4 and h.count(route="/b") == 0
    samples = _samples(r.render())
    a = (("route", "/a"),)
    assert [samples[("lat_seconds_bucket", tuple(sorted((*a, ("le", le)))))] for le in ("0.1", "1.0", "+Inf")] \
        == [2, 3, 4]
    assert samples[("lat_seconds_sum", a)] == pytest.approx(3.65) and samples[("lat_seconds_count", a)] == 4


def test_special_values_and_gauge_remove() -> None:
    r = Registry()
    g = r.gauge("g", "G.", ("peer",))
    g.set(math.inf, peer="a")
    g.set(-math.inf, peer="b")
    g.set(math.nan, peer="c")
    g.set(1e20, peer="e")
    samples = _samples(r.render())
    assert samples[("g", (("peer", "a"),))] == math.inf and samples[("g", (("peer", "b"),))] == -math.inf
    assert math.isnan(samples[("g", (("peer", "c"),))]) and samples[("g", (("peer", "e"),))] == 1e20
    g.remove(peer="a")
    assert 'peer="a"' not in r.render()


def test_misuse_is_refused() -> None:
    r = Registry()
    r.counter("a_total", "A.")
    with pytest.raises(ValueError, match="already registered"):
        r.gauge("a_total", "again")
    for name, labels in (("bad name", ()), ("ok", ("bad-label",)), ("ok2", ("__x",)), ("ok3", ("le",)),
                         ("ok4", ("a", "a"))):
        with pytest.raises(ValueError):
            r.counter(name, "x", labels)
    c = r.counter("b_total", "B.", ("x",))
    with pytest.raises(ValueError, match="takes labels"):
        c.inc(y="1")
    with pytest.raises(ValueError, match="only goes up"):
        c.inc(-1, x="1")
    with pytest.raises(ValueError, match="(?i)buckets"):
        r.histogram("h", "H.", buckets=(1, 0.5))


def test_series_are_bounded() -> None:
    r = Registry()
    c = r.counter("c_total", "C.", ("k",))
    c.max_series = 3
    for i in range(10):
        c.inc(k=str(i))
    c.inc(k="0")
    assert r.render().count("c_total{") == 3 and c.value(k="0") == 2


def test_collectors_run_before_render_and_failures_are_contained() -> None:
    m = node_metrics()
    calls: list[int] = []

    def good() -> None:
        calls.append(1)
        m.log_size.set(len(calls), log="VN")

    def bad() -> None:
        raise RuntimeError("collector broke")

    m.registry.add_collector(bad)
    m.registry.add_collector(good)
    assert 'mekong_log_size_entries{log="VN"} 1' in m.registry.render()
    assert 'mekong_log_size_entries{log="VN"} 2' in m.registry.render()


def test_node_metrics_are_per_instance() -> None:
    a, b = node_metrics(), node_metrics()
    a.requests.inc(route="/x", method="GET", status="200")
    assert b.requests.value(route="/x", method="GET", status="200") == 0
