"""Tests for ledger.finality: the governance line, which keys count, finality and witnessed time (spec 4.3.5, 7.4)."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

import pytest
from test_memberlog import NETWORK, T0, Net, _key, anchors, make_net, setup_entries

from ledger.checkpoint import Checkpoint, CosignatureSigner, add_signatures, log_origin, sign_checkpoint, witness_name
from ledger.errors import AuthorizationError, DecodeError, VerificationError
from ledger.finality import (
    Finality,
    Witnesses,
    checkpoint_extensions,
    count_cosignatures,
    governance_line,
    named_root,
    open_signed,
    root_reference,
    witnessed_time,
)
from ledger.governance import GovernanceChain
from ledger.memberlog import MemberLog
from ledger.note import NoteSigner
from ledger.registry import RegistryState
from ledger.roots import Root, SignedRoot
from ledger.storage import Storage


@pytest.fixture(scope="module")
def net() -> Net:
    return make_net()


def rotate_node_key(net: Net, member: str, label: str) -> tuple[SignedRoot, object]:
    """Root version 2: ``member``'s node key replaced; signed by every member of version 1."""
    g = net.genesis.root
    new_key = _key(label)
    members = tuple(dataclasses.replace(m, node_key=bytes(new_key.verify_key)) if m.id == member else m
                    for m in g.members)
    v2 = Root(NETWORK, 2, g.root_hash, members, g.quorum, g.threshold, g.faulty, T0 + 100)
    return SignedRoot.create(v2, net.admin.values()), new_key


def chain_with(net: Net, *later: SignedRoot) -> GovernanceChain:
    chain = net.chain()
    for s in later:
        chain.add(s)
    return chain


def signed_note(net: Net, root: Root, log: str, size: int, root_hash: bytes, cosigners: dict[str, int],
                keys: dict[str, object] | None = None) -> bytes:
    keys = {**net.node, **(keys or {})}
    cp = Checkpoint(log_origin(NETWORK, log), size, root_hash, checkpoint_extensions(root, bytes(32)))
    note = sign_checkpoint(cp, NoteSigner(cp.origin, keys[log]))  # type: ignore[arg-type]
    lines = [CosignatureSigner(witness_name(NETWORK, m), keys[m]).cosign(cp, t)  # type: ignore[arg-type]
             for m, t in cosigners.items()]
    return add_signatures(note, lines).to_bytes()


# --------------------------------------------------------------------------- the governance line (spec 4.3.5)


def test_governance_line_names_version_and_hash(net: Net) -> None:
    root = net.genesis.root
    line = governance_line(root)
    assert line == f"governance 1 {base64.b64encode(root.root_hash).decode()}"
    cp = Checkpoint(log_origin(NETWORK, "VN"), 3, bytes(32), (line,))
    assert root_reference(cp) == (1, root.root_hash)
    assert Checkpoint.parse(cp.format()) == cp  # an ordinary C2SP extension line: the note stays readable


@pytest.mark.parametrize("extensions", [
    (), ("governance 1",), ("governance 01 " + "A" * 43 + "=",), ("governance 1 " + "A" * 44,),
    ("state " + "A" * 43 + "=",), ("governance -1 " + "A" * 43 + "=",), ("governance 1 " + "A" * 43 + "= x",),
], ids=["none", "no-hash", "leading-zero", "not-32-bytes", "other-keyword", "negative", "trailing"])
def test_malformed_governance_line_is_refused(extensions: tuple[str, ...]) -> None:
    cp = Checkpoint(log_origin(NETWORK, "VN"), 3, bytes(32), extensions)
    with pytest.raises(DecodeError, match="governance"):
        root_reference(cp)


def test_named_root_must_be_held_with_its_hash(net: Net) -> None:
    chain = net.chain()
    root = chain.current
    ok = Checkpoint(log_origin(NETWORK, "VN"), 3, bytes(32), checkpoint_extensions(root, bytes(32)))
    assert named_root(ok, chain) is root
    ahead = Checkpoint(ok.origin, 3, bytes(32), (f"governance 2 {base64.b64encode(root.root_hash).decode()}",))
    with pytest.raises(VerificationError, match="version 2, which is not known here"):
        named_root(ahead, chain)
    wrong = Checkpoint(ok.origin, 3, bytes(32), (f"governance 1 {base64.b64encode(bytes(32)).decode()}",))
    with pytest.raises(VerificationError, match="hashes to"):
        named_root(wrong, chain)


# --------------------------------------------------------------------------- which keys count


def test_quorum_and_witnessed_time(net: Net) -> None:
    chain = net.chain()
    root = chain.current
    times = {"VN": T0 + 9, "KH": T0 + 3, "LA": T0 + 5}
    _, cp, fin = open_signed(signed_note(net, root, "VN", 5, bytes(32), times), chain, "VN")
    assert (cp.size, fin.root_version, dict(fin.cosigners)) == (5, 1, times)
    assert not fin.final and fin.witnessed_time is None
    with pytest.raises(VerificationError, match="final needs 4"):
        fin.require_final()
    times["TH"] = T0 + 1
    _, _, fin = open_signed(signed_note(net, root, "VN", 5, bytes(32), times), chain, "VN")
    assert fin.final and fin.require_final() is fin
    assert fin.witnessed_time == T0 + 3  # faulty = 1: the second smallest time


