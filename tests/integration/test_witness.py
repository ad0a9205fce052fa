"""A witness refuses checkpoints inconsistent with what it verified, and keeps them as evidence.

The test plays a malicious owner of log VN: it holds VN's real node key (read
from the devnet's key file) and sends checkpoints straight to the KH witness
with a valid Mekong-Node Authorization header. C2SP tlog-witness statuses:
409 with ``text/x.tlog.size`` for a wrong ``old`` size, 404 for an unknown
origin, 403 for a signature by no trusted key, and 409 or 422 for a
checkpoint that does not extend what the witness verified. Refused signed
checkpoints end up in the witness's SQLite ``evidence`` table.

To reach the fork case where the witness holds the entries but has not
cosigned them (so ``old`` can be its last cosigned size while the forged
checkpoint lies about entries it verified), KH is stopped while VN grows and
catches up through the sync loop, which replicates without cosigning.
"""

from __future__ import annotations

import base64
import os
import sqlite3
import time
from typing import TYPE_CHECKING, Any

import nacl.signing
import pytest

from ledger import cbor, merkle
from ledger.checkpoint import Checkpoint, log_origin, sign_checkpoint
from ledger.finality import checkpoint_extensions
from ledger.note import Note, NoteSigner
from node.peerauth import sign_request

if TYPE_CHECKING:
    from tests.integration.conftest import Net, Response

pytestmark = pytest.mark.integration

PATH = "/witness/add-checkpoint"


def _body(old: int, proof: list[bytes], note: bytes) -> bytes:
    return (f"old {old}\n" + "".join(base64.b64encode(h).decode() + "\n" for h in proof) + "\n").encode() + note


def _send(net: Net, witness: str, body: bytes, as_member: str = "VN") -> Response:
    auth = sign_request(as_member, net.node_key(as_member), "POST", PATH, body, int(time.time()))
    return net.post(witness, PATH, body, "text/plain; charset=utf-8", {"Authorization": auth})


def _forge(net: Net, size: int, root: bytes, key: nacl.signing.SigningKey | None = None, log: str = "VN",
           network: str | None = None, state_root: bytes | None = None) -> bytes:
    """A checkpoint signed by ``key`` (the owner's by default), carrying the owner's true state root by default."""
    origin = log_origin(network or net.network, log)
    signer = NoteSigner(origin, key or net.node_key(log))
    if state_root is None:
        state_root = _state_root(net, log, size) if log in {m.id for m in net.devnet.members} else bytes(32)
    extensions = checkpoint_extensions(net.genesis.root, state_root)
    return sign_checkpoint(Checkpoint(origin, size, root, extensions), signer).to_bytes()


def _state_root(net: Net, log: str, size: int) -> bytes:
    """The owner's stored state root of ``log`` at ``size`` (zeros if it has none there)."""
    conn = sqlite3.connect(f"file:{net.database(log)}?mode=ro", uri=True, timeout=10)
    try:
        row = conn.execute("SELECT root FROM state_roots WHERE log = ? AND size = ?", (log, size)).fetchone()
    finally:
        conn.close()
    return bytes(row[0]) if row else bytes(32)


def _evidence(net: Net, member: str) -> list[tuple[str, str, str, bytes]]:
    """(log, kind, reason, data) rows of a running node's evidence table, read through a read-only connection."""
    uri = f"file:{net.database(member)}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=10)
    try:
        return [(r[0], r[1], r[2], bytes(r[3])) for r in
                conn.execute("SELECT log, kind, reason, data FROM evidence ORDER BY id")]
    finally:
        conn.close()


@pytest.fixture(scope="module")
def state(net: Net) -> dict[str, Any]:
    """VN at size ``cosigned`` (KH cosigned it), then at ``held`` (KH replicated it without cosigning)."""
    issuer, key, reg = net.register_issuer("VN", "customs")
    cosigned = net.submit("VN", reg + net.anchors("VN", issuer, key, 30))["size"]
    net.wait_final("VN", cosigned)
    net.wait_until("KH's cosignature is on VN's checkpoint",
                   lambda: any("/KH/" in n for n in net.verified_checkpoint("VN", "VN")[1]))
    net.stop("KH")
    held = net.submit("VN", net.anchors("VN", issuer, key, 40, tag="while KH was down"))["size"]
    net.start("KH")
    net.wait_final("VN", held, ["KH"])
    raws: list[bytes] = []
    while len(raws) < held:
        resp = net.get("KH", f"/logs/VN/entries?start={len(raws)}&end={held}")
        raws += cbor.decode(resp.body)
    real, _ = net.verified_checkpoint("KH", "VN")
    assert real.size == held
    return {"cosigned": cosigned, "held": held, "raws": raws, "real": real, "issuer": issuer, "key": key}


def test_wrong_old_size_is_409_with_the_witness_size(net: Net, state: dict[str, Any]) -> None:
    note = net.get("VN", "/logs/VN/checkpoint").body  # genuine, final, signed by VN
    for old in (0, state["cosigned"] + 1):
        resp = _send(net, "KH", _body(old, [], note))
        assert resp.status == 409, resp
        assert resp.content_type == "text/x.tlog.size"
        assert resp.body == f"{state['cosigned']}\n".encode(), "the witness must tell its last cosigned size"


