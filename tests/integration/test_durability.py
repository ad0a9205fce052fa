"""What a node acknowledged survives SIGTERM and ``kill -9`` (spec 7.2, node/server.py).

Two clients keep submitting small batches of anchors to VN while VN is
stopped. A batch is *acknowledged* when the node answered 200 with its
indices; a batch whose request failed is *in flight*: the node may or may not
have stored it. After the restart VN must hold every acknowledged entry at the
index it was acknowledged with, nothing that was never sent, and each
in-flight batch whole or not at all (a batch is one transaction); its
database replays cleanly, and its witnesses accept its next checkpoint as
consistent with what they cosigned before.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from ledger import cbor

if TYPE_CHECKING:
    from tests.integration.conftest import Net

pytestmark = pytest.mark.integration

BATCH = 20
CLIENTS = 2


class Client(threading.Thread):
    """Submits its batches one after another until one fails or it is told to stop."""

    def __init__(self, url: str, batches: list[list[bytes]]) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.batches = batches
        self.acked: list[tuple[list[int], list[bytes]]] = []
        self.in_flight: list[bytes] | None = None
        self.halt = threading.Event()

    def run(self) -> None:
        host, port = self.url.removeprefix("http://").split(":")
        for batch in self.batches:
            if self.halt.is_set():
                return
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
            try:
                conn.request("POST", "/logs/VN/entries", cbor.encode(batch), {"Content-Type": "application/cbor"})
                resp = conn.getresponse()
                body = resp.read()
            except (OSError, http.client.HTTPException):
                self.in_flight = batch
                return
            finally:
                conn.close()
            if resp.status != 200:  # e.g. 503 while shutting down: refused, so not stored
                self.in_flight = batch
                return
            self.acked.append((json.loads(body)["indices"], batch))


def _run_and_stop(net: Net, stop: Callable[[], None]) -> dict[str, Any]:
    issuer, key, reg = net.register_issuer("VN", "customs")
    base = net.submit("VN", reg)["size"]
    pool = net.anchors("VN", issuer, key, CLIENTS * 60 * BATCH)
    clients = [Client(net.url("VN"), [pool[j:j + BATCH] for j in range(i * 60 * BATCH, (i + 1) * 60 * BATCH, BATCH)])
               for i in range(CLIENTS)]
    for c in clients:
        c.start()
    deadline = time.monotonic() + 20
    while sum(len(c.acked) for c in clients) * BATCH < 300 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert all(c.is_alive() for c in clients), "the clients ran out of batches before the node was stopped"
    stop()
    for c in clients:
        c.halt.set()
        c.join(30)
    net.start("VN")
    acked = [(idx, batch) for c in clients for idx, batch in c.acked]
    in_flight = [c.in_flight for c in clients if c.in_flight is not None]
    assert acked, "nothing was acknowledged"
    return {"base": base, "acked": acked, "in_flight": in_flight, "sent": {r for c in clients for b in c.batches
                                                                          for r in b}}


def _check(net: Net, run: dict[str, Any]) -> int:
    size = net.status("VN")["logs"]["VN"]["size"]
    stored: list[bytes] = []
    while len(stored) < size:
        resp = net.get("VN", f"/logs/VN/entries?start={len(stored)}&end={size}")
        assert resp.status == 200, resp
        stored += cbor.decode(resp.body)
    # Every acknowledged entry is stored at the index it was acknowledged with.
    for indices, batch in run["acked"]:
        assert [stored[i] for i in indices] == batch
    # Nothing else but whole in-flight batches.
    acked_raws = {r for _, b in run["acked"] for r in b}
    extra = [r for r in stored[run["base"]:] if r not in acked_raws]
    assert set(extra) <= run["sent"], "the log holds entries nobody sent"
    for batch in run["in_flight"]:
        present = [r in set(stored) for r in batch]
        assert all(present) or not any(present), "an in-flight batch was stored in part"
    whole = sum(len(b) for b in run["in_flight"] if b[0] in set(stored))
    assert size == run["base"] + len(acked_raws) + whole
    assert len(set(stored)) == size, "an entry is stored twice"
    return int(size)


def _replays_cleanly_and_carries_on(net: Net, size: int) -> None:
    log = net.node_log("VN")
    assert "replay:" not in log and "does not replay" not in log, log[-3000:]
    # The witnesses accept VN's next checkpoint: consistent with everything they cosigned before.
    _issuer, _key, reg = net.register_issuer("VN", f"after-{size}")
    new = net.submit("VN", reg)["size"]
    assert new == size + 2
    net.wait_final("VN", new)
    for node in net.ids:
        cp, _ = net.verified_checkpoint(node, "VN")
        assert cp.size == new


def test_sigterm_loses_nothing_acknowledged(devnets: Callable[..., Net]) -> None:
    net = devnets()
    run = _run_and_stop(net, lambda: net.stop("VN"))
    size = _check(net, run)
    _replays_cleanly_and_carries_on(net, size)


def test_kill_9_keeps_exactly_what_was_acknowledged(devnets: Callable[..., Net]) -> None:
    net = devnets()
    run = _run_and_stop(net, lambda: net.stop("VN", kill=True))
    size = _check(net, run)
    _replays_cleanly_and_carries_on(net, size)