def test_witnessed_time_is_the_f_plus_1th_smallest() -> None:
    assert [witnessed_time([40, 10, 30, 50], f) for f in range(5)] == [10, 30, 40, 50, None]
    fin = Finality("VN", 3, 1, {"A": 5, "B": 1, "C": 9}, quorum=3, faulty=1)
    assert fin.witnessed_time == 5
    assert dataclasses.replace(fin, quorum=4).witnessed_time is None


def test_cosignature_counts_with_the_key_of_the_root_it_was_made_under(net: Net) -> None:
    # KH's node key is rotated by root version 2. A checkpoint made under version 1 keeps counting
    # KH's cosignature by the old key; one made under version 2 counts only the new key (spec 7.4.3).
    v2, new_kh = rotate_node_key(net, "KH", "node KH v2")
    chain = chain_with(net, v2)
    cosigners = {"VN": T0, "KH": T0, "LA": T0, "TH": T0}
    _, _, old = open_signed(signed_note(net, net.genesis.root, "VN", 5, bytes(32), cosigners), chain, "VN")
    assert old.final and old.root_version == 1 and "KH" in old.cosigners
    under_v2 = signed_note(net, v2.root, "VN", 6, bytes(32), cosigners)  # KH still signs with the old key
    _, _, fin = open_signed(under_v2, chain, "VN")
    assert fin.root_version == 2 and "KH" not in fin.cosigners and not fin.final
    rotated = signed_note(net, v2.root, "VN", 6, bytes(32), cosigners, keys={"KH": new_kh})
    assert open_signed(rotated, chain, "VN")[2].final


def test_owner_signature_is_checked_with_the_named_roots_owner_key(net: Net) -> None:
    v2, new_vn = rotate_node_key(net, "VN", "node VN v2")
    chain = chain_with(net, v2)
    cosigners = {"KH": T0, "LA": T0, "TH": T0, "CN": T0}
    # Made under version 1 with the old key: still the owner's checkpoint.
    assert open_signed(signed_note(net, net.genesis.root, "VN", 5, bytes(32), cosigners), chain, "VN")[2].final
    # Claiming version 2 but signed with the old key: not the owner's.
    with pytest.raises(VerificationError, match="not signed"):
        open_signed(signed_note(net, v2.root, "VN", 5, bytes(32), cosigners), chain, "VN")
    assert open_signed(signed_note(net, v2.root, "VN", 5, bytes(32), cosigners, keys={"VN": new_vn}),
                       chain, "VN")[2].final


def test_open_signed_refuses_other_logs_and_bad_lines(net: Net) -> None:
    chain = net.chain()
    data = signed_note(net, chain.current, "VN", 5, bytes(32), {"KH": T0})
    with pytest.raises(VerificationError, match="origin"):
        open_signed(data, chain, "TH")
    with pytest.raises(DecodeError):
        open_signed(b"not a note", chain, "VN")


def test_count_ignores_strangers_and_bad_lines(net: Net) -> None:
    root = net.genesis.root
    witnesses = Witnesses(NETWORK, root)
    cp = Checkpoint(log_origin(NETWORK, "VN"), 5, bytes(32), checkpoint_extensions(root, bytes(32)))
    good = CosignatureSigner(witness_name(NETWORK, "KH"), net.node["KH"]).cosign(cp, T0 + 4)
    early = CosignatureSigner(witness_name(NETWORK, "KH"), net.node["KH"]).cosign(cp, T0 + 1)
    stranger = CosignatureSigner(witness_name(NETWORK, "SG"), _key("node SG")).cosign(cp, T0)
    other_cp = dataclasses.replace(cp, root_hash=b"\x01" * 32)
    forged = CosignatureSigner(witness_name(NETWORK, "LA"), net.node["LA"]).cosign(other_cp, T0)
    assert count_cosignatures(cp, [good, early, stranger, forged], witnesses) == {"KH": T0 + 1}
    with pytest.raises(AuthorizationError):
        witnesses.verify(cp, stranger)
    with pytest.raises(VerificationError):
        witnesses.verify(cp, forged)


def test_member_log_finality_survives_a_witness_key_rotation(net: Net, tmp_path: Path) -> None:
    # Spec 7.4.3: a checkpoint that was final stays final after a later root rotates a witness's node key.
    store = Storage.open(tmp_path / "node.db")
    store.put_root(1, net.genesis.to_cbor())
    chain = net.chain()
    log = MemberLog(store, "VN", NETWORK, RegistryState(chain), net.node["VN"])
    log.append(setup_entries(net, "VN") + anchors(net, "VN", 2))
    cp = Checkpoint.parse(log.checkpoint(T0).text)
    log.add_cosignatures(cp.size, [CosignatureSigner(witness_name(NETWORK, m), net.node[m]).cosign(cp, T0 + 1)
                                   for m in ("KH", "LA", "TH")])
    before = log.finality()
    assert before is not None and before.final
    v2, _ = rotate_node_key(net, "KH", "node KH v2")
    chain.add(v2)
    after = log.finality()
    assert after == before and after.root_version == 1
    log.close()
    store.close()
