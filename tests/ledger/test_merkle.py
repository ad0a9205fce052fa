"""Tests for ledger.merkle: RFC 9162 trees, stored nodes and proofs (specs/03-merkle.md).

Vectors come from tests/vectors/merkle_rfc6962.json (the Certificate Transparency reference tree
of 8 leaves) and tests/vectors/merkle_rfc6962_probes.json (transparency-dev/merkle's 196 named
verification probes). A naive recursive RFC 9162 MTH / PATH / SUBPROOF, written straight from
RFC 9162 sections 2.1.1, 2.1.3.1 and 2.1.4.1, cross-checks the fast code in property tests.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import merkle
from ledger.errors import VerificationError
from ledger.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    MemoryTree,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    root_from_leaf_hashes,
    stored_hashes_for_batch,
    stored_hashes_for_leaf,
    subtree_hash,
    tree_root,
    verify_consistency,
    verify_inclusion,
)

_VECTOR_DIR = Path(__file__).parents[1] / "vectors"
VECTORS = json.loads((_VECTOR_DIR / "merkle_rfc6962.json").read_text("utf-8"))
PROBES = json.loads((_VECTOR_DIR / "merkle_rfc6962_probes.json").read_text("utf-8"))

H = bytes.fromhex
VECTOR_LEAVES = [leaf_hash(H(x)) for x in VECTORS["leaf_inputs"]]
VECTOR_TREE = MemoryTree(VECTOR_LEAVES)

MAX_SIZE = 300
LEAVES = tuple(leaf_hash(i.to_bytes(4, "big")) for i in range(MAX_SIZE))
TREE = MemoryTree(LEAVES)
PROPS = settings(max_examples=150, deadline=None)


# --------------------------------------------------------------------------- naive RFC 9162 reference


def _split(n: int) -> int:
    """The largest power of two strictly less than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


@cache
def ref_mth(start: int, end: int) -> bytes:
    """RFC 9162 section 2.1.1 MTH of LEAVES[start:end] (the leaves given as their hashes)."""
    n = end - start
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return LEAVES[start]
    k = _split(n)
    return node_hash(ref_mth(start, start + k), ref_mth(start + k, end))


def ref_path(m: int, start: int, end: int) -> list[bytes]:
    """RFC 9162 section 2.1.3.1 PATH(m, D[start:end])."""
    n = end - start
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return ref_path(m, start, start + k) + [ref_mth(start + k, end)]
    return ref_path(m - k, start + k, end) + [ref_mth(start, start + k)]


def ref_subproof(m: int, start: int, end: int, whole: bool) -> list[bytes]:
    """RFC 9162 section 2.1.4.1 SUBPROOF(m, D[start:end], b)."""
    n = end - start
    if m == n:
        return [] if whole else [ref_mth(start, end)]
    k = _split(n)
    if m <= k:
        return ref_subproof(m, start, start + k, whole) + [ref_mth(start + k, end)]
    return ref_subproof(m - k, start + k, end, False) + [ref_mth(start, start + k)]


def path_shape(m: int, n: int) -> tuple[str, ...]:
    """Which side each PATH(m, D[n]) element sits on: all a verifier learns from (m, n)."""
    if n == 1:
        return ()
    k = _split(n)
    return path_shape(m, k) + ("R",) if m < k else path_shape(m - k, n - k) + ("L",)


def subproof_shape(m: int, n: int, whole: bool = True) -> tuple[str, ...]:
    """The role of each SUBPROOF(m, D[n], b) element: old-tree node, left or right sibling."""
    if m == n:
        return () if whole else ("F",)
    k = _split(n)
    if m <= k:
        return subproof_shape(m, k, whole) + ("R",)
    return subproof_shape(m - k, n - k, False) + ("L",)


def reader(size: int, reads: list[tuple[int, int]]) -> Callable[[int, int], bytes]:
    """A get() over TREE that records reads and fails on any node outside the first size leaves."""

    def get(level: int, index: int) -> bytes:
        assert (index + 1) << level <= size, f"read node ({level}, {index}) beyond size {size}"
        reads.append((level, index))
        return TREE.get(level, index)

    return get


