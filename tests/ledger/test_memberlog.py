"""Tests for ledger.memberlog: atomic verified appends, checkpoints, cosignatures, finality, proofs.

The helpers at the top (:class:`Net`, :func:`make_net`, :func:`anchors`) are
also used by test_replay.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import nacl.signing
import pytest

from ledger import merkle
from ledger.bodies import CredentialAnchor, IssuerKeyAdd, IssuerRegister
from ledger.checkpoint import Checkpoint, CosignatureSigner, open_checkpoint, witness_name
from ledger.entries import make_entry
from ledger.errors import AuthorizationError, ConflictError, DecodeError, StorageError, VerificationError
from ledger.governance import GovernanceChain
from ledger.keys import key_id
from ledger.memberlog import MemberLog, RuleBreach, TargetTree
from ledger.note import Note, NoteSignature, NoteVerifier
from ledger.registry import RegistryState
from ledger.roots import Member, Root, SignedRoot
from ledger.storage import Storage

NETWORK = "gms"
MEMBERS = ("CN", "KH", "LA", "MM", "TH", "VN")
T0 = 1_700_000_000


def _key(label: str) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(hashlib.sha256(label.encode()).digest())


@dataclass
class Net:
    """A six-member test network: keys, genesis, and an issuer key per member."""

    genesis: SignedRoot
    admin: dict[str, nacl.signing.SigningKey]
    node: dict[str, nacl.signing.SigningKey]
    issuer: dict[str, nacl.signing.SigningKey]

    def chain(self) -> GovernanceChain:
        return GovernanceChain.from_genesis(self.genesis, self.genesis.root_hash)

    def cosigner(self, member: str) -> CosignatureSigner:
        return CosignatureSigner(witness_name(NETWORK, member), self.node[member])


def make_net(quorum: int = 4, threshold: int = 4, faulty: int = 1) -> Net:
    admin = {m: _key(f"admin {m}") for m in MEMBERS}
    node = {m: _key(f"node {m}") for m in MEMBERS}
    issuer = {m: _key(f"issuer {m}") for m in MEMBERS}
    members = tuple(Member(m, f"Member {m}", (bytes(admin[m].verify_key),), bytes(node[m].verify_key),
                           (f"https://{m.lower()}.example",)) for m in MEMBERS)
    root = Root(NETWORK, 1, None, members, quorum, threshold, faulty, T0)
    return Net(SignedRoot.create(root, admin.values()), admin, node, issuer)


def setup_entries(net: Net, log: str, t: int = T0) -> list[bytes]:
    """Register issuer ``<log>/customs`` and add its key: two admin-signed entries."""
    issuer = f"{log}/customs"
    return [
        make_entry(log, "issuer.register", t, IssuerRegister(issuer, "Customs", ("certificate-of-origin",),
                                                             "high", log), net.admin[log]),
        make_entry(log, "issuer.key.add", t, IssuerKeyAdd(issuer, bytes(net.issuer[log].verify_key), t),
                   net.admin[log]),
    ]


def anchors(net: Net, log: str, n: int, first: int = 0, t: int = T0 + 10) -> list[bytes]:
    """``n`` credential anchors signed by the log's issuer key."""
    issuer = f"{log}/customs"
    return [make_entry(log, "credential.anchor", t + i, CredentialAnchor(
        issuer, hashlib.sha256(b"credential %d" % (first + i)).digest()), net.issuer[log])
        for i in range(n)]


def stranger_anchor(net: Net, log: str, i: int = 0) -> bytes:
    """A well-formed anchor signed by a key the log never added (a rule failure)."""
    return make_entry(log, "credential.anchor", T0 + 10, CredentialAnchor(
        f"{log}/customs", hashlib.sha256(b"x%d" % i).digest()), _key("stranger"))


def bad_signature(raw: bytes) -> bytes:
    """The same entry with the last signature byte flipped (a signature failure)."""
    return raw[:-1] + bytes([raw[-1] ^ 1])


@pytest.fixture(scope="module")
def net() -> Net:
    return make_net()


@pytest.fixture
def store(tmp_path: Path):
    s = Storage.open(tmp_path / "node.db")
    yield s
    s.close()


def owner_log(net: Net, store: Storage, member: str = "VN") -> MemberLog:
    store.put_root(1, net.genesis.to_cbor())
    return MemberLog(store, member, NETWORK, RegistryState(net.chain()), net.node[member])


