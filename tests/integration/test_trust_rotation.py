"""Trust under key rotation, played as the attacker on real node processes and the real CLI (specs 5, 6.3.4, 7.4).

One four-member devnet (quorum 3, f = 1) lives through three governance roots, in order:

1. Version 2 rotates Viet Nam's admin key, as after a theft. Every node adopts it; Viet Nam's node
   writes a ``governance.adopt`` entry, so its log writes under version 2 (spec 6.2.9). The thief, who
   keeps the old admin key, tries to register an issuer under version 1 and under version 2: both are
   refused, by the rule, before anything is stored. The real admin, with the new key, still writes.
2. Version 3 rotates Cambodia's node key (a witness). Checkpoints that were final stay final on every
   node, with the same cosigners and witnessed times: a cosignature counts with the key in force when it
   was made (spec 7.4.3). A credential anchored before the rotation keeps its proof-of-existence time.
3. Version 4 rotates Viet Nam's node key (the log's owner). Restarted with its new key, the node adopts
   the root and its log becomes final again, now counting Cambodia's new key; old checkpoints stay final.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nacl.signing
import pytest

from ledger import cbor
from ledger.bodies import CredentialAnchor, IssuerRegister
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.entries import UnverifiedEntry, make_entry
from ledger.finality import checkpoint_extensions, open_signed, root_reference, state_reference
from ledger.governance import GovernanceChain
from ledger.note import Note, NoteSigner
from ledger.roots import Root, SignedRoot
from node import keystore
from tools.devnet import network as dn

if TYPE_CHECKING:
    from tests.integration.conftest import Net

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def _chain(net: Net, node: str = "KH") -> GovernanceChain:
    return net.chain(node)


def _successor(net: Net, member: str, **change: bytes | tuple[bytes, ...]) -> Root:
    head = _chain(net).current
    members = tuple(dataclasses.replace(m, **change) if m.id == member else m for m in head.members)
    return Root(head.network, head.version + 1, head.root_hash, members, head.quorum, head.threshold, head.faulty,
                int(time.time()))


def _adopt_everywhere(net: Net, signed: SignedRoot, nodes: list[str] | None = None) -> None:
    resp = net.post("KH", "/governance/roots", signed.to_cbor())
    assert resp.status == 200, resp
    version = signed.root.version
    net.wait_until(f"every node adopts root version {version}", lambda: all(
        net.get(n, "/governance/roots").json()["current"] == version for n in nodes or net.ids), timeout=20)


def _final_note(net: Net, node: str, log: str, covering: int | None = None) -> bytes:
    path = f"/logs/{log}/checkpoint" + ("" if covering is None else f"?covering={covering}")
    resp = net.get(node, path)
    assert resp.status == 200, resp
    return resp.body


def _entry_types(net: Net, log: str) -> list[str]:
    resp = net.get("TH", f"/logs/{log}/entries?start=0")
    assert resp.status == 200, resp
    return [UnverifiedEntry.decode(raw).type for raw in cbor.decode(resp.body)]


@pytest.fixture(scope="module")
def world(net: Net, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """VN registers an issuer and anchors one credential under the genesis root.

    Laos is down meanwhile, so the quorum (3 of 4) that makes the anchor final includes Cambodia's
    cosignature, whose key a later root rotates.
    """
    issuer, key, entries = net.register_issuer("VN", "moit")
    anchor = net.anchors("VN", issuer, key, 1, tag="before rotations")
    net.stop("LA")
    try:
        answer = net.submit("VN", entries + anchor)
    finally:
        net.start("LA")
    net.wait_final("VN", answer["size"])
    return {"issuer": issuer, "issuer_key": key, "anchor_index": answer["size"] - 1,
            "workdir": tmp_path_factory.mktemp("trust-rotation")}


def test_a_stolen_admin_key_writes_nothing_once_governance_rotates_it(net: Net, world: dict[str, Any]) -> None:
    stolen = net.admin_key("VN")
    new_admin = nacl.signing.SigningKey.generate()
    v2 = _successor(net, "VN", admin_keys=(bytes(new_admin.verify_key),))
    _adopt_everywhere(net, SignedRoot.create(v2, [net.admin_key(m) for m in ("KH", "LA", "TH")]))
    # Viet Nam's log adopted version 2 with an entry of its own, and its newest final checkpoint says so.
    net.wait_until("VN's log writes under version 2", lambda: "governance.adopt" in _entry_types(net, "VN"))
    net.wait_until("a final checkpoint of VN under version 2", lambda: root_reference(Checkpoint.parse(
        Note.parse(_final_note(net, "TH", "VN")).text))[0] == 2)
    size_before = net.status("VN")["logs"]["VN"]["size"]
    # The thief signs under the old root (the attack of the issue) and under the new one.
    now = net.now("VN")
    for version, rule in ((1, "spec 6.3.4"), (2, "spec 6.3.5")):
        evil = make_entry("VN", "issuer.register", now, IssuerRegister(
            "VN/evil", "Evil issuer", ("certificate-of-origin",), "high", "VN"), stolen, root=version)
        resp = net.post("VN", "/logs/VN/entries?wait=final", cbor.encode([evil]))
        assert resp.status == 403 and rule in resp.json()["message"], (version, resp)
    assert net.status("VN")["logs"]["VN"]["size"] == size_before  # nothing was stored
    # The real administrator, with the new key, writes under version 2.
    ok = make_entry("VN", "issuer.register", now, IssuerRegister(
        "VN/customs", "Viet Nam customs", ("certificate-of-origin",), "high", "VN"), new_admin, root=2)
    answer = net.submit("VN", [ok])
    net.wait_final("VN", answer["size"])


def test_a_witness_key_rotation_keeps_what_was_final(net: Net, world: dict[str, Any]) -> None:
    before = {node: net.final_size(node, "VN") for node in net.ids}
    covering = open_signed(_final_note(net, "TH", "VN", covering=world["anchor_index"]), _chain(net), "VN")[2]
    assert covering.final and "KH" in covering.cosigners
    new_kh = nacl.signing.SigningKey.generate()
    v3 = _successor(net, "KH", node_key=bytes(new_kh.verify_key))
    _adopt_everywhere(net, SignedRoot.create(v3, [net.admin_key(m) for m in ("KH", "LA", "TH")]))
    time.sleep(1.0)  # a sync round: nothing may be re-judged under the new key
    chain = _chain(net)
    for node in net.ids:
        assert (net.final_size(node, "VN") or 0) >= (before[node] or 0), node
        again = open_signed(_final_note(net, node, "VN", covering=world["anchor_index"]), chain, "VN")[2]
        assert again.final and again.witnessed_time == covering.witnessed_time, (node, again, covering)
    # Restart Cambodia's node with its new key: it witnesses again, under version 3.
    net.stop("KH")
    keystore.write_key_file(net.devnet.member("KH").node_key, new_kh, dn.passphrase(), "KH node v3",
                            opslimit=keystore.OPSLIMIT_MIN, memlimit=keystore.MEMLIMIT_MIN, overwrite=True)
    net.start("KH")
    issuer, key = _th_issuer(net)
    anchor = make_entry("TH", "credential.anchor", net.now("TH"), CredentialAnchor(
        issuer, hashlib.sha256(b"after the witness key rotation").digest()), key, root=v3.version)
    answer = net.submit("TH", [anchor])
    net.wait_final("TH", answer["size"])
    fin = open_signed(_final_note(net, "LA", "TH"), _chain(net), "TH")[2]
    assert fin.root_version == 3 and fin.final


_TH: dict[str, Any] = {}


def _th_issuer(net: Net) -> tuple[str, nacl.signing.SigningKey]:
    if not _TH:
        issuer, key, entries = net.register_issuer("TH", "customs")
        root = _chain(net).current.version
        entries = [make_entry("TH", e.type, e.time, e.body, net.admin_key("TH"), root=root)
                   for e in map(UnverifiedEntry.decode, entries)]
        net.wait_final("TH", net.submit("TH", entries)["size"])
        _TH.update(issuer=issuer, key=key)
    return _TH["issuer"], _TH["key"]


def test_the_owner_restarted_with_a_rotated_node_key_makes_its_log_final_again(
        net: Net, world: dict[str, Any]) -> None:
    new_vn = nacl.signing.SigningKey.generate()
    v4 = _successor(net, "VN", node_key=bytes(new_vn.verify_key))
    _adopt_everywhere(net, SignedRoot.create(v4, [net.admin_key(m) for m in ("KH", "LA", "TH")]))
    old_final = net.final_size("TH", "VN")
    net.stop("VN")
    world["old_vn_node_key"] = dn.load_key(net.devnet.member("VN").node_key)  # the thief keeps a copy
    keystore.write_key_file(net.devnet.member("VN").node_key, new_vn, dn.passphrase(), "VN node v4",
                            opslimit=keystore.OPSLIMIT_MIN, memlimit=keystore.MEMLIMIT_MIN, overwrite=True)
    net.start("VN")
    # The restarted owner adopts version 4 with its new key; the anchor made now becomes final under it.
    now = net.now("VN")
    anchor = make_entry("VN", "credential.anchor", now, CredentialAnchor(
        world["issuer"], hashlib.sha256(b"after the owner's key rotation").digest()), world["issuer_key"],
        root=v4.version)
    answer = net.submit("VN", [anchor])
    net.wait_final("VN", answer["size"])
    _, cp, fin = open_signed(_final_note(net, "TH", "VN"), _chain(net), "VN")
    assert fin.root_version == 4 and fin.final and cp.size > (old_final or 0)
    # The oldest checkpoint covering the first anchor is still final, under the root it was made under.
    old = open_signed(_final_note(net, "LA", "VN", covering=world["anchor_index"]), _chain(net), "VN")[2]
    assert old.final and old.root_version == 1


def test_witnesses_cosign_nothing_signed_with_the_replaced_owner_key(net: Net, world: dict[str, Any]) -> None:
    # Attack: Viet Nam's node key of versions 1 to 3 was stolen, and version 4 replaced it. The thief signs
    # VN's newest checkpoint again with it, naming version 3 (under which that key is VN's), and sends it to
    # each witness as a C2SP client would (no peer authorisation): every witness refuses it (it cosigns only
    # under its head root, spec 7.4.2), and naming version 4 does not help (the key is not VN's there).
    stolen, chain = world["old_vn_node_key"], _chain(net)
    assert chain.current.version == 4
    for witness in ("KH", "LA", "TH"):
        _, cp, fin = open_signed(_final_note(net, witness, "VN"), chain, "VN")
        assert witness in fin.cosigners  # old = its last cosigned size: nothing else stands in the way
        for version, refusal in ((3, "cosigns only under its head, version 4"), (4, "")):
            forged = sign_checkpoint(Checkpoint(cp.origin, cp.size, cp.root_hash, checkpoint_extensions(
                chain.root_at(version), state_reference(cp))), NoteSigner(cp.origin, stolen)).to_bytes()
            resp = net.post(witness, "/witness/add-checkpoint", f"old {cp.size}\n\n".encode() + forged,
                            "text/plain; charset=utf-8")
            assert resp.status == 403 and refusal in resp.body.decode(), (witness, version, resp)
        assert open_signed(_final_note(net, witness, "VN"), chain, "VN")[1].size == cp.size


def test_an_auditor_replays_the_ledger_through_every_rotation(net: Net, world: dict[str, Any]) -> None:
    # From the pinned genesis through four roots: every entry, checkpoint and cosignature checks out,
    # each under the root it was made under.
    r = net.mekong_ok(world["workdir"], "audit", "replay", "--node", net.url("LA"), "--genesis",
                      net.devnet.genesis, "--pin", net.genesis.root_hash.hex())
    assert "OK" in r.stdout
