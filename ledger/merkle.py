"""RFC 9162 Merkle trees: hashing, stored-node arithmetic, proofs and their verification.

Implements specs/03-merkle.md. A log is stored as its complete subtrees,
addressed like C2SP tlog-tiles and Go's ``tlog``: node ``(level, index)`` is
the hash of the ``2**level`` leaves starting at leaf ``index * 2**level``
(spec 3.2). Nothing else is ever stored; the hashes along the right edge of a
tree whose size is not a power of two are recomputed from complete subtrees
when a root or a proof needs them, with O(log n) reads.

Functions that read the tree take a ``get(level, index) -> bytes`` callable and
never write: storing the nodes that :func:`stored_hashes_for_batch` returns is
the caller's job (``ledger/storage.py``). :class:`MemoryTree` is an in-memory
store for tests and tools.

Generating a proof with impossible arguments (an index past the end, a
consistency proof from a larger tree) is a caller bug and raises
:class:`ValueError`. Checking a proof is checking untrusted input: every
failure, including malformed arguments, raises :class:`ProofError`, and the
verifiers return ``None`` on success.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from ledger.errors import VerificationError

__all__ = [
    "EMPTY_ROOT", "HASH_SIZE", "MemoryTree", "NodeReader", "ProofError", "consistency_proof",
    "inclusion_proof", "leaf_hash", "node_hash", "root_from_inclusion_proof", "root_from_leaf_hashes",
    "root_with", "stored_hashes_for_batch", "stored_hashes_for_leaf", "subtree_hash", "tree_root",
    "verify_consistency", "verify_inclusion",
]  # fmt: skip

HASH_SIZE = 32
"""Length in bytes of every hash in the tree (SHA-256)."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""Root hash of the tree with no leaves (spec 3.1.3)."""

NodeReader = Callable[[int, int], bytes]
"""``get(level, index)``: the stored hash of a complete subtree (spec 3.2)."""

_sha256 = hashlib.sha256


class ProofError(VerificationError):
    """An inclusion or consistency proof, or the values it is checked against, did not verify."""


# --------------------------------------------------------------------------- hashing (spec 3.1)


def leaf_hash(data: bytes) -> bytes:
    """Return the hash of one leaf: SHA-256(0x00 || data) (spec 3.1.1)."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the hash of an interior node: SHA-256(0x01 || left || right) (spec 3.1.2)."""
    return _sha256(b"\x01" + left + right).digest()


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """Return the root of the tree whose leaves have these hashes (spec 3.1.3).

    Hashes level by level; an odd node at the end of a level moves up
    unchanged, which gives the same tree as RFC 9162's split at the largest
    power of two.
    """
    level = list(hashes)
    if not level:
        return EMPTY_ROOT
    sha = _sha256
    while len(level) > 1:
        nxt = [sha(b"\x01" + a + b).digest() for a, b in zip(level[0::2], level[1::2])]
        if len(level) & 1:
            nxt.append(level[-1])
        level = nxt
    return level[0]


# --------------------------------------------------------------------------- stored nodes (spec 3.2)


def stored_hashes_for_leaf(index: int, leaf_hash: bytes, get: NodeReader) -> list[tuple[int, int, bytes]]:
    """Return the nodes that become complete when leaf ``index`` is appended (spec 3.2.2).

    Leaves ``0 .. index-1`` must already be stored and readable through ``get``.

    Args:
        index: position of the new leaf, equal to the tree size before it.
        leaf_hash: the new leaf's hash.
        get: reader of earlier stored nodes.

    Returns:
        ``(level, index, hash)`` triples, level 0 (the leaf itself) first.

    Raises:
        ValueError: if ``index`` is negative or ``leaf_hash`` is not 32 bytes.
    """
    return stored_hashes_for_batch(index, (leaf_hash,), get)