# --------------------------------------------------------------------------- appends


def test_append_read_round_trip(net: Net, store: Storage) -> None:
    log = owner_log(net, store)
    raws = setup_entries(net, "VN") + anchors(net, "VN", 5)
    assert log.append(raws[:2]) == [0, 1]
    assert log.append(raws[2:]) == [2, 3, 4, 5, 6]
    assert log.size == 7 and log.state.size("VN") == 7
    assert log.read(0, 7) == raws
    assert store.read_leaf_hashes("VN", 0, 7) == [merkle.leaf_hash(r) for r in raws]
    assert log.root_hash() == merkle.root_from_leaf_hashes([merkle.leaf_hash(r) for r in raws])
    assert log.state.issuer("VN/customs") is not None
    log.close()


@pytest.mark.parametrize("spoil", ["decode", "rule", "signature", "other-log"])
def test_batch_is_atomic(net: Net, store: Storage, spoil: str) -> None:
    log = owner_log(net, store)
    log.append(setup_entries(net, "VN"))
    good = anchors(net, "VN", 6)
    bad = {"decode": b"\xd2garbage", "rule": stranger_anchor(net, "VN"),
           "signature": bad_signature(good[3]),
           "other-log": anchors(net, "TH", 1)[0]}[spoil]
    batch = good[:3] + [bad] + good[4:]
    before_root = log.root_hash()
    with pytest.raises((DecodeError, VerificationError)) as info:
        log.append(batch)
    assert "entry 5" in str(info.value)
    # Nothing stored, state unchanged.
    assert log.size == 2 and store.size("VN") == 2 and log.state.size("VN") == 2
    assert log.root_hash() == before_root
    assert {lv for lv, _, _ in store.iter_nodes("VN")} == {1}
    assert log.state.anchors(hashlib.sha256(b"credential 0").digest()) == ()
    # The next good batch gets the right indices.
    assert log.append(good) == list(range(2, 8))
    assert log.state.size("VN") == 8
    assert len(log.state.anchors(hashlib.sha256(b"credential 0").digest())) == 1
    log.close()


def test_storage_failure_leaves_state_unchanged(net: Net, store: Storage) -> None:
    log = owner_log(net, store)
    log.append(setup_entries(net, "VN"))
    store.close()  # every write now fails inside the verifier callback
    with pytest.raises(StorageError):
        log.append(anchors(net, "VN", 3))
    assert log.state.size("VN") == 2
    log.close()


def test_replica_cannot_append_or_sign(net: Net, store: Storage) -> None:
    replica = MemberLog(store, "TH", NETWORK, RegistryState(net.chain()))
    assert not replica.owner
    with pytest.raises(AuthorizationError):
        replica.append(setup_entries(net, "TH"))
    with pytest.raises(AuthorizationError):
        replica.checkpoint()
    replica.close()


def test_wrong_node_key_refused(net: Net, store: Storage) -> None:
    with pytest.raises(VerificationError):
        MemberLog(store, "VN", NETWORK, RegistryState(net.chain()), net.node["TH"])


def test_state_and_storage_must_agree(net: Net, store: Storage) -> None:
    log = owner_log(net, store)
    log.append(setup_entries(net, "VN"))
    log.close()
    with pytest.raises(StorageError, match="replay"):
        MemberLog(store, "VN", NETWORK, RegistryState(net.chain()), net.node["VN"])


def test_append_replicated_overlap_and_conflict(net: Net, tmp_path: Path) -> None:
    with Storage.open(tmp_path / "vn.db") as vn_db, Storage.open(tmp_path / "th.db") as th_db:
        owner = owner_log(net, vn_db)
        raws = setup_entries(net, "VN") + anchors(net, "VN", 8)
        owner.append(raws)
        replica = MemberLog(th_db, "VN", NETWORK, RegistryState(net.chain()))
        assert replica.append_replicated(raws[:4], 0) == [0, 1, 2, 3]
        assert replica.append_replicated(raws[2:7], 2) == [4, 5, 6]  # overlap skipped
        assert replica.append_replicated(raws[:3], 0) == []
        with pytest.raises(StorageError):
            replica.append_replicated(raws[8:], 8)  # gap
        other = anchors(net, "VN", 1, first=99)[0]
        with pytest.raises(ConflictError) as info:
            replica.append_replicated([other], 6)
        assert info.value.evidence[0] == 6
        with pytest.raises(VerificationError):
            replica.append_replicated([bad_signature(raws[7])], 7)
        assert replica.append_replicated(raws[7:], 7) == [7, 8, 9]
        assert replica.root_hash() == owner.root_hash()
        owner.close()
        replica.close()