def flip(data: bytes, bit: int) -> bytes:
    b = bytearray(data)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


@st.composite
def size_and_index(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, MAX_SIZE))
    return size, draw(st.integers(0, size - 1))


@st.composite
def two_sizes(draw: st.DrawFn) -> tuple[int, int]:
    size2 = draw(st.integers(1, MAX_SIZE))
    return draw(st.integers(1, size2)), size2


# --------------------------------------------------------------------------- vectors (spec 3.1, 3.2)


@pytest.mark.parametrize("case", VECTORS["hasher_vectors"], ids=lambda c: c["desc"])
def test_hasher_vectors(case: dict[str, str]) -> None:
    if case["op"] == "empty_root":
        got = EMPTY_ROOT
    elif case["op"] == "leaf":
        got = leaf_hash(H(case["input"]))
    else:
        got = node_hash(H(case["left"]), H(case["right"]))
    assert got.hex() == case["expected"]


@pytest.mark.parametrize("size", range(len(VECTORS["root_hashes"])), ids=lambda n: f"size-{n}")
def test_root_vectors(size: int) -> None:
    want = VECTORS["root_hashes"][size]
    assert root_from_leaf_hashes(VECTOR_LEAVES[:size]).hex() == want
    assert tree_root(size, VECTOR_TREE.get).hex() == want
    assert VECTOR_TREE.root(size).hex() == want
    assert MemoryTree(VECTOR_LEAVES[:size]).root().hex() == want


@pytest.mark.parametrize(
    "level,index",
    [(lv, i) for lv, row in enumerate(VECTORS["node_hashes"]) for i in range(len(row))],
    ids=lambda v: str(v),
)
def test_node_vectors(level: int, index: int) -> None:
    want = VECTORS["node_hashes"][level][index]
    assert VECTOR_TREE.get(level, index).hex() == want
    start = index << level
    assert subtree_hash(start, start + (1 << level), VECTOR_TREE.get).hex() == want


def _incl_id(c: dict[str, Any]) -> str:
    return f"index-{c['leaf_index']}-size-{c['tree_size']}"


@pytest.mark.parametrize("case", VECTORS["inclusion_proofs"], ids=_incl_id)
def test_inclusion_vectors(case: dict[str, Any]) -> None:
    index, size = case["leaf_index"], case["tree_size"]
    assert leaf_hash(H(case["leaf_input"])).hex() == case["leaf_hash"]
    proof = VECTOR_TREE.inclusion_proof(index, size)
    assert [p.hex() for p in proof] == case["proof"]
    verify_inclusion(index, size, H(case["leaf_hash"]), proof, H(case["root"]))
    assert root_from_inclusion_proof(index, size, H(case["leaf_hash"]), proof).hex() == case["root"]


@pytest.mark.parametrize("case", VECTORS["consistency_proofs"], ids=lambda c: f"{c['size1']}-to-{c['size2']}")
def test_consistency_vectors(case: dict[str, Any]) -> None:
    size1, size2 = case["size1"], case["size2"]
    proof = VECTOR_TREE.consistency_proof(size1, size2)
    assert [p.hex() for p in proof] == case["proof"]
    verify_consistency(size1, size2, proof, H(case["root1"]), H(case["root2"]))


def _probe_id(c: dict[str, Any]) -> str:
    return c["file"].removeprefix("testdata/").removesuffix(".json")


@pytest.mark.parametrize("probe", PROBES["inclusion"], ids=_probe_id)
def test_inclusion_probes(probe: dict[str, Any]) -> None:
    args = (probe["leaf_index"], probe["tree_size"], H(probe["leaf_hash"]), [H(p) for p in probe["proof"]])
    if probe["want_error"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args, H(probe["root"]))
    else:
        verify_inclusion(*args, H(probe["root"]))


