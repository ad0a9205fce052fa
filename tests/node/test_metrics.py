"""The Prometheus registry (node/metrics.py, specs/api.md section A.5)."""

from __future__ import annotations

import math

import pytest

from node.metrics import Registry, node_metrics


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
    assert r.render() == (
        "# HELP level A level.\n"
        "# TYPE level gauge\n"
        "level 3.25\n"
        "# HELP x_total Things.\\nSecond line \\\\ here\n"
        "# TYPE x_total counter\n"
        'x_total{kind="a"} 1\n'
        'x_total{kind="we\\"ird\\\\\\nvalue"} 2\n'
    )


def test_histogram_render() -> None:
    r = Registry()
    h = r.histogram("lat_seconds", "Latency.", ("route",), buckets=(0.1, 1))
    for v in (0.05, 0.1, 0.5, 3):
        h.observe(v, route="/a")
    assert h.count(route="/a") == 4 and h.count(route="/b") == 0
    assert r.render().splitlines()[2:] == [
        'lat_seconds_bucket{route="/a",le="0.1"} 2',
        'lat_seconds_bucket{route="/a",le="1"} 3',
        'lat_seconds_bucket{route="/a",le="+Inf"} 4',
        'lat_seconds_sum{route="/a"} 3.65',
        'lat_seconds_count{route="/a"} 4',
    ]


def test_special_values_and_gauge_remove() -> None:
    r = Registry()
    g = r.gauge("g", "G.", ("peer",))
    g.set(math.inf, peer="a")
    g.set(-math.inf, peer="b")
    g.set(math.nan, peer="c")
    g.set(10**20, peer="d")
    g.set(1e20, peer="e")
    text = r.render()
    for line in ('g{peer="a"} +Inf', 'g{peer="b"} -Inf', 'g{peer="c"} NaN', 'g{peer="d"} 100000000000000000000',
                 'g{peer="e"} 1e+20'):
        assert line in text
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
    with pytest.raises(ValueError, match="buckets"):
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
