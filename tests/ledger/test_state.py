"""A log's state map in a member log (specs/state.md S.4 to S.6): keys, values, stored rows, proofs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from test_memberlog import NETWORK, anchors, make_net, setup_entries

from ledger import cbor
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.entries import UnverifiedEntry
from ledger.errors import DecodeError, StorageError
from ledger.finality import state_line, state_reference
from ledger.memberlog import MemberLog
from ledger.merkle import leaf_hash
from ledger.note import NoteSigner
from ledger.registry import RegistryState
from ledger.state import MemoryState, StateKey, StateValue, keys_of
from ledger.statemap import StateProofError, map_root, verify_state_proof
from ledger.staterows import MERGE_ROWS
from ledger.storage import Storage


def _log(path: Path, merge_rows: int = MERGE_ROWS) -> tuple[MemberLog, list[bytes]]:
    net = make_net()
    db = Storage.open(path, merge_rows=merge_rows)
    db.put_root(1, net.genesis.to_cbor())
    vn = MemberLog(db, "VN", NETWORK, RegistryState(net.chain()), net.node["VN"])
    raws = setup_entries(net, "VN") + anchors(net, "VN", 30)
    for lo in range(0, len(raws), 7):  # several batches
        vn.append(raws[lo:lo + 7])
    return vn, raws


def test_state_root_is_the_map_of_the_entries(tmp_path: Path) -> None:
    vn, raws = _log(tmp_path / "n.db")
    bodies = [UnverifiedEntry.decode(r).body for r in raws]
    # Recomputed from scratch: every key an entry touches lists that entry's (index, leaf hash).
    expected: dict[bytes, list[tuple[int, bytes]]] = {}
    for i, (raw, body) in enumerate(zip(raws, bodies)):
        for k in keys_of(body):
            expected.setdefault(k.path, []).append((i, leaf_hash(raw)))
    items = {p: StateValue(tuple(v)).encode() for p, v in expected.items()}
    assert vn.state_root() == map_root(items)
    mem = MemoryState()
    mem.apply(0, bodies, [leaf_hash(r) for r in raws])
    assert mem.root == vn.state_root()
    # the checkpoint carries it, and the root at each batch end was kept
    cp = Checkpoint.parse(vn.checkpoint().text)
    assert state_reference(cp) == vn.state_root()
    mem7 = MemoryState()
    mem7.apply(0, bodies[:7], [leaf_hash(r) for r in raws[:7]])
    assert vn.state_root(7) == mem7.root and vn.state_root(8) is None
    vn.close()


def test_proofs_from_a_member_log(tmp_path: Path) -> None:
    vn, _raws = _log(tmp_path / "n.db")
    cp = Checkpoint.parse(vn.checkpoint().text)
    root = state_reference(cp)
    issuer = StateKey("issuer", ("VN/customs",))
    size, ((value, proof),) = vn.prove_states([issuer.path])
    assert size == cp.size and value is not None
    verify_state_proof(root, issuer.path, value, proof)
    assert [i for i, _ in StateValue.decode(value).entries] == [0]
    never = StateKey("status", ("VN/customs", b"no-such-credential"))
    size, ((value, proof),) = vn.prove_states([never.path])
    assert value is None
    verify_state_proof(root, never.path, None, proof)
    with pytest.raises(StateProofError):  # the proof for one key is no proof for another
        verify_state_proof(root, issuer.path, None, proof)
    vn.close()


@pytest.mark.parametrize("merge_rows, table", [(1, "state_buckets"), (MERGE_ROWS, "state_pending_buckets")])
def test_reopening_checks_the_stored_map(tmp_path: Path, merge_rows: int, table: str) -> None:
    path = tmp_path / "n.db"
    vn, _ = _log(path, merge_rows)
    root, state, storage = vn.state_root(), vn.state, vn.storage
    vn.close()
    again = MemberLog(storage, "VN", NETWORK, state)
    assert again.state_root() == root
    storage.close()
    conn = sqlite3.connect(path)
    changed = conn.execute(f"UPDATE {table} SET hash = zeroblob(32) WHERE seq = (SELECT max(seq) FROM {table})"
                           if table.startswith("state_pending") else
                           f"UPDATE {table} SET hash = zeroblob(32) WHERE bucket = (SELECT min(bucket) FROM {table})")
    assert changed.rowcount == 1
    conn.commit()
    conn.close()
    with Storage.open(path) as db, pytest.raises(StorageError, match="state map does not match"):
        MemberLog(db, "VN", NETWORK, state)


@pytest.mark.parametrize("kind, fields, what", [
    ("nope", (), "unknown state key kind"),
    ("issuer", (), "takes str"),
    ("key", ("text",), "takes bytes"),
    ("status", ("VN/customs",), "takes str, bytes"),
])
def test_bad_state_keys_are_named(kind: str, fields: tuple, what: str) -> None:
    with pytest.raises(DecodeError, match=what):
        StateKey(kind, fields)


def test_state_values_round_trip_and_refuse_disorder() -> None:
    v = StateValue(((1, bytes(32)), (5, b"\x01" * 32)))
    assert StateValue.decode(v.encode()) == v
    assert v.before(5) == ((1, bytes(32)),)
    with pytest.raises(DecodeError, match="ascending"):
        StateValue(((5, bytes(32)), (1, bytes(32))))
    with pytest.raises(DecodeError, match="at least one"):
        StateValue(())
    assert StateKey.decode(StateKey("policy").encode()) == StateKey("policy")


def test_reopening_checks_the_newest_checkpoints_state_line(tmp_path: Path) -> None:
    # A database whose newest checkpoint carries another state root than the stored map is not opened.
    path = tmp_path / "n.db"
    vn, _ = _log(path)
    note = vn.checkpoint()
    cp = Checkpoint.parse(note.text)
    state, storage, key = vn.state, vn.storage, vn._node_key
    vn.close()
    storage.close()
    forged = Checkpoint(cp.origin, cp.size, cp.root_hash, (cp.extensions[0], state_line(bytes(32))))
    assert key is not None
    conn = sqlite3.connect(path)
    conn.execute("UPDATE checkpoints SET note = ? WHERE log = 'VN' AND size = ?",
                 (sign_checkpoint(forged, NoteSigner(cp.origin, key)).to_bytes(), cp.size))
    conn.commit()
    conn.close()
    with Storage.open(path) as db, pytest.raises(StorageError, match="state the checkpoint"):
        MemberLog(db, "VN", NETWORK, state)


@pytest.mark.parametrize("key", [StateKey("issuer", ("VN/customs",)), StateKey("key", (b"\x01" * 16,)),
                                 StateKey("anchor", (bytes(32),)), StateKey("status", ("TH/doa-é", b"x" * 40)),
                                 StateKey("policy"), StateKey("adopt")])
def test_direct_encodings_are_the_canonical_encoder_s(key: StateKey) -> None:
    assert key.encode() == cbor.encode([key.kind, *key.fields])
    for entries in (((0, bytes(32)),), ((23, bytes(32)), (24, b"\x01" * 32), (70_000, b"\x02" * 32), (1 << 40, bytes(32)))):
        assert StateValue(entries).encode() == cbor.encode([[i, h] for i, h in entries])


@pytest.mark.parametrize("batches", [[30], [20, 5], [1] * 26, [23, 1, 300]], ids=["one", "across-24", "singles", "long"])
def test_a_value_that_grows_past_one_byte_of_array_head(batches: list[int]) -> None:
    # A value is extended in place (its stored pairs, then the new ones, under a new array head): from 24 pairs on
    # the head takes two bytes, from 256 three; the bytes must stay those of the canonical encoder.
    from ledger.bodies import CredentialAnchor

    state = MemoryState()
    body = CredentialAnchor("VN/customs", bytes(32))
    key = StateKey("anchor", (bytes(32),))
    pairs: list[tuple[int, bytes]] = []
    for n in batches:
        start = len(pairs)
        leaves = [bytes([i % 256, i // 256]) * 16 for i in range(start, start + n)]
        state.apply(start, [body] * n, leaves)
        pairs += list(zip(range(start, start + n), leaves))
        value = state.value(key.path)
        assert value == cbor.encode([[i, h] for i, h in pairs]) == StateValue(tuple(pairs)).encode()
        assert state.root == map_root({key.path: value})