def test_a_replicated_range_must_lead_to_the_checkpoint_it_was_fetched_for(net: Net, tmp_path: Path) -> None:
    # spec 7.3 step 3: ranges that keep every rule but are not the checkpoint's history are refused before
    # anything is stored; the genuine ranges with their proofs are stored.
    with Storage.open(tmp_path / "vn.db") as vn_db, Storage.open(tmp_path / "th.db") as th_db:
        owner = owner_log(net, vn_db)
        raws = setup_entries(net, "VN") + anchors(net, "VN", 10)
        owner.append(raws)
        n, root = len(raws), owner.root_hash()
        replica = MemberLog(th_db, "VN", NETWORK, RegistryState(net.chain()))
        replica.append_replicated(raws[:4], 0, TargetTree(n, root, tuple(owner.consistency_proof(4, n))))
        swapped = raws[4:6] + [raws[7], raws[6]] + raws[8:]
        refusals = {
            "two entries swapped": (swapped, 4, TargetTree(n, root)),
            "one left out, then the proof of the shorter tree": (
                raws[4:6] + raws[7:9], 4, TargetTree(n, root, tuple(owner.consistency_proof(8, n)))),
            "the genuine range with another range's proof": (
                raws[4:8], 4, TargetTree(n, root, tuple(owner.consistency_proof(7, n)))),
            "the genuine range under another root": (raws[4:], 4, TargetTree(n, bytes(32))),
            "beyond the checkpoint": (raws[4:], 4, TargetTree(n - 1, owner.root_hash(n - 1))),
            "a proof where none is due": (raws[4:], 4, TargetTree(n, root, (root,))),
        }
        for what, (rng, start, target) in refusals.items():
            with pytest.raises(VerificationError, match="nothing was stored") as info:
                replica.append_replicated(rng, start, target)
            assert not isinstance(info.value, RuleBreach), what  # what a peer served blames no owner
            assert replica.size == 4, what
        # A range that leads to a checkpoint and breaks a rule: the checkpoint's own content, signed by its owner.
        spoilt = raws[4:7] + [bad_signature(raws[7])]
        tree = merkle.MemoryTree([merkle.leaf_hash(r) for r in raws[:7] + spoilt[3:]])
        with pytest.raises(RuleBreach, match="entries 4-7 lead to the checkpoint of size 8") as info:
            replica.append_replicated(spoilt, 4, TargetTree(8, tree.root()))
        assert info.value.size == 8 and replica.size == 4
        assert replica.append_replicated(raws[4:8], 4, TargetTree(n, root, tuple(owner.consistency_proof(8, n))))
        assert replica.append_replicated(raws[8:], 8, TargetTree(n, root)) == list(range(8, n))
        assert replica.root_hash() == root
        owner.close()
        replica.close()


# --------------------------------------------------------------------------- checkpoints and proofs


def test_checkpoint_and_proofs_verify(net: Net, store: Storage) -> None:
    log = owner_log(net, store)
    raws = setup_entries(net, "VN") + anchors(net, "VN", 11)
    log.append(raws[:6])
    note1 = log.checkpoint()
    log.append(raws[6:])
    note2 = log.checkpoint()
    assert log.checkpoint() == note2  # nothing new: same checkpoint
    verifier = NoteVerifier(log.origin, bytes(net.node["VN"].verify_key))
    cp1, _ = open_checkpoint(note1.to_bytes(), verifier)
    cp2, _ = open_checkpoint(note2.to_bytes(), verifier)
    assert (cp1.size, cp2.size) == (6, 13)
    assert cp1.origin == "mekong-trust-ledger/gms/VN"
    for size, cp in ((6, cp1), (13, cp2)):
        for i in range(size):
            merkle.verify_inclusion(i, size, merkle.leaf_hash(raws[i]), log.inclusion_proof(i, size), cp.root_hash)
    merkle.verify_consistency(6, 13, log.consistency_proof(6, 13), cp1.root_hash, cp2.root_hash)
    assert store.latest_checkpoint("VN") == (13, note2.to_bytes())
    with pytest.raises(StorageError):
        log.inclusion_proof(13)
    with pytest.raises(StorageError):
        log.consistency_proof(0, 13)
    log.close()


