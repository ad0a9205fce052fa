"""An expired governance head, on real node processes and the real CLI (spec 5.4.3).

A root's ``expires`` bounds how long it may serve as the head: past it, a node or verifier that has seen
nothing newer has been kept from a newer root (a freeze), or the network forgot to renew it. Nodes then
refuse to append and to cosign, ``mekong verify`` answers INDETERMINATE/TRY_LATER naming the expired
root, and ``mekong audit replay`` reports it. Adopting a newer root ends it.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ledger import cbor
from ledger.bodies import CredentialAnchor
from ledger.entries import make_entry
from ledger.roots import Root, SignedRoot
from tools.devnet import network as dn

if TYPE_CHECKING:
    from tests.integration.conftest import Net

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
COO_CLAIMS = REPO / "tests" / "tools" / "coo.json"


def _head(net: Net) -> Root:
    return net.chain().current


def _adopt(net: Net, root: Root) -> None:
    signed = SignedRoot.create(root, [net.admin_key(m) for m in ("KH", "LA", "TH")])
    assert net.post("KH", "/governance/roots", signed.to_cbor()).status == 200
    net.wait_until(f"every node adopts root version {root.version}", lambda: all(
        net.get(n, "/governance/roots").json()["current"] == root.version for n in net.ids), timeout=20)


def test_an_expired_head_stops_nodes_and_verifiers_until_a_newer_root(net: Net, tmp_path: Path) -> None:
    issuer, key, entries = net.register_issuer("VN", "coo")
    net.wait_final("VN", net.submit("VN", entries)["size"])
    pp = ("--passphrase-env", dn.PASSPHRASE_ENV)
    net.write_keys(tmp_path, {"issuer.key": key, "th-admin.key": net.admin_key("TH")})
    net.mekong_ok(tmp_path, "policy", "set", "--member", "TH", "--recognise", "VN:certificate-of-origin:substantial",
        "--node", net.url("TH"), "--key", "th-admin.key", *pp)
    net.mekong_ok(tmp_path, "credential", "issue", "--profile", "certificate-of-origin", "--claims", COO_CLAIMS, "--issuer",
        issuer, "--key", "issuer.key", "--out", "coo.cbor", "--exp", "2100-01-01", *pp)
    net.mekong_ok(tmp_path, "credential", "anchor", "coo.cbor", "--node", net.url("VN"), "--key", "issuer.key", *pp)
    # Version 2 expires in a few seconds; nothing newer follows in time.
    g = _head(net)
    expires = int(time.time()) + 4
    _adopt(net, Root(g.network, 2, g.root_hash, g.members, g.quorum, g.threshold, g.faulty, int(time.time()),
                     expires))
    time.sleep(max(0.0, expires - time.time()) + 1.0)
    # Nodes refuse to append under it...
    body = CredentialAnchor(issuer, hashlib.sha256(b"anchored after the head expired").digest())
    late = make_entry("VN", "credential.anchor", net.now("VN"), body, key, root=2)
    resp = net.post("VN", "/logs/VN/entries", cbor.encode([late]))
    assert resp.status == 422 and "expired" in resp.json()["message"], resp
    # ... a verifier answers INDETERMINATE/TRY_LATER, naming the expired root ...
    r = net.mekong(tmp_path, "verify", "coo.cbor", "--node", net.url("TH"), "--as-member", "TH", "--genesis",
                net.devnet.genesis, "--pin", net.genesis.root_hash.hex(), "--json")
    assert r.returncode == 2, r.stdout + r.stderr
    report = json.loads(r.stdout)
    assert report["indication"] == "INDETERMINATE" and report["sub_indication"] == "TRY_LATER", report
    assert any(c["name"] == "governance-current" and str(expires) in c["detail"] for c in report["checks"]), report
    # ... and an auditor's replay reports it.
    r = net.mekong(tmp_path, "audit", "replay", "--node", net.url("LA"), "--genesis", net.devnet.genesis, "--pin",
                net.genesis.root_hash.hex())
    assert r.returncode == 1 and f"expired at {expires}" in r.stdout, r.stdout + r.stderr
    # A newer root ends it: the same anchor, under version 3, becomes final, and the verifier passes.
    v2 = _head(net)
    _adopt(net, Root(v2.network, 3, v2.root_hash, v2.members, v2.quorum, v2.threshold, v2.faulty, int(time.time())))
    answer = net.submit("VN", [make_entry("VN", "credential.anchor", net.now("VN"), body, key, root=3)])
    net.wait_final("VN", answer["size"])
    r = net.mekong(tmp_path, "verify", "coo.cbor", "--node", net.url("TH"), "--as-member", "TH", "--genesis",
                net.devnet.genesis, "--pin", net.genesis.root_hash.hex())
    assert r.returncode == 0, r.stdout + r.stderr
