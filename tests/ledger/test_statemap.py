"""The state map (specs/state.md S.2, S.3, S.5): incremental root against the definition, proofs."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import DecodeError
from ledger.state import StateKey
from ledger.statemap import (
    BUCKET_BITS,
    EMPTY,
    StateMap,
    StateProof,
    StateProofError,
    bucket_of,
    leaf_node,
    map_root,
    prove,
    subtree_hash,
    value_hash,
    verify_state_proof,
)


def _naive(items: dict[bytes, bytes]) -> bytes:
    """The definition of spec S.2.3 written out over bit strings, independently of ledger.statemap."""
    def bits(p: bytes) -> str:
        return "".join(f"{b:08b}" for b in p)

    def h(group: list[tuple[str, bytes, bytes]], depth: int) -> bytes:
        if not group:
            return bytes(32)
        if len(group) == 1:
            _, p, v = group[0]
            return hashlib.sha256(b"\x02" + p + hashlib.sha256(v).digest()).digest()
        left = [g for g in group if g[0][depth] == "0"]
        right = [g for g in group if g[0][depth] == "1"]
        return hashlib.sha256(b"\x03" + h(left, depth + 1) + h(right, depth + 1)).digest()

    return h([(bits(p), p, v) for p, v in items.items()], 0)


# Paths that share long prefixes, so that buckets hold many leaves and subtrees hold one-child chains.
_prefixes = st.sampled_from([b"", b"\x00\x00", b"\x00\x00\x00", b"\x00\x00\x3f", b"\x00\x00\x40", b"\xff\x01\x80",
                             b"\x12"])
_paths = st.builds(lambda pre, rest: (pre + rest)[:32], _prefixes, st.binary(min_size=32, max_size=32))
_maps = st.dictionaries(_paths, st.binary(max_size=8), max_size=40)


def _bucket_store(items: dict[bytes, bytes]) -> dict[int, list[tuple[bytes, bytes]]]:
    out: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
    for p in sorted(items):
        out[bucket_of(p)].append((p, value_hash(items[p])))
    return out


@given(_paths)
def test_a_bucket_is_the_first_bucket_bits_of_a_path(path: bytes) -> None:
    assert bucket_of(path) == int("".join(f"{b:08b}" for b in path)[:BUCKET_BITS], 2)


def test_bucket_edges() -> None:
    rest = bytes(29)
    assert bucket_of(b"\x00\x00\x3f" + rest) == 0
    assert bucket_of(b"\x00\x00\x40" + rest) == 1
    assert bucket_of(b"\xff\xff\xff" + rest) == (1 << BUCKET_BITS) - 1


def test_an_empty_map_proves_absence_against_the_empty_root() -> None:
    m = StateMap()
    assert (m.root, m.leaf_count, m.bucket_count(12345)) == (EMPTY, 0, 0)
    path = hashlib.sha256(b"nothing").digest()
    proof = m.prove(path, lambda bucket: pytest.fail("an empty map reads no bucket"))
    verify_state_proof(EMPTY, path, None, proof)
    m.apply(m.plan({}))  # an empty change leaves it empty
    assert m.root == EMPTY


def test_small_roots_by_hand() -> None:
    assert map_root({}) == EMPTY
    p = bytes(range(32))
    assert map_root({p: b"v"}) == leaf_node(p, hashlib.sha256(b"v").digest())
    q = b"\x80" + bytes(31)  # first bit differs from p's
    assert map_root({p: b"v", q: b"w"}) == hashlib.sha256(
        b"\x03" + leaf_node(p, value_hash(b"v")) + leaf_node(q, value_hash(b"w"))).digest()


@settings(max_examples=150, deadline=None)
@given(_maps)
def test_root_matches_naive_definition(items: dict[bytes, bytes]) -> None:
    assert map_root(items) == _naive(items)


@settings(max_examples=100, deadline=None)
@given(st.lists(_maps, min_size=1, max_size=4))
def test_incremental_map_matches_definition(batches: list[dict[bytes, bytes]]) -> None:
    """Buckets changed batch by batch give the root computed from scratch, and plan() alone changes nothing."""
    m = StateMap()
    items: dict[bytes, bytes] = {}
    for batch in batches:
        before = m.root
        items.update(batch)
        store = _bucket_store(items)
        update = m.plan({b: store[b] for b in {bucket_of(p) for p in batch}})
        assert m.root == before
        m.apply(update)
        assert m.root == update.root == _naive(items)
        assert m.leaf_count == len(items)
    # a map reloaded from its stored buckets has the same root
    store = _bucket_store(items)
    reloaded = StateMap((b, len(ls), _bucket_hash(ls)) for b, ls in store.items())
    assert reloaded.root == m.root


def _bucket_hash(leaves: list[tuple[bytes, bytes]]) -> bytes:
    return subtree_hash(leaves, BUCKET_BITS)


@settings(max_examples=150, deadline=None)
@given(_maps, _paths)
def test_proofs_of_presence_and_absence(items: dict[bytes, bytes], probe: bytes) -> None:
    root = map_root(items)
    store = _bucket_store(items)
    m = StateMap((b, len(ls), _bucket_hash(ls)) for b, ls in store.items())
    for path in [*list(items)[:5], probe]:
        proof = m.prove(path, lambda b: store.get(b, []))
        assert proof == prove(items, path)
        assert StateProof.decode(proof.encode()) == proof
        value = items.get(path)
        verify_state_proof(root, path, value, proof)
        # the same proof never shows the opposite, nor another value
        with pytest.raises(StateProofError):
            verify_state_proof(root, path, None if value is not None else b"x", proof)
        if value is not None:
            with pytest.raises(StateProofError):
                verify_state_proof(root, path, value + b"!", proof)


def test_a_proof_for_another_key_or_root_fails() -> None:
    items = {hashlib.sha256(bytes([i])).digest(): bytes([i]) for i in range(50)}
    root = map_root(items)
    a, b = list(items)[:2]
    proof = prove(items, a)
    with pytest.raises(StateProofError):
        verify_state_proof(root, b, items[a], proof)
    with pytest.raises(StateProofError):
        verify_state_proof(map_root({**items, b: b"changed"}), a, items[a], proof)
    # a stale root: the proof for the old map fails against the new one
    newer = {**items, hashlib.sha256(b"new").digest(): b"n"}
    with pytest.raises(StateProofError):
        verify_state_proof(map_root(newer), a, items[a], proof)


def test_absence_proof_cannot_show_the_absent_path_or_an_off_branch_leaf() -> None:
    items = {hashlib.sha256(bytes([i])).digest(): bytes([i]) for i in range(8)}
    root = map_root(items)
    a = next(iter(items))
    presence = prove(items, a)
    forged = StateProof(presence.siblings, (a, value_hash(items[a])))
    with pytest.raises(StateProofError, match="very path"):
        verify_state_proof(root, a, None, forged)
    absent = bytes(32) if bytes(32) not in items else b"\x01" * 32
    proof = prove(items, absent)
    assert proof.other is not None or len(proof.siblings) > 0
    off = StateProof(proof.siblings, (b"\xff" * 32 if absent[0] < 0x80 else bytes(32), bytes(32)))
    with pytest.raises(StateProofError):
        verify_state_proof(root, absent, None, off)


@pytest.mark.parametrize("bad, what", [
    ([[b"x"], None], "sibling"),
    ([[], [b"", b""]], "other leaf"),
    ([[], None, 1], "array"),
    ("nope", "array"),
])
def test_malformed_proofs_are_named(bad: object, what: str) -> None:
    with pytest.raises(DecodeError, match=what):
        StateProof.from_cbor(bad)


def test_vectors(vectors: Callable[[str], Any]) -> None:
    """tests/vectors/state_map.json: roots, key encodings and proofs (spec S.2 to S.4)."""
    vec = vectors("state_map.json")
    for case in vec["roots"]:
        items = {bytes.fromhex(i["path"]): bytes.fromhex(i["value"]) for i in case["items"]}
        assert map_root(items).hex() == case["root"], case["name"]
    items = {}
    for k in vec["keys"]:
        key = StateKey.decode(bytes.fromhex(k["key"]))
        assert key.kind == k["kind"] and key.encode().hex() == k["key"] and key.path.hex() == k["path"]
        items[key.path] = bytes.fromhex(k["value"])
    root = map_root(items)
    assert root.hex() == vec["map_root"]
    for p in vec["proofs"]:
        proof = StateProof.decode(bytes.fromhex(p["proof"]))
        assert proof.encode().hex() == p["proof"]
        value = None if p["value"] is None else bytes.fromhex(p["value"])
        verify_state_proof(root, bytes.fromhex(p["path"]), value, proof)
