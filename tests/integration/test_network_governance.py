"""A second governance root, signed by the threshold of members, is adopted by every node (A.11).

Version 2 changes one member's endpoints (with four members and f = 1,
quorum and threshold must stay 3). It is posted to one node, which verifies,
adopts and forwards it; every node then reports version 2, and an entry
written under root version 2 is accepted and made final by all. Roots that
do not verify are refused with 4xx and adopted nowhere.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from typing import TYPE_CHECKING

import pytest

from ledger.bodies import IssuerRegister
from ledger.entries import make_entry
from ledger.roots import Root, SignedRoot

if TYPE_CHECKING:
    from tests.integration.conftest import Net

pytestmark = pytest.mark.integration


def _root_v2(net: Net, endpoint: str, previous: bytes | None = None) -> Root:
    genesis = net.genesis.root
    members = tuple(dataclasses.replace(m, endpoints=(*m.endpoints, endpoint)) if m.id == "KH" else m
                    for m in genesis.members)
    return Root(network=genesis.network, version=2, previous=previous or genesis.root_hash, members=members,
                quorum=genesis.quorum, threshold=genesis.threshold, faulty=genesis.faulty,
                issued_at=int(time.time()))


def _signed(net: Net, root: Root, signers: list[str]) -> bytes:
    return SignedRoot.create(root, [net.admin_key(m) for m in signers]).to_cbor()


def _versions(net: Net, node: str) -> dict[str, object]:
    resp = net.get(node, "/governance/roots")
    assert resp.status == 200, resp
    doc: dict[str, object] = resp.json()
    return doc


def _root_posts(net: Net, node: str) -> int:
    """How many POST /governance/roots the node has answered (from its Prometheus metrics)."""
    text = net.get(node, "/metrics").body.decode()
    total = 0
    for line in text.splitlines():
        if line.startswith("mekong_http_requests_total{") and 'route="/governance/roots"' in line \
                and 'method="POST"' in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def _post_root(net: Net, node: str, body: bytes) -> tuple[int, dict[str, str]]:
    resp = net.post(node, "/governance/roots", body)
    return resp.status, resp.json()


def test_invalid_roots_are_refused_and_not_adopted(net: Net) -> None:
    assert net.genesis.root.threshold == 3
    root = _root_v2(net, "http://127.0.0.1:9/")
    cases = {
        "too few signatures": _signed(net, root, ["KH", "LA"]),
        "signed by a node key": SignedRoot.create(root, [net.node_key(m) for m in ("KH", "LA", "TH")]).to_cbor(),
        "wrong previous": _signed(net, _root_v2(net, "http://127.0.0.1:9/", previous=b"\x01" * 32),
                                  ["KH", "LA", "TH"]),
        "skips a version": _signed(net, dataclasses.replace(root, version=3), ["KH", "LA", "TH"]),
    }
    for what, body in cases.items():
        status, doc = _post_root(net, "LA", body)
        assert 400 <= status < 500 and doc["error"] and doc["message"], (what, status, doc)
    time.sleep(1.0)  # time enough for a (wrong) forward and a sync round
    for node in net.ids:
        assert _versions(net, node)["current"] == 1, node


def test_valid_root_is_adopted_by_every_node(net: Net) -> None:
    root = _root_v2(net, "http://127.0.0.1:9/")
    body = _signed(net, root, ["KH", "TH", "VN"])  # the threshold, 3 of 4
    before = {node: _root_posts(net, node) for node in net.ids}
    status, doc = _post_root(net, "LA", body)
    assert status == 200 and doc == {"version": 2}, doc
    net.wait_until("every node adopts root version 2", lambda: all(
        _versions(net, n)["current"] == 2 and _versions(net, n)["current_hash"] == root.root_hash.hex()
        for n in net.ids), timeout=10)
    for node in net.ids:
        resp = net.get(node, "/governance/roots/2")
        assert resp.status == 200 and SignedRoot.from_cbor(resp.body).root == root
    # Each node forwards a root only when it is new to it: a few POSTs each, not a flood.
    time.sleep(1.0)
    posts = {node: _root_posts(net, node) - before[node] for node in net.ids}
    assert all(n <= len(net.ids) for n in posts.values()), posts
    # The same root again is answered 200, unchanged.
    assert _post_root(net, "VN", body) == (200, {"version": 2})
    # A different valid version 2 is equivocation: refused, and version 2 stays the first one.
    other = _signed(net, _root_v2(net, "http://127.0.0.1:10/"), ["KH", "LA", "TH", "VN"])
    status, doc = _post_root(net, "TH", other)
    assert status == 409 and doc["error"] == "equivocation", doc
    # ... and kept as evidence (spec 7.1.8), exactly as received.
    conn = sqlite3.connect(f"file:{net.database('TH')}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute("SELECT log, kind, data FROM evidence WHERE kind = 'root-equivocation'").fetchall()
    finally:
        conn.close()
    assert [(r[0], r[1]) for r in rows] == [("governance", "root-equivocation")], rows
    assert SignedRoot.from_cbor(bytes(rows[0][2])).payload == SignedRoot.from_cbor(other).payload
    for node in net.ids:
        assert _versions(net, node)["current_hash"] == root.root_hash.hex(), node


def test_entries_under_root_version_2_become_final_everywhere(net: Net) -> None:
    net.wait_until("every node is at root version 2", lambda: all(
        _versions(net, n)["current"] == 2 for n in net.ids), timeout=10)
    now = net.now("TH")
    entry = make_entry("TH", "issuer.register", now, IssuerRegister(
        "TH/fda", "Thai FDA", ("certificate-of-origin",), "high", "TH"), net.admin_key("TH"), root=2)
    answer = net.submit("TH", [entry])
    net.wait_final("TH", answer["size"])
    for node in net.ids:
        cp, _ = net.verified_checkpoint(node, "TH")
        assert cp.size == answer["size"]