def stored_hashes_for_batch(
    start: int, leaf_hashes: Sequence[bytes], get: NodeReader
) -> list[tuple[int, int, bytes]]:
    """Return every node that becomes complete when ``leaf_hashes`` are appended at ``start``.

    Nodes made earlier in the same batch are read from a local overlay, so
    ``get`` is called only for nodes stored before the batch: at most one per
    level (spec 3.2.2).

    Args:
        start: index of the first new leaf, equal to the tree size before the batch.
        leaf_hashes: hashes of the new leaves, in order.
        get: reader of nodes stored before the batch.

    Returns:
        ``(level, index, hash)`` triples, by leaf, then by increasing level.

    Raises:
        ValueError: if ``start`` is negative or a leaf hash is not 32 bytes.
    """
    if start < 0:
        raise ValueError(f"start must be non-negative, got {start}")
    sha = _sha256
    out: list[tuple[int, int, bytes]] = []
    overlay: dict[tuple[int, int], bytes] = {}
    for i, node in enumerate(leaf_hashes, start):
        if len(node) != HASH_SIZE:
            raise ValueError(f"leaf hash {i} must be {HASH_SIZE} bytes, got {len(node)}")
        out.append((0, i, node))
        level, idx = 0, i
        # spec 3.2.2: while the node just completed is a right child, its parent completes too.
        while idx & 1:
            left = overlay.pop((level, idx - 1), None)  # each left child is read exactly once
            if left is None:
                left = get(level, idx - 1)
            node = sha(b"\x01" + left + node).digest()
            level, idx = level + 1, idx >> 1
            out.append((level, idx, node))
        # The last node completed is a left child (even index): a later leaf will read it.
        overlay[(level, idx)] = node
    return out


def _range_hash(start: int, end: int, get: NodeReader) -> bytes:
    # spec 3.2.3: the complete subtrees of [start, end), largest first, folded from the right.
    parts: list[bytes] = []
    pos = start
    for level in range((end - start).bit_length() - 1, -1, -1):
        if (end - start) >> level & 1:
            parts.append(get(level, pos >> level))
            pos += 1 << level
    acc = parts[-1]
    for h in reversed(parts[:-1]):
        acc = _sha256(b"\x01" + h + acc).digest()
    return acc


def tree_root(size: int, get: NodeReader) -> bytes:
    """Return the root of the first ``size`` leaves from stored nodes (spec 3.2.3).

    Reads one stored node per set bit of ``size``.

    Raises:
        ValueError: if ``size`` is negative.
    """
    if size < 0:
        raise ValueError(f"tree size must be non-negative, got {size}")
    if size == 0:
        return EMPTY_ROOT
    return _range_hash(0, size, get)


def root_with(size: int, added: Sequence[tuple[int, int, bytes]], get: NodeReader) -> bytes:
    """Return the root of the first ``size`` leaves once ``added`` (from :func:`stored_hashes_for_batch`) is
    stored beside what ``get`` reads, without storing it: the check of a batch before it is written."""
    overlay = {(level, idx): h for level, idx, h in added}
    return tree_root(size, lambda level, idx: overlay.get((level, idx)) or get(level, idx))


def subtree_hash(start: int, end: int, get: NodeReader) -> bytes:
    """Return the hash of leaves ``[start, end)`` from stored nodes (spec 3.2.3).

    The range must be a node of some RFC 9162 tree: non-empty, with ``start``
    a multiple of the smallest power of two not less than ``end - start``.

    Raises:
        ValueError: if the range is empty or not such a subtree.
    """
    if not 0 <= start < end:
        raise ValueError(f"subtree [{start}, {end}) is empty or negative")
    width = 1 << (end - start - 1).bit_length()  # spec 3.2.4
    if start % width:
        raise ValueError(f"[{start}, {end}) is not an RFC 9162 subtree: start is not a multiple of {width}")
    return _range_hash(start, end, get)


# --------------------------------------------------------------------------- proofs (spec 3.3, 3.4)


def _path(index: int, level: int, size: int, get: NodeReader) -> list[bytes]:
    """Sibling hashes from node (level, index) up to the root of the tree of ``size`` leaves."""
    proof: list[bytes] = []
    last = (size - 1) >> level  # the node at this level that holds the last leaf
    while last:
        if index != last:
            sibling = index ^ 1
            if sibling == last:  # spec 3.3.2: right-edge sibling, possibly incomplete
                proof.append(_range_hash(sibling << level, size, get))
            else:  # spec 3.3.2: complete sibling
                proof.append(get(level, sibling))
        elif index & 1:  # spec 3.3.3: on the right edge, a complete left sibling
            proof.append(get(level, index - 1))
        # else spec 3.3.3: on the right edge with no sibling; RFC 9162 has no node here.
        index, last, level = index >> 1, last >> 1, level + 1
    return proof