def test_replica_add_checkpoint(net: Net, tmp_path: Path) -> None:
    with Storage.open(tmp_path / "vn.db") as vn_db, Storage.open(tmp_path / "th.db") as th_db:
        owner = owner_log(net, vn_db)
        raws = setup_entries(net, "VN") + anchors(net, "VN", 4)
        owner.append(raws)
        note = owner.checkpoint()
        replica = MemberLog(th_db, "VN", NETWORK, RegistryState(net.chain()))
        replica.append_replicated(raws[:3], 0)
        with pytest.raises(VerificationError, match="replicate"):
            replica.add_checkpoint(note.to_bytes())
        replica.append_replicated(raws[3:], 3)
        # A cosignature on the note travels with it.
        cosig = net.cosigner("KH").cosign(Checkpoint.parse(note.text), T0 + 5)
        outsider = CosignatureSigner("witness.example/outsider", _key("outsider")).cosign(
            Checkpoint.parse(note.text), T0 + 6)  # a line by a key no root lists is ignored (spec 4.1.4)
        with_cosig = Note(note.text, (*note.signatures, cosig, outsider)).to_bytes()
        assert replica.add_checkpoint(with_cosig).size == 6
        assert th_db.checkpoint("VN", 6) == note.to_bytes()
        assert [c.witness for c in th_db.cosignatures("VN", 6)] == ["KH"]
        # A checkpoint of the right size with another root is a conflict.
        ext = Checkpoint.parse(note.text).extensions
        forged = Checkpoint(owner.origin, 6, b"\x07" * 32, ext)
        from ledger.checkpoint import sign_checkpoint
        from ledger.note import NoteSigner
        fake = sign_checkpoint(forged, NoteSigner(owner.origin, net.node["VN"]))
        with pytest.raises(ConflictError):
            replica.add_checkpoint(fake.to_bytes())
        # Signed by someone else: refused.
        wrong = sign_checkpoint(Checkpoint(owner.origin, 6, owner.root_hash(), ext), NoteSigner(owner.origin, net.node["TH"]))
        with pytest.raises(VerificationError):
            replica.add_checkpoint(wrong.to_bytes())
        owner.close()
        replica.close()


# --------------------------------------------------------------------------- cosignatures and finality


def test_cosignatures_and_finality(net: Net, store: Storage) -> None:
    log = owner_log(net, store)
    log.append(setup_entries(net, "VN") + anchors(net, "VN", 3))
    note = log.checkpoint()
    cp = Checkpoint.parse(note.text)
    assert log.finality() == log.finality(5)
    f = log.finality()
    assert f is not None and not f.final and f.cosigners == {} and f.quorum == 4
    # Three witnesses: not final yet (quorum 4).
    got = log.add_cosignatures(5, [net.cosigner(m).cosign(cp, T0 + t) for m, t in (("TH", 30), ("KH", 10), ("LA", 20))])
    assert got == {"TH": T0 + 30, "KH": T0 + 10, "LA": T0 + 20}
    f = log.finality()
    assert f is not None and not f.final and set(f.cosigners) == {"TH", "KH", "LA"} and f.witnessed_time is None
    # The fourth makes it final; witnessed time is the (f+1) = 2nd smallest timestamp.
    log.add_cosignatures(5, [net.cosigner("MM").cosign(cp, T0 + 40).line()])
    f = log.finality()
    assert f is not None and f.final and len(f.cosigners) == 4 and f.witnessed_time == T0 + 20
    served = log.latest_checkpoint()
    assert served is not None
    verifiers = [net.cosigner(m).verifier for m in MEMBERS if m != "VN"]
    _, times = open_checkpoint(served, NoteVerifier(log.origin, bytes(net.node["VN"].verify_key)), verifiers)
    assert len(times) == 4
    assert log.finality(3) is None
    log.close()


