"""Replayed entries, played as the attacker on real node processes and the real CLI (spec 6.3.18).

Anyone can copy an entry's bytes off the ledger and submit them again. A log holds each entry once: a
re-submission is answered 409 ``duplicate`` naming the index where the log already holds it, and changes
nothing. The attack of the issue: an issuer suspends a credential after having reinstated it once; the
attacker resubmits the logged "reinstate" to make the credential pass again.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ledger import cbor
from ledger.bodies import MemberPolicy, PolicyRule
from ledger.entries import UnverifiedEntry, make_entry
from tools.devnet import network as dn

if TYPE_CHECKING:
    from tests.integration.conftest import Net

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
COO_CLAIMS = REPO / "tests" / "tools" / "coo.json"


def _entries(net: Net, log: str) -> list[bytes]:
    resp = net.get("TH", f"/logs/{log}/entries?start=0")
    assert resp.status == 200, resp
    return list(cbor.decode(resp.body))


def _size(net: Net, log: str) -> int:
    size: int = net.status(log)["logs"][log]["size"]
    return size


def test_the_same_entry_fifty_times_in_one_request_is_refused_whole(net: Net) -> None:
    policy = make_entry("KH", "member.policy", net.now("KH"), MemberPolicy((PolicyRule("VN", ("*",), "low"),)),
                        net.admin_key("KH"))
    before = _size(net, "KH")
    resp = net.post("KH", "/logs/KH/entries", cbor.encode([policy] * 50))
    assert resp.status == 409 and resp.json()["error"] == "duplicate", resp
    assert f"entry {before}" in resp.json()["message"] and "nothing was stored" in resp.json()["message"]
    assert _size(net, "KH") == before
    index = net.submit("KH", [policy])["size"] - 1
    resp = net.post("KH", "/logs/KH/entries", cbor.encode([policy]))
    assert resp.status == 409 and f"at index {index}" in resp.json()["message"], resp
    assert _size(net, "KH") == index + 1


def test_a_replayed_reinstate_does_not_lift_a_later_suspension(net: Net, tmp_path: Path) -> None:
    issuer, key, entries = net.register_issuer("VN", "coo")
    net.wait_final("VN", net.submit("VN", entries)["size"])
    net.write_keys(tmp_path, {"issuer.key": key, "th-admin.key": net.admin_key("TH")})
    pp = ("--passphrase-env", dn.PASSPHRASE_ENV)
    vn, th = net.url("VN"), net.url("TH")
    th_admin = tmp_path / "th-admin.key"
    net.mekong_ok(tmp_path, "policy", "set", "--member", "TH", "--recognise", "VN:certificate-of-origin:substantial",
        "--node", th, "--key", th_admin, *pp)
    net.mekong_ok(tmp_path, "credential", "issue", "--profile", "certificate-of-origin", "--claims", COO_CLAIMS, "--issuer",
        issuer, "--key", "issuer.key", "--out", "coo.cbor", "--exp", "2100-01-01", *pp)
    net.mekong_ok(tmp_path, "credential", "anchor", "coo.cbor", "--node", vn, "--key", "issuer.key", *pp)
    net.mekong_ok(tmp_path, "credential", "suspend", "coo.cbor", "--reason", "inspection", "--node", vn, "--key",
        "issuer.key", *pp)
    net.mekong_ok(tmp_path, "credential", "reinstate", "coo.cbor", "--node", vn, "--key", "issuer.key", *pp)
    reinstate = next(raw for raw in reversed(_entries(net, "VN")) if UnverifiedEntry.decode(raw).type ==
                     "credential.status")
    reinstate_index = _entries(net, "VN").index(reinstate)
    net.mekong_ok(tmp_path, "credential", "suspend", "coo.cbor", "--reason", "fraud suspected", "--node", vn, "--key",
        "issuer.key", *pp)
    before = _size(net, "VN")
    # The attack: the logged reinstate, byte for byte, once more.
    resp = net.post("VN", "/logs/VN/entries?wait=final", cbor.encode([reinstate]))
    assert resp.status == 409 and resp.json()["error"] == "duplicate", resp
    assert f"at index {reinstate_index}" in resp.json()["message"], resp
    assert _size(net, "VN") == before
    net.wait_final("VN", before)
    verify = net.mekong(tmp_path, "verify", "coo.cbor", "--node", th, "--as-member", "TH", "--genesis",
                     net.devnet.genesis, "--pin", net.genesis.root_hash.hex(), "--json")
    assert verify.returncode == 2, verify.stdout + verify.stderr
    assert '"SUSPENDED"' in verify.stdout
