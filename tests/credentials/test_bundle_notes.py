"""Proof bundle files (specs/state.md S.7.3): compact notes, and notes trimmed to the lines a verdict reads."""

from __future__ import annotations

import hashlib

import nacl.signing
import pytest

from credentials.bundle import ExistenceProof, ProofBundle
from credentials.bundlenotes import compact_note, expand_note, trim_notes
from credentials.view import FinalCheckpoint, fresh_time, witnessed_time
from ledger import cbor
from ledger.checkpoint import Checkpoint, CosignatureSigner, add_signatures, log_origin, sign_checkpoint, witness_name
from ledger.errors import DecodeError
from ledger.finality import checkpoint_extensions, open_signed
from ledger.governance import GovernanceChain
from ledger.note import Note, NoteSigner
from ledger.roots import Member, Root, SignedRoot

NETWORK = "bundle-test"
MEMBERS = ("CN", "KH", "TH", "VN")
T0 = 1_700_000_000


def _key(label: str) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(hashlib.sha256(label.encode()).digest())


NODE = {m: _key(f"node {m}") for m in MEMBERS}
ADMIN = {m: _key(f"admin {m}") for m in MEMBERS}


@pytest.fixture(scope="module")
def chain() -> GovernanceChain:
    members = tuple(Member(m, f"Member {m}", (bytes(ADMIN[m].verify_key),), bytes(NODE[m].verify_key),
                           (f"https://{m.lower()}.example",)) for m in MEMBERS)
    signed = SignedRoot.create(Root(NETWORK, 1, None, members, 3, 3, 1, T0 + 10 ** 8), ADMIN.values())
    return GovernanceChain.from_genesis(signed, signed.root_hash)


def _note(chain: GovernanceChain, log: str, times: dict[str, int], size: int = 5) -> bytes:
    cp = Checkpoint(log_origin(NETWORK, log), size, hashlib.sha256(b"tree %d" % size).digest(),
                    checkpoint_extensions(chain.current, bytes(32)))
    note = sign_checkpoint(cp, NoteSigner(cp.origin, NODE[log]))
    lines = [CosignatureSigner(witness_name(NETWORK, m), NODE[m]).cosign(cp, t) for m, t in times.items()]
    return add_signatures(note, lines).to_bytes()


def _answer(note: bytes) -> bytes:
    return cbor.encode({"size": 5, "checkpoint": note, "answers": [], "entries": []})


TIMES = {"TH": T0 + 40, "CN": T0 + 10, "VN": T0 + 30, "KH": T0 + 20}


def test_a_compact_note_expands_to_the_note(chain: GovernanceChain) -> None:
    note = _note(chain, "VN", TIMES)
    item = compact_note(note)
    assert [c[0] for c in item[2]] == sorted(TIMES)  # one line each, by member
    assert len(cbor.encode(item)) < len(note) * 2 // 3  # no key names, no base64
    expanded = expand_note(item)
    assert Note.parse(expanded).text == Note.parse(note).text
    assert {(s.name, s.signature) for s in Note.parse(expanded).signatures} == \
        {(s.name, s.signature) for s in Note.parse(note).signatures}
    _, _, fin = open_signed(expanded, chain, "VN")
    assert fin.cosigners == TIMES


@pytest.mark.parametrize("mangle, message", [
    (lambda i: [i[0], i[1], [*i[2][1:], i[2][0]]], "sorted by member id"),
    (lambda i: [i[0], i[1], [i[2][0], *i[2]]], "once each"),
    (lambda i: [i[0], i[1], [["vn!", i[2][0][1]]]], "vn!"),
    (lambda i: [i[0].replace("mekong-trust-ledger/", "x/"), i[1], i[2]], "origin"),
    (lambda i: [i[0], i[1]], r"\[text, signature bytes"),
    (lambda i: [i[0], i[1][:4], i[2]], "non-empty"),
], ids=["unsorted", "duplicate", "bad-member", "foreign-origin", "short", "no-signature"])
def test_a_malformed_compact_note_is_named(chain: GovernanceChain, mangle: object, message: str) -> None:
    item = compact_note(_note(chain, "VN", TIMES))
    with pytest.raises(DecodeError, match=message):
        expand_note(mangle(item))  # type: ignore[operator]