def test_owner_log_signature_is_not_a_cosignature_but_its_witness_cosignature_counts(net: Net, store: Storage) -> None:
    log = owner_log(net, store)
    log.append(setup_entries(net, "VN"))
    note = log.checkpoint()
    cp = Checkpoint.parse(note.text)
    log.add_cosignatures(2, [net.cosigner(m).cosign(cp, T0 + 10 * i) for i, m in enumerate(("TH", "KH", "LA"))])
    f = log.finality()
    # The log signature on the note plus three witnesses is not 4 cosignatures.
    assert f is not None and not f.final and set(f.cosigners) == {"TH", "KH", "LA"}
    # The owner's own cosignature/v1 (spec 00 "final", 7.4.3) does count: 6 members, quorum 4,
    # live with two members down.
    assert log.checkpoint(now=T0 + 5) == note
    f = log.finality()
    assert f is not None and f.final and set(f.cosigners) == {"TH", "KH", "LA", "VN"}
    assert f.witnessed_time == T0 + 5  # 2nd smallest of 0, 5, 10, 20
    log.checkpoint(now=T0 + 99)  # cosigns once per checkpoint
    assert [c.witness for c in store.cosignatures("VN", 2)].count("VN") == 1
    log.close()


def test_unknown_and_bad_cosignatures_refused(net: Net, store: Storage) -> None:
    log = owner_log(net, store)
    log.append(setup_entries(net, "VN"))
    cp = Checkpoint.parse(log.checkpoint().text)
    stranger = CosignatureSigner(witness_name(NETWORK, "SG"), _key("node SG"))
    impostor = CosignatureSigner(witness_name(NETWORK, "TH"), _key("not TH's node key"))
    good = net.cosigner("KH").cosign(cp, T0)
    for bad in (stranger.cosign(cp, T0), impostor.cosign(cp, T0)):
        with pytest.raises(AuthorizationError):
            log.add_cosignatures(2, [good, bad])
    other_cp = Checkpoint(cp.origin, cp.size, b"\x00" * 32, cp.extensions)
    forged = net.cosigner("TH").cosign(other_cp, T0)
    with pytest.raises(VerificationError):
        log.add_cosignatures(2, [good, forged])
    with pytest.raises(DecodeError):
        log.add_cosignatures(2, ["not a signature line"])
    assert store.cosignatures("VN") == []  # one bad line refuses the lot
    with pytest.raises(StorageError):
        log.add_cosignatures(1, [good])  # no such checkpoint
    log.add_cosignatures(2, [good])
    assert [c.witness for c in store.cosignatures("VN", 2)] == ["KH"]
    assert NoteSignature.parse_line(store.cosignatures("VN", 2)[0].line.decode()) == good
    log.close()


def test_key_ids_differ_between_note_and_cosignature(net: Net) -> None:
    # The node key signs both; C2SP key ids keep the two uses apart (spec 4.2.4).
    note_kid = NoteVerifier("mekong-trust-ledger/gms/VN", bytes(net.node["VN"].verify_key)).key_id
    assert note_kid != net.cosigner("VN").key_id
    assert key_id(bytes(net.node["VN"].verify_key)) != note_kid


def test_replayed_entries_are_refused_with_the_index_they_are_at(net: Net, store: Storage) -> None:
    from ledger.errors import DuplicateEntryError

    log = owner_log(net, store)
    raws = setup_entries(net, "VN") + anchors(net, "VN", 3)
    log.append(raws)
    with pytest.raises(DuplicateEntryError, match="at index 3") as info:
        log.append([*anchors(net, "VN", 1, first=10, t=T0 + 100), raws[3]])
    assert info.value.index == 3 and log.size == 5  # the whole batch is refused
    fresh = anchors(net, "VN", 1, first=20, t=T0 + 200)
    with pytest.raises(DuplicateEntryError, match="entry 6: spec 6.3.18"):
        log.append(fresh + fresh)
    assert log.append(fresh) == [5]
    # found through the state map (spec 7.3 step 3), before the rules: a replayed registration is a replay, not
    # a second registration; the same digest anchored again by another entry is no replay
    with pytest.raises(DuplicateEntryError, match="at index 0"):
        log.append([raws[0]])
    assert log.append(anchors(net, "VN", 1, first=0, t=T0 + 300)) == [6]
    with pytest.raises(DuplicateEntryError, match="at index 2"):
        log.append([raws[2]])
    log.close()