def test_fork_with_valid_looking_proof_is_refused_and_kept(net: Net, state: dict[str, Any]) -> None:
    cosigned, held, raws = state["cosigned"], state["held"], state["raws"]
    # A tree that agrees with the real log up to `cosigned` and then holds other entries.
    fake = merkle.MemoryTree([merkle.leaf_hash(r) for r in raws[:cosigned]] +
                             [merkle.leaf_hash(os.urandom(40)) for _ in range(held - cosigned)])
    forged_root = fake.root(held)
    assert forged_root != state["real"].root_hash
    forged = _forge(net, held, forged_root)
    before = len(_evidence(net, "KH"))
    resp = _send(net, "KH", _body(cosigned, fake.consistency_proof(cosigned, held), forged))
    assert resp.status in (409, 422), resp
    assert resp.json()["error"] == "conflict", resp
    rows = _evidence(net, "KH")[before:]
    assert [(r[0], r[1]) for r in rows] == [("VN", "root-mismatch")], rows
    assert rows[0][3] == forged, "the evidence is the refused checkpoint as received"
    # The witness still has not cosigned anything new.
    assert _send(net, "KH", _body(0, [], forged)).body == f"{cosigned}\n".encode()


def test_fork_with_a_genuine_proof_is_kept_against_its_root(net: Net, state: dict[str, Any]) -> None:
    cosigned, held, raws = state["cosigned"], state["held"], state["raws"]
    real_tree = merkle.MemoryTree([merkle.leaf_hash(r) for r in raws])
    forged = _forge(net, held, bytes(32))
    before = len(_evidence(net, "KH"))
    resp = _send(net, "KH", _body(cosigned, real_tree.consistency_proof(cosigned, held), forged))
    assert resp.status == 409 and resp.json()["error"] == "conflict", resp
    rows = _evidence(net, "KH")[before:]
    assert [(r[0], r[1]) for r in rows] == [("VN", "root-mismatch")], rows
    assert rows[0][3] == forged


def test_garbage_proofs_for_an_honest_checkpoint_blame_nobody(net: Net, state: dict[str, Any]) -> None:
    # Anyone may replay the owner's genuine checkpoint with a garbage proof: a bad request, not evidence
    # against the owner, and the message says what failed (Trust II item 5).
    cosigned, held = state["cosigned"], state["held"]
    genuine = _forge(net, held, state["real"].root_hash)
    before = len(_evidence(net, "KH"))
    for i in range(30):
        resp = _send(net, "KH", _body(cosigned, [bytes([i]) * 32] * 3, genuine))
        assert resp.status == 422, resp
        assert "does not verify" in resp.body.decode() and "roots differ" not in resp.body.decode(), resp
    assert _evidence(net, "KH")[before:] == []


def test_wrong_state_root_is_refused_and_kept(net: Net, state: dict[str, Any]) -> None:
    # Scale issue: the owner signs the true tree root but a state root that is not the state of those entries
    # (say, one that hides a revocation). The witness recomputed the state itself: 409, and the note is evidence.
    cosigned, held, raws = state["cosigned"], state["held"], state["raws"]
    real_tree = merkle.MemoryTree([merkle.leaf_hash(r) for r in raws])
    true_state = _state_root(net, "VN", held)
    assert true_state != bytes(32)
    for lie in (bytes(32), _state_root(net, "VN", cosigned)):  # nothing, or a stale state
        forged = _forge(net, held, state["real"].root_hash, state_root=lie)
        before = len(_evidence(net, "KH"))
        resp = _send(net, "KH", _body(cosigned, real_tree.consistency_proof(cosigned, held), forged))
        assert resp.status == 409 and "state root" in resp.json()["message"], resp
        rows = _evidence(net, "KH")[before:]
        assert [(r[0], r[1], r[3]) for r in rows] == [("VN", "state-mismatch", forged)], rows


def test_other_root_at_the_cosigned_size_is_refused_and_kept(net: Net, state: dict[str, Any]) -> None:
    cosigned = state["cosigned"]
    forged = _forge(net, cosigned, b"\x42" * 32)
    before = len(_evidence(net, "KH"))
    resp = _send(net, "KH", _body(cosigned, [], forged))
    assert resp.status in (409, 422), resp
    rows = _evidence(net, "KH")[before:]
    assert len(rows) == 1 and rows[0][0] == "VN" and rows[0][3] == forged, rows


def test_unknown_origin_is_404(net: Net, state: dict[str, Any]) -> None:
    key = nacl.signing.SigningKey.generate()
    for log, network in (("ZZ", None), ("VN", "othernet")):
        resp = _send(net, "KH", _body(0, [], _forge(net, 1, bytes(32), key, log=log, network=network)))
        assert resp.status == 404, (log, network, resp)


def test_bad_signature_is_403(net: Net, state: dict[str, Any]) -> None:
    held, real = state["held"], state["real"]
    # Signed by a key that is not VN's node key, under VN's origin.
    stranger = _forge(net, held, real.root_hash, nacl.signing.SigningKey.generate())
    resp = _send(net, "KH", _body(state["cosigned"], [], stranger))
    assert resp.status == 403, resp
    # VN's key id, but the signature bytes of another checkpoint.
    genuine = Note.parse(_forge(net, held, real.root_hash))
    other = Note.parse(_forge(net, held - 1, real.root_hash))
    spliced = Note(genuine.text, other.signatures).to_bytes()
    resp = _send(net, "KH", _body(state["cosigned"], [], spliced))
    assert resp.status == 403, resp


def test_witness_still_cosigns_the_honest_log(net: Net, state: dict[str, Any]) -> None:
    size = net.submit("VN", net.anchors("VN", state["issuer"], state["key"], 10, tag="after the forgeries"))["size"]
    net.wait_final("VN", size)
    net.wait_until("KH cosigns VN's honest checkpoint", lambda: (
        (cp_cosigs := net.verified_checkpoint("VN", "VN"))[0].size == size
        and any("/KH/" in n for n in cp_cosigs[1])))
    assert net.get("KH", "/healthz").status == 200
    kinds = {r[1] for r in _evidence(net, "KH")}
    assert kinds == {"root-mismatch", "state-mismatch"}