def _path_length(index: int, size: int) -> int:
    # spec 3.3.4: siblings below the level where index and size-1 meet, then left siblings above.
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def inclusion_proof(index: int, size: int, get: NodeReader) -> list[bytes]:
    """Return the RFC 9162 section 2.1.3.1 inclusion proof of leaf ``index`` in a tree of ``size``.

    Reads O(log size) stored nodes (spec 3.3).

    Raises:
        ValueError: unless ``0 <= index < size``.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    return _path(index, 0, size, get)


def _consistency_start(size1: int) -> tuple[int, int]:
    # spec 3.4.2: the largest complete subtree that ends at size1.
    level = (size1 & -size1).bit_length() - 1
    return level, (size1 - 1) >> level


def consistency_proof(size1: int, size2: int, get: NodeReader) -> list[bytes]:
    """Return the RFC 9162 section 2.1.4.1 consistency proof from ``size1`` to ``size2``.

    Reads O(log size2) stored nodes (spec 3.4). Equal sizes give an empty proof.

    Raises:
        ValueError: unless ``0 < size1 <= size2``.
    """
    if not 0 < size1 <= size2:
        raise ValueError(f"no consistency proof from size {size1} to size {size2} (need 0 < size1 <= size2)")
    if size1 == size2:
        return []  # spec 3.4.1
    level, index = _consistency_start(size1)
    # spec 3.4.2: omit the start node when it is the whole old tree (size1 a power of two).
    head = [get(level, index)] if index else []
    return head + _path(index, level, size2, get)


# --------------------------------------------------------------------------- verification (spec 3.5)


def _check_hash(name: str, value: object) -> None:
    if not isinstance(value, (bytes, bytearray)) or len(value) != HASH_SIZE:
        got = f"{len(value)} bytes" if isinstance(value, (bytes, bytearray)) else type(value).__name__
        raise ProofError(f"{name} must be {HASH_SIZE} bytes, got {got}")


def _check_proof(proof: Sequence[bytes], expected: int, what: str) -> None:
    if len(proof) != expected:
        raise ProofError(f"{what} proof has {len(proof)} hashes, expected {expected}")
    for i, p in enumerate(proof):
        _check_hash(f"proof[{i}]", p)


def root_from_inclusion_proof(index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes]) -> bytes:
    """Return the root that ``proof`` gives for ``leaf_hash`` at ``index`` in a tree of ``size``.

    The result proves nothing until it is compared with a trusted root; use
    :func:`verify_inclusion` for that.

    Raises:
        ProofError: if an argument is out of range, a hash is not 32 bytes,
            or the proof has the wrong number of hashes.
    """
    # spec 3.5.1 step 1: arguments and lengths before any hashing.
    if not isinstance(index, int) or not isinstance(size, int) or not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    _check_hash("leaf hash", leaf_hash)
    _check_proof(proof, _path_length(index, size), f"inclusion (index {index}, size {size})")
    fn, sn, r = index, size - 1, bytes(leaf_hash)  # spec 3.5.1 step 2
    for p in proof:  # spec 3.5.1 step 3
        if sn == 0:  # step 3a (unreachable after the length check; kept as in RFC 9162)
            raise ProofError("inclusion proof is longer than the path to the root")
        if fn & 1 or fn == sn:  # step 3b: p is a left sibling
            r = _sha256(b"\x01" + p + r).digest()
            if not fn & 1:  # step 3c: climb past levels where the node has no sibling
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:  # step 3d: p is a right sibling
            r = _sha256(b"\x01" + r + p).digest()
        fn, sn = fn >> 1, sn >> 1  # step 3e
    if sn != 0:  # spec 3.5.1 step 4
        raise ProofError("inclusion proof is shorter than the path to the root")
    return r


def verify_inclusion(index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` with ``root``.

    RFC 9162 section 2.1.3.2, with the argument checks of spec 3.5.1.

    Raises:
        ProofError: if the arguments are malformed or the proof does not lead to ``root``.
    """
    _check_hash("root", root)  # spec 3.5.1 step 1 (the rest in root_from_inclusion_proof)
    computed = root_from_inclusion_proof(index, size, leaf_hash, proof)
    if computed != root:  # spec 3.5.1 step 5
        raise ProofError(f"inclusion proof for index {index} does not lead to the root of size {size}")


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> None:
    """Check that the tree of ``size2`` with ``root2`` extends the tree of ``size1`` with ``root1``.

    RFC 9162 section 2.1.4.2, with the argument checks of spec 3.5.2.

    Raises:
        ProofError: if the arguments are malformed or the proof does not
            lead to both roots.
    """
    # spec 3.5.2 step 1: the sizes.
    if not isinstance(size1, int) or not isinstance(size2, int) or not 0 <= size1 <= size2:
        raise ProofError(f"sizes must satisfy 0 < size1 <= size2, got {size1} and {size2}")
    if size1 == 0:
        raise ProofError("a consistency proof from the empty tree proves nothing and is refused")
    if size1 == size2:  # spec 3.5.2 step 2: nothing is hashed, so root lengths are not checked
        _check_proof(proof, 0, "consistency (equal sizes)")
        if root1 != root2:
            raise ProofError(f"trees of equal size {size1} have different roots")
        return
    _check_hash("root1", root1)  # step 3: hash and proof lengths, before any hashing
    _check_hash("root2", root2)
    level, index = _consistency_start(size1)
    expected = (1 if index else 0) + _path_length(index, ((size2 - 1) >> level) + 1)
    _check_proof(proof, expected, f"consistency ({size1} to {size2})")
    # step 4: when size1 is a power of two the proof starts at root1 itself.
    path = list(proof) if index else [bytes(root1), *proof]
    fn, sn = size1 - 1, size2 - 1  # step 5, skipping the levels inside the start node
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]  # step 6
    for c in path[1:]:  # step 7
        if sn == 0:  # step 7a (unreachable after the length check; kept as in RFC 9162)
            raise ProofError("consistency proof is longer than the path to the root")
        if fn & 1 or fn == sn:  # step 7b: c is a left sibling, in both trees
            fr = _sha256(b"\x01" + c + fr).digest()
            sr = _sha256(b"\x01" + c + sr).digest()
            if not fn & 1:  # step 7c
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:  # step 7d: c is a right sibling, only in the new tree
            sr = _sha256(b"\x01" + sr + c).digest()
        fn, sn = fn >> 1, sn >> 1  # step 7e
    if sn != 0:  # spec 3.5.2 step 8
        raise ProofError("consistency proof is shorter than the path to the root")
    if fr != root1:  # step 9
        raise ProofError(f"consistency proof does not lead to root1 of size {size1}")
    if sr != root2:
        raise ProofError(f"consistency proof does not lead to root2 of size {size2}")


