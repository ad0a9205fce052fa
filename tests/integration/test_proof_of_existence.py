"""A replica that syncs long after an anchor was written still learns its earliest proof-of-existence bound.

The node serves the oldest final checkpoint covering an entry (specs/api.md
A.7.2, ``?covering=I``), and :class:`tools.client.replica.Replica` stores those
checkpoints next to the newest one, so the credential verifier's view finds
the first final checkpoint covering an anchor, not only the newest.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ledger.checkpoint import open_checkpoint
from tools.client.http import NodeClient
from tools.client.replica import Replica

if TYPE_CHECKING:
    from tests.integration.conftest import Net

pytestmark = pytest.mark.integration


def test_late_replica_gets_the_first_covering_checkpoint(net: Net, tmp_path: Path) -> None:
    issuer, key, reg = net.register_issuer("VN", "poe-coo")
    net.submit("VN", reg)
    anchor = net.anchors("VN", issuer, key, 1, tag="early")
    first = net.submit("VN", anchor)
    anchor_index = first["indices"][0]
    early_size = first["final_size"]
    time.sleep(1.2)  # later rounds get later witness timestamps
    net.submit("VN", net.anchors("VN", issuer, key, 5, tag="late"))
    net.wait_final("VN", early_size + 5, nodes=["TH"])

    # The node answers the oldest final checkpoint covering the anchor, verifiable like any other.
    resp = net.get("TH", f"/logs/VN/checkpoint?covering={anchor_index}")
    assert resp.status == 200, resp
    cp, times = open_checkpoint(resp.body, net.log_verifier("VN"), net.cosigners())
    assert anchor_index < cp.size <= early_size
    newest, newest_times = net.verified_checkpoint("TH", "VN")
    assert newest.size > cp.size
    assert net.get("TH", "/logs/VN/checkpoint?covering=100000").status == 404
    assert net.get("TH", "/logs/VN/checkpoint?covering=x").status == 400

    # A replica synced only now stores it, and the view's proof of existence rests on it.
    with Replica.bootstrap(tmp_path / "replica", [NodeClient(net.url("TH"))], net.genesis.root_hash) as rep:
        rep.sync([NodeClient(net.url("TH"))], int(time.time()))
        cps = rep.final_checkpoints()["VN"]
        sizes = [c.size for c in cps]
        assert cp.size in sizes and newest.size in sizes
        covering = next(c for c in cps if c.size > anchor_index)
        assert covering.size == cp.size
        assert sorted(times.values())[net.genesis.root.faulty] <= sorted(newest_times.values())[
            net.genesis.root.faulty]