@pytest.mark.parametrize("probe", PROBES["consistency"], ids=_probe_id)
def test_consistency_probes(probe: dict[str, Any]) -> None:
    args = (probe["size1"], probe["size2"], [H(p) for p in probe["proof"]], H(probe["root1"]), H(probe["root2"]))
    if probe["want_error"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


# --------------------------------------------------------------------------- fast code == reference


@given(st.integers(0, MAX_SIZE))
@PROPS
def test_roots_match_reference(size: int) -> None:
    reads: list[tuple[int, int]] = []
    want = ref_mth(0, size)
    assert root_from_leaf_hashes(LEAVES[:size]) == want
    assert tree_root(size, reader(size, reads)) == want
    assert len(reads) == size.bit_count()  # spec 3.2.3: one read per complete subtree


@given(size_and_index())
@PROPS
def test_inclusion_matches_reference(case: tuple[int, int]) -> None:
    size, index = case
    reads: list[tuple[int, int]] = []
    proof = inclusion_proof(index, size, reader(size, reads))
    assert proof == ref_path(index, 0, size)
    assert len(reads) <= 2 * size.bit_length()
    verify_inclusion(index, size, LEAVES[index], proof, ref_mth(0, size))


@given(two_sizes())
@PROPS
def test_consistency_matches_reference(case: tuple[int, int]) -> None:
    size1, size2 = case
    reads: list[tuple[int, int]] = []
    proof = consistency_proof(size1, size2, reader(size2, reads))
    assert proof == ref_subproof(size1, 0, size2, True)
    assert len(reads) <= 2 * size2.bit_length() + 1
    verify_consistency(size1, size2, proof, ref_mth(0, size1), ref_mth(0, size2))


@pytest.mark.parametrize("size2", range(1, 33), ids=lambda n: f"size2-{n}")
def test_all_small_proofs(size2: int) -> None:
    root2 = ref_mth(0, size2)
    for i in range(size2):
        proof = TREE.inclusion_proof(i, size2)
        assert proof == ref_path(i, 0, size2)
        verify_inclusion(i, size2, LEAVES[i], proof, root2)
    for size1 in range(1, size2 + 1):
        proof = TREE.consistency_proof(size1, size2)
        assert proof == ref_subproof(size1, 0, size2, True)
        verify_consistency(size1, size2, proof, ref_mth(0, size1), root2)


@given(st.integers(0, MAX_SIZE - 1), st.integers(1, 64))
@PROPS
def test_subtree_hash_matches_reference(start: int, length: int) -> None:
    end = min(start + length, MAX_SIZE)
    width = 1 << (end - start - 1).bit_length()
    if start % width:
        with pytest.raises(ValueError, match="not an RFC 9162 subtree"):
            subtree_hash(start, end, TREE.get)
    else:
        assert subtree_hash(start, end, TREE.get) == ref_mth(start, end)


@given(st.lists(st.integers(1, 40), min_size=1, max_size=20))
@PROPS
def test_batches_store_the_same_nodes_as_single_appends(batch_sizes: list[int]) -> None:
    stored: dict[tuple[int, int], bytes] = {}
    start = 0
    for n in batch_sizes:
        n = min(n, MAX_SIZE - start)
        reads: list[tuple[int, int]] = []

        def get(level: int, index: int, start: int = start, reads: list[tuple[int, int]] = reads) -> bytes:
            assert (index + 1) << level <= start, "batch read a node made inside the batch"
            reads.append((level, index))
            return stored[(level, index)]

        for level, index, h in stored_hashes_for_batch(start, LEAVES[start : start + n], get):
            assert (level, index) not in stored
            assert h == TREE.get(level, index)
            stored[(level, index)] = h
        assert len(reads) == len(set(reads)) <= (start + n).bit_length()
        start += n
        assert tree_root(start, lambda lv, i: stored[(lv, i)]) == ref_mth(0, start)
    expected = {(lv, i) for lv in range(start.bit_length()) for i in range(start >> lv)}
    assert set(stored) == expected


def test_stored_hashes_for_leaf_lists_completed_nodes() -> None:
    nodes = stored_hashes_for_leaf(7, LEAVES[7], TREE.get)
    assert [(lv, i) for lv, i, _ in nodes] == [(0, 7), (1, 3), (2, 1), (3, 0)]
    assert nodes[-1][2] == ref_mth(0, 8)
    assert [(lv, i) for lv, i, _ in stored_hashes_for_leaf(8, LEAVES[8], TREE.get)] == [(0, 8)]


# --------------------------------------------------------------------------- tampering is caught


@given(size_and_index(), st.data())
@PROPS
def test_inclusion_bit_flip_is_rejected(case: tuple[int, int], data: st.DataObject) -> None:
    size, index = case
    proof = TREE.inclusion_proof(index, size)
    root = TREE.root(size)
    if not proof:
        return
    k = data.draw(st.integers(0, len(proof) - 1))
    bit = data.draw(st.integers(0, 8 * HASH_SIZE - 1))
    bad = list(proof)
    bad[k] = flip(bad[k], bit)
    with pytest.raises(ProofError, match="does not lead to the root"):
        verify_inclusion(index, size, LEAVES[index], bad, root)
    with pytest.raises(ProofError):
        verify_inclusion(index, size, flip(LEAVES[index], bit), proof, root)
    with pytest.raises(ProofError):
        verify_inclusion(index, size, LEAVES[index], proof, flip(root, bit))


@given(size_and_index(), st.integers(0, MAX_SIZE - 1))
@PROPS
def test_inclusion_wrong_index_is_rejected(case: tuple[int, int], other: int) -> None:
    size, index = case
    other %= size
    if other == index:
        return
    proof = TREE.inclusion_proof(index, size)
    with pytest.raises(ProofError):
        verify_inclusion(other, size, LEAVES[index], proof, TREE.root(size))


@given(size_and_index(), st.integers(1, 2 * MAX_SIZE))
@PROPS
def test_inclusion_wrong_size_is_rejected_unless_the_shape_is_the_same(case: tuple[int, int], other: int) -> None:
    # RFC 9162 proofs bind the size only through the root (which a signed checkpoint binds):
    # a proof for (4, 7) also verifies as (4, 8) against the same root, since both paths have the
    # same shape. Any other wrong size must fail.
    size, index = case
    if other == size or index >= other:
        return
    proof = TREE.inclusion_proof(index, size)
    if path_shape(index, size) == path_shape(index, other):
        verify_inclusion(index, other, LEAVES[index], proof, TREE.root(size))
    else:
        with pytest.raises(ProofError):
            verify_inclusion(index, other, LEAVES[index], proof, TREE.root(size))


def test_inclusion_shape_collision_example() -> None:
    proof = TREE.inclusion_proof(4, 7)
    verify_inclusion(4, 8, LEAVES[4], proof, TREE.root(7))  # see spec 3.5.3
    with pytest.raises(ProofError):
        verify_inclusion(4, 8, LEAVES[4], proof, TREE.root(8))


@given(two_sizes(), st.data())
@PROPS
def test_consistency_bit_flip_is_rejected(case: tuple[int, int], data: st.DataObject) -> None:
    size1, size2 = case
    proof = TREE.consistency_proof(size1, size2)
    root1, root2 = TREE.root(size1), TREE.root(size2)
    bit = data.draw(st.integers(0, 8 * HASH_SIZE - 1))
    with pytest.raises(ProofError):
        verify_consistency(size1, size2, proof, flip(root1, bit), root2)
    with pytest.raises(ProofError):
        verify_consistency(size1, size2, proof, root1, flip(root2, bit))
    if not proof:
        return
    k = data.draw(st.integers(0, len(proof) - 1))
    bad = list(proof)
    bad[k] = flip(bad[k], bit)
    with pytest.raises(ProofError, match="does not lead to root"):
        verify_consistency(size1, size2, bad, root1, root2)


@given(two_sizes(), st.integers(1, 2 * MAX_SIZE), st.booleans())
@PROPS
def test_consistency_wrong_size_is_rejected_unless_the_shape_is_the_same(
    case: tuple[int, int], other: int, change_first: bool
) -> None:
    size1, size2 = case
    proof = TREE.consistency_proof(size1, size2)
    root1, root2 = TREE.root(size1), TREE.root(size2)
    claimed = (other, size2) if change_first else (size1, other)
    if claimed == case or claimed[0] > claimed[1]:
        return
    if subproof_shape(*claimed) == subproof_shape(size1, size2) and (claimed[0] == claimed[1]) == (size1 == size2):
        verify_consistency(*claimed, proof, root1, root2)
    else:
        with pytest.raises(ProofError):
            verify_consistency(*claimed, proof, root1, root2)


# --------------------------------------------------------------------------- argument checks


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda: inclusion_proof(5, 5, TREE.get), id="inclusion-index-equals-size"),
        pytest.param(lambda: inclusion_proof(-1, 5, TREE.get), id="inclusion-negative-index"),
        pytest.param(lambda: inclusion_proof(0, 0, TREE.get), id="inclusion-empty-tree"),
        pytest.param(lambda: consistency_proof(0, 5, TREE.get), id="consistency-from-empty"),
        pytest.param(lambda: consistency_proof(6, 5, TREE.get), id="consistency-shrinks"),
        pytest.param(lambda: tree_root(-1, TREE.get), id="root-negative-size"),
        pytest.param(lambda: subtree_hash(3, 3, TREE.get), id="subtree-empty"),
        pytest.param(lambda: subtree_hash(2, 5, TREE.get), id="subtree-unaligned"),
        pytest.param(lambda: stored_hashes_for_leaf(0, b"\x00" * 31, TREE.get), id="leaf-hash-short"),
        pytest.param(lambda: stored_hashes_for_batch(-1, [LEAVES[0]], TREE.get), id="batch-negative-start"),
        pytest.param(lambda: TREE.get(0, MAX_SIZE), id="memory-get-missing"),
        pytest.param(lambda: TREE.root(MAX_SIZE + 1), id="memory-root-too-big"),
        pytest.param(lambda: MemoryTree().append(b"short"), id="memory-append-short"),
    ],
)
def test_bad_generation_arguments_raise_value_error(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        call()


@pytest.mark.parametrize(
    "call,message",
    [
        pytest.param(
            lambda: verify_inclusion(0, 2, LEAVES[0], [LEAVES[1]], b"\x00" * 31), "root must be 32", id="short-root"
        ),
        pytest.param(
            lambda: verify_inclusion(0, 2, b"", [LEAVES[1]], TREE.root(2)), "leaf hash must be 32", id="empty-leaf"
        ),
        pytest.param(
            lambda: verify_inclusion(2, 2, LEAVES[0], [LEAVES[1]], TREE.root(2)), "not in a tree", id="index-past-end"
        ),
        pytest.param(
            lambda: verify_inclusion(0, 2, LEAVES[0], [LEAVES[1], LEAVES[1]], TREE.root(2)),
            "has 2 hashes, expected 1",
            id="long-proof",
        ),
        pytest.param(
            lambda: verify_inclusion(0, 2, LEAVES[0], [LEAVES[1][:31]], TREE.root(2)),
            r"proof\[0\] must be 32",
            id="short-element",
        ),
        pytest.param(
            lambda: verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT), "empty tree", id="consistency-size1-zero"
        ),
        pytest.param(
            lambda: verify_consistency(3, 2, [], TREE.root(3), TREE.root(2)), "size1 <= size2", id="consistency-shrinks"
        ),
        pytest.param(
            lambda: verify_consistency(2, 2, [LEAVES[0]], TREE.root(2), TREE.root(2)),
            "has 1 hashes, expected 0",
            id="equal-sizes-nonempty-proof",
        ),
        pytest.param(
            lambda: verify_consistency(1, 2, [LEAVES[1]], TREE.root(1), b"x"), "root2 must be 32", id="short-root2"
        ),
    ],
)
def test_verification_errors_name_the_problem(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ProofError, match=message):
        call()


def test_proof_error_is_a_verification_error() -> None:
    assert issubclass(ProofError, VerificationError)
    assert merkle.HASH_SIZE == 32 and len(EMPTY_ROOT) == 32


def test_memory_tree_append_and_defaults() -> None:
    tree = MemoryTree()
    assert tree.size == 0 and tree.root() == EMPTY_ROOT
    for i in range(10):
        assert tree.append(LEAVES[i]) == i
    assert tree.root() == ref_mth(0, 10)
    assert tree.inclusion_proof(3) == ref_path(3, 0, 10)
    assert tree.consistency_proof(4) == ref_subproof(4, 0, 10, True)
    assert tree.consistency_proof(10) == []