# --------------------------------------------------------------------------- in-memory store


class MemoryTree:
    """An in-memory log of leaf hashes and its stored nodes (spec 3.2), for tests and tools."""

    __slots__ = ("_levels",)

    def __init__(self, leaf_hashes: Sequence[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        self.extend(leaf_hashes)

    @property
    def size(self) -> int:
        """Number of leaves appended."""
        return len(self._levels[0])

    def get(self, level: int, index: int) -> bytes:
        """Return stored node ``(level, index)``.

        Raises:
            ValueError: if that subtree is not complete yet.
        """
        if level < 0 or index < 0 or level >= len(self._levels) or index >= len(self._levels[level]):
            raise ValueError(f"node ({level}, {index}) is not stored in a tree of size {self.size}")
        return self._levels[level][index]

    def _store(self, nodes: list[tuple[int, int, bytes]]) -> None:
        levels = self._levels
        for level, _, h in nodes:  # nodes arrive in index order at every level
            if level == len(levels):
                levels.append([])
            levels[level].append(h)

    def append(self, leaf_hash: bytes) -> int:
        """Append one leaf hash and return its index.

        Raises:
            ValueError: if ``leaf_hash`` is not 32 bytes.
        """
        index = self.size
        self._store(stored_hashes_for_leaf(index, leaf_hash, self.get))
        return index

    def extend(self, leaf_hashes: Sequence[bytes]) -> None:
        """Append leaf hashes in order; on :class:`ValueError` nothing is appended.

        Raises:
            ValueError: if a leaf hash is not 32 bytes.
        """
        self._store(stored_hashes_for_batch(self.size, leaf_hashes, self.get))

    def root(self, size: int | None = None) -> bytes:
        """Return the root of the first ``size`` leaves (default: all).

        Raises:
            ValueError: if ``size`` is negative or larger than the tree.
        """
        size = self.size if size is None else self._check_size(size)
        return tree_root(size, self.get)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """Return the inclusion proof of leaf ``index`` in the first ``size`` leaves (default: all).

        Raises:
            ValueError: if ``index`` or ``size`` is out of range.
        """
        size = self.size if size is None else self._check_size(size)
        return inclusion_proof(index, size, self.get)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """Return the consistency proof from ``size1`` to ``size2`` leaves (default: all).

        Raises:
            ValueError: if the sizes are out of range.
        """
        size2 = self.size if size2 is None else self._check_size(size2)
        return consistency_proof(size1, size2, self.get)

    def _check_size(self, size: int) -> int:
        if not 0 <= size <= self.size:
            raise ValueError(f"size {size} is outside a tree of {self.size} leaves")
        return size