def test_a_note_signed_under_foreign_key_names_is_not_compacted(chain: GovernanceChain) -> None:
    note = Note.parse(_note(chain, "VN", {}))
    foreign = NoteSigner("example.com/witness", NODE["KH"]).sign(note.text)
    with pytest.raises(DecodeError, match="no member's witness"):
        compact_note(add_signatures(note, [foreign]).to_bytes())


def _final(chain: GovernanceChain, note: bytes, log: str) -> FinalCheckpoint:
    _, cp, fin = open_signed(note, chain, log)
    return FinalCheckpoint.of(log, cp.size, cp.root_hash, fin.cosigners, fin.cosigners)


def test_trimming_keeps_the_lines_each_verdict_reads(chain: GovernanceChain) -> None:
    answer_note = _note(chain, "VN", TIMES, size=9)
    first_note = _note(chain, "VN", {m: t - 5 for m, t in TIMES.items()})
    bundle = ProofBundle(NETWORK, (chain.signed(1).to_cbor(),), (("VN", _answer(answer_note)),),
                         (ExistenceProof("VN", 2, first_note, ()),))
    trimmed = trim_notes(bundle, chain)
    kept = cbor.decode(trimmed.answers[0][1])["checkpoint"]
    assert set(open_signed(kept, chain, "VN")[2].cosigners) == {"TH", "VN", "KH"}  # the three newest
    assert set(open_signed(trimmed.existence[0].checkpoint, chain, "VN")[2].cosigners) == {"CN", "KH", "VN"}
    faulty, latest = chain.current.faulty, T0 + 100
    assert fresh_time(_final(chain, kept, "VN"), faulty, latest) == \
        fresh_time(_final(chain, answer_note, "VN"), faulty, latest)
    assert witnessed_time(_final(chain, trimmed.existence[0].checkpoint, "VN"), faulty) == \
        witnessed_time(_final(chain, first_note, "VN"), faulty)
    assert len(trimmed.encode()) < len(bundle.encode())
    assert ProofBundle.decode(trimmed.encode()) == trimmed  # the file form loses nothing


def test_trimming_keeps_the_quorum_of_the_head_when_a_later_root_raises_it(chain: GovernanceChain) -> None:
    la = _key("admin LA")
    g = chain.current
    new = Member("LA", "Member LA", (bytes(la.verify_key),), bytes(_key("node LA").verify_key), ("https://la.example",))
    members = tuple(sorted((*g.members, new), key=lambda m: m.id))
    v2 = SignedRoot.create(Root(NETWORK, 2, g.root_hash, members, 4, 4, 1, T0 + 10 ** 8), [*ADMIN.values(), la])
    later = GovernanceChain.from_genesis(chain.signed(1), chain.signed(1).root_hash)
    later.add(v2)
    first_note = _note(chain, "VN", TIMES)  # made under version 1 (quorum 3), cosigned by all four
    bundle = ProofBundle(NETWORK, (chain.signed(1).to_cbor(), v2.to_cbor()), (("VN", _answer(first_note)),),
                         (ExistenceProof("VN", 2, first_note, ()),))
    trimmed = trim_notes(bundle, later)
    # a view under version 2 counts a checkpoint only with 4 cosignatures: cutting to version 1's 3 would drop it
    assert len(open_signed(trimmed.existence[0].checkpoint, later, "VN")[2].cosigners) == 4
    assert len(open_signed(cbor.decode(trimmed.answers[0][1])["checkpoint"], later, "VN")[2].cosigners) == 4


def test_an_answer_note_the_existence_proof_reuses_keeps_every_line(chain: GovernanceChain) -> None:
    note = _note(chain, "VN", TIMES)
    bundle = ProofBundle(NETWORK, (chain.signed(1).to_cbor(),), (("VN", _answer(note)),),
                         (ExistenceProof("VN", 2, b"", ()),))
    trimmed = trim_notes(bundle, chain)
    assert trimmed == bundle
    decoded = ProofBundle.decode(trimmed.encode())
    assert decoded.existence[0].checkpoint == b""
    assert set(open_signed(cbor.decode(decoded.answers[0][1])["checkpoint"], chain, "VN")[2].cosigners) == set(TIMES)


def test_a_version_1_bundle_is_named(chain: GovernanceChain) -> None:
    old = cbor.encode({"type": "mekong-proof-bundle", "version": 1, "network": NETWORK, "roots": [b"x"],
                       "answers": [], "existence": []})
    with pytest.raises(DecodeError, match="version 2"):
        ProofBundle.decode(old)
