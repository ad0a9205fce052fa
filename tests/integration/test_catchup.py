"""Nodes that were not there catch up from their peers (specs/api.md A.10).

With four members, f = 1 and quorum 3, the three others keep making their
logs final while one node is missing; when it comes (back), its sync loop
fetches the final checkpoints and the entries they cover, verifies them and
ends up with the same final sizes and roots as everyone else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from ledger import cbor

if TYPE_CHECKING:
    from tests.integration.conftest import Net

pytestmark = pytest.mark.integration


def _write(net: Net, log: str, name: str, anchors: int) -> int:
    """Register an issuer on ``log`` and anchor ``anchors`` credentials; the log's new size."""
    issuer, key, reg = net.register_issuer(log, name)
    net.submit(log, reg)
    answer = net.submit(log, net.anchors(log, issuer, key, anchors))
    return int(answer["size"])


def _same_everywhere(net: Net, sizes: dict[str, int]) -> None:
    """Every node holds exactly these final sizes, and the same checkpoint roots."""
    for log, size in sizes.items():
        net.wait_sizes_equal(log, size)
        roots = {}
        for node in net.ids:
            cp, _ = net.verified_checkpoint(node, log)
            assert cp.size == size
            roots[node] = cp.root_hash
        assert len(set(roots.values())) == 1, f"log {log}: nodes disagree on the root at {size}: {roots}"


def _entries(net: Net, node: str, log: str, size: int) -> list[bytes]:
    got: list[bytes] = []
    while len(got) < size:
        resp = net.get(node, f"/logs/{log}/entries?start={len(got)}&end={size}")
        assert resp.status == 200, resp
        got += cbor.decode(resp.body)
    return got


def test_node_started_empty_catches_up(devnets: Callable[..., Net]) -> None:
    net = devnets(start=["LA", "TH", "VN"])
    assert not net.running("KH")
    sizes = {"VN": _write(net, "VN", "customs", 300), "TH": _write(net, "TH", "customs", 40)}
    for log, size in sizes.items():
        net.wait_final(log, size, ["LA", "TH", "VN"])
    net.start("KH")
    _same_everywhere(net, sizes)
    assert _entries(net, "KH", "VN", sizes["VN"]) == _entries(net, "VN", "VN", sizes["VN"])
    # The newcomer is a full witness from now on: its cosignature appears on VN's next checkpoint.
    answer = net.submit("VN", net.register_issuer("VN", "later")[2])
    net.wait_until("KH cosigns VN's newest checkpoint", lambda: "KH" in _cosigners(net, "VN", answer["size"]))


def _cosigners(net: Net, log: str, size: int) -> set[str]:
    """Members whose cosignature on ``log``'s checkpoint of ``size`` the owner node serves."""
    cp, cosigs = net.verified_checkpoint(log, log)
    if cp.size != size:
        return set()
    return {name.split("/")[2] for name in cosigs}


def test_node_down_for_a_while_catches_up(devnets: Callable[..., Net]) -> None:
    net = devnets()
    before = {"VN": _write(net, "VN", "customs", 50)}
    net.wait_final("VN", before["VN"])
    net.stop("KH")  # SIGTERM
    assert not net.running("KH")
    sizes = {"VN": _write(net, "VN", "customs-2", 250), "LA": _write(net, "LA", "customs", 30)}
    # Final without KH: LA, TH and VN's own cosignature make the quorum of 3.
    for log, size in sizes.items():
        net.wait_final(log, size, ["LA", "TH", "VN"])
        cp, cosigs = net.verified_checkpoint(log, log)
        assert cp.size == size and not any("/KH/" in name for name in cosigs)
    net.start("KH")
    _same_everywhere(net, sizes)
    assert _entries(net, "KH", "LA", sizes["LA"]) == _entries(net, "LA", "LA", sizes["LA"])
    # KH's own log still works after the restart, and the others witness it.
    size = _write(net, "KH", "customs", 5)
    _same_everywhere(net, {"KH": size})
