"""The state map: an authenticated map from 32-byte paths to values, with proofs of presence and absence.

Specified in specs/state.md sections S.2 and S.3. The map is a binary Merkle
tree over the 256 bits of each path in which a subtree that holds exactly one
leaf is that leaf's hash (no chain of one-child nodes down to depth 256) and
an empty subtree is 32 zero bytes. Its root depends only on the set of
(path, value) pairs, never on the order they were added in.

:func:`map_root` is the definition, computed from scratch; :class:`StateMap`
keeps the root of a large map current as buckets (the subtrees at depth
:data:`BUCKET_BITS`) change, holding only the top of the tree in memory: the
leaves stay wherever the caller keeps them (a SQLite table in a node) and
are read one bucket at a time. :func:`verify_state_proof` is what a light
verifier runs. This module does no I/O.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

from ledger import cbor
from ledger.errors import DecodeError, VerificationError

__all__ = [
    "BUCKET_BITS",
    "EMPTY",
    "LEAF_PREFIX",
    "NODE_PREFIX",
    "BucketReader",
    "StateMap",
    "StateMapUpdate",
    "StateProof",
    "StateProofError",
    "bucket_of",
    "leaf_node",
    "map_root",
    "prove",
    "subtree_hash",
    "value_hash",
    "verify_state_proof",
]

#: The hash of an empty subtree (spec S.2.2).
EMPTY = bytes(32)
#: Domain prefixes of leaf and inner nodes (spec S.2.2); distinct from RFC 9162's 0x00 and 0x01.
LEAF_PREFIX = b"\x02"
NODE_PREFIX = b"\x03"
#: Depth of the buckets :class:`StateMap` recomputes from their leaves (an implementation choice, spec S.5).
BUCKET_BITS = 18
_MAX_DEPTH = 256

#: Reads one bucket: every (path, value hash) whose first BUCKET_BITS bits are the bucket number, sorted by path.
BucketReader = Callable[[int], Sequence[tuple[bytes, bytes]]]


class StateProofError(VerificationError):
    """A state proof is malformed or does not lead to the state root it is checked against."""


def value_hash(value: bytes) -> bytes:
    """SHA-256 of a value's bytes (spec S.2.2)."""
    return sha256(value).digest()


def leaf_node(path: bytes, vhash: bytes) -> bytes:
    """The hash of the leaf for ``path`` whose value hashes to ``vhash``: SHA-256(0x02 || path || vhash)."""
    return sha256(LEAF_PREFIX + path + vhash).digest()


def _inner(left: bytes, right: bytes) -> bytes:
    return sha256(NODE_PREFIX + left + right).digest()


def _bit(path: bytes, depth: int) -> int:
    return (path[depth >> 3] >> (7 - (depth & 7))) & 1


def bucket_of(path: bytes) -> int:
    """The bucket (the first BUCKET_BITS bits, as a number) that ``path`` falls in."""
    return int.from_bytes(path[:3], "big") >> (24 - BUCKET_BITS)


def _check_path(path: object) -> bytes:
    if not isinstance(path, bytes) or len(path) != 32:
        raise DecodeError("a state map path must be 32 bytes")
    return path


def _split(leaves: Sequence[tuple[bytes, bytes]], lo: int, hi: int, depth: int) -> int:
    # The leaves [lo, hi) share their first ``depth`` bits and are sorted: the first index whose bit is 1.
    while lo < hi:
        mid = (lo + hi) >> 1
        if _bit(leaves[mid][0], depth):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _subtree(leaves: Sequence[tuple[bytes, bytes]], lo: int, hi: int, depth: int) -> bytes:
    n = hi - lo
    if n == 0:
        return EMPTY
    if n == 1:
        path, vhash = leaves[lo]
        return leaf_node(path, vhash)
    mid = _split(leaves, lo, hi, depth)
    return _inner(_subtree(leaves, lo, mid, depth + 1), _subtree(leaves, mid, hi, depth + 1))


def subtree_hash(leaves: Sequence[tuple[bytes, bytes]], depth: int) -> bytes:
    """The hash of the subtree at ``depth`` holding ``leaves`` (spec S.2.3).

    Args:
        leaves: (path, value hash) pairs sorted by path, all sharing their first ``depth`` bits.
        depth: the subtree's depth, 0 for the whole map.
    """
    return _subtree(leaves, 0, len(leaves), depth)


def map_root(items: Mapping[bytes, bytes]) -> bytes:
    """The state root of a map given as path -> value, computed from scratch (spec S.2.3)."""
    leaves = sorted((_check_path(p), value_hash(v)) for p, v in items.items())
    return subtree_hash(leaves, 0)


# --------------------------------------------------------------------------- proofs (spec S.3)


@dataclass(frozen=True, slots=True)
class StateProof:
    """A proof that a path holds a value, or holds none, under a state root (spec S.3.1).

    Attributes:
        siblings: top down, the hash of the sibling of each node on the path from the root to where the
            path's subtree holds one leaf or none; ``EMPTY`` for an empty sibling. Its length is that depth.
        other: for absence only, when the subtree where the proof ends holds a leaf of another path: that
            (path, value hash); None otherwise.
    """

    siblings: tuple[bytes, ...]
    other: tuple[bytes, bytes] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.siblings, tuple) or len(self.siblings) > _MAX_DEPTH:
            raise DecodeError(f"a state proof has at most {_MAX_DEPTH} siblings, as a tuple")
        if any(not isinstance(s, bytes) or len(s) != 32 for s in self.siblings):
            raise DecodeError("every sibling of a state proof is 32 bytes")
        if self.other is not None and (not isinstance(self.other, tuple) or len(self.other) != 2
                or not all(isinstance(x, bytes) and len(x) == 32 for x in self.other)):
            raise DecodeError("the other leaf of a state proof is a (32-byte path, 32-byte value hash) pair")

    def to_cbor(self) -> list[Any]:
        """The proof as a CBOR data item: ``[siblings, other]``, an empty sibling as ``h''`` (spec S.3.2)."""
        other = None if self.other is None else list(self.other)
        return [[b"" if s == EMPTY else s for s in self.siblings], other]

    def encode(self) -> bytes:
        """Deterministic CBOR of :meth:`to_cbor`."""
        return cbor.encode(self.to_cbor())

    @classmethod
    def from_cbor(cls, item: Any) -> StateProof:
        """Read the CBOR data item of :meth:`to_cbor`; raises DecodeError naming what is wrong."""
        if not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], list):
            raise DecodeError("a state proof is the array [siblings, other]")
        siblings = []
        for s in item[0]:
            if not isinstance(s, bytes) or len(s) not in (0, 32):
                raise DecodeError("a state proof sibling is a 32-byte string, or empty for an empty subtree")
            siblings.append(s or EMPTY)
        other = item[1]
        if other is not None and (not isinstance(other, list) or len(other) != 2):
            raise DecodeError("the other leaf of a state proof is null or [path, value hash]")
        return cls(tuple(siblings), None if other is None else (other[0], other[1]))

    @classmethod
    def decode(cls, data: bytes) -> StateProof:
        """Decode the bytes of :meth:`encode`."""
        return cls.from_cbor(cbor.decode(data))


def verify_state_proof(root: bytes, path: bytes, value: bytes | None, proof: StateProof) -> None:
    """Check that under ``root`` the map holds ``value`` at ``path``, or nothing when ``value`` is None.

    Raises:
        StateProofError: the proof does not show that (the message says why).
        DecodeError: ``path`` or ``root`` is not 32 bytes.
    """
    _check_path(path)
    if not isinstance(root, bytes) or len(root) != 32:
        raise DecodeError("a state root is 32 bytes")
    depth = len(proof.siblings)
    if value is not None:
        if proof.other is not None:
            raise StateProofError("a proof of presence names no other leaf")
        node = leaf_node(path, value_hash(value))
    elif proof.other is None:
        node = EMPTY
    else:
        other_path, other_vhash = proof.other
        if other_path == path:
            raise StateProofError("a proof of absence shows a leaf of the very path it says is absent")
        if any(_bit(other_path, d) != _bit(path, d) for d in range(depth)):
            raise StateProofError("the other leaf of a proof of absence is not on the path's branch")
        node = leaf_node(other_path, other_vhash)
    for d in range(depth - 1, -1, -1):
        sibling = proof.siblings[d]
        node = _inner(sibling, node) if _bit(path, d) else _inner(node, sibling)
    if node != root:
        what = "holds this value" if value is not None else "holds nothing"
        raise StateProofError(f"the proof that path {path.hex()} {what} leads to root {node.hex()},"
                              f" not to the state root {root.hex()}")


def _prove_sorted(leaves: Sequence[tuple[bytes, bytes]], path: bytes, depth: int,
                  siblings: list[bytes]) -> StateProof:
    lo, hi = 0, len(leaves)
    while True:
        if hi - lo == 0:
            return StateProof(tuple(siblings))
        if hi - lo == 1:
            p, vh = leaves[lo]
            return StateProof(tuple(siblings), None if p == path else (p, vh))
        mid = _split(leaves, lo, hi, depth)
        if _bit(path, depth):
            siblings.append(_subtree(leaves, lo, mid, depth + 1))
            lo = mid
        else:
            siblings.append(_subtree(leaves, mid, hi, depth + 1))
            hi = mid
        depth += 1


def prove(items: Mapping[bytes, bytes], path: bytes) -> StateProof:
    """A proof for ``path`` in a map given as path -> value, computed from scratch (for tests and tools)."""
    leaves = sorted((_check_path(p), value_hash(v)) for p, v in items.items())
    return _prove_sorted(leaves, _check_path(path), 0, [])


# --------------------------------------------------------------------------- the incremental map (spec S.5)

_Node = tuple[int, bytes]  # (leaf count, hash)
_NONE: _Node = (0, EMPTY)


def _parent(left: _Node, right: _Node) -> _Node:
    n = left[0] + right[0]
    if n == 0:
        return _NONE
    if n == 1:
        return (1, left[1] if left[0] else right[1])
    return (n, sha256(NODE_PREFIX + left[1] + right[1]).digest())


@dataclass(frozen=True, slots=True)
class StateMapUpdate:
    """The top of the tree after some buckets change, not yet applied (:meth:`StateMap.plan`).

    Attributes:
        root: the state root after the change.
        levels: per depth 0..BUCKET_BITS, the nodes that change: prefix -> (leaf count, hash).
    """

    root: bytes
    levels: tuple[dict[int, _Node], ...]


class _Level:
    """Every node of one depth of the top: 2^depth leaf counts and hashes in two flat arrays.

    The arrays are anonymous memory maps: their pages are zero until written, and take memory only once a
    subtree under them holds a leaf.
    """

    __slots__ = ("counts", "hashes")

    def __init__(self, depth: int) -> None:
        self.counts = memoryview(mmap.mmap(-1, 4 << depth)).cast("I")
        self.hashes = mmap.mmap(-1, 32 << depth)

    def get(self, prefix: int) -> _Node:
        count = self.counts[prefix]
        if not count:
            return _NONE
        at = prefix << 5
        return (count, self.hashes[at:at + 32])

    def put(self, prefix: int, node: _Node) -> None:
        self.counts[prefix] = node[0]
        at = prefix << 5
        self.hashes[at:at + 32] = node[1]


class StateMap:
    """The root of a large state map, kept current bucket by bucket (spec S.5).

    Holds, for each depth up to :data:`BUCKET_BITS`, the leaf count and hash of every subtree in two flat
    arrays per depth: at most 19 MB for the 2^19 nodes, whatever the number of leaves (a page of them takes
    memory once it holds a node). A change is planned (:meth:`plan`, which changes nothing) and then applied
    (:meth:`apply`) once the caller has stored the leaves, so a failed write leaves the map as it was.
    """

    def __init__(self, buckets: Iterable[tuple[int, int, bytes]] = ()) -> None:
        """Start from stored buckets: (bucket, leaf count, hash) of each non-empty one.

        Raises:
            DecodeError: a bucket number that is not BUCKET_BITS bits, a count that is not below 2^32, or a hash
                that is not 32 bytes.
        """
        self._levels: list[_Level] | None = None
        dirty = set()
        for bucket, count, digest in buckets:
            if (type(bucket) is not int or not 0 <= bucket < 1 << BUCKET_BITS or type(count) is not int
                    or not 0 <= count < 1 << 32 or not isinstance(digest, bytes) or len(digest) != 32):
                raise DecodeError(f"state bucket {bucket!r:.20}: not a {BUCKET_BITS}-bit bucket number with a leaf"
                                  " count below 2^32 and a 32-byte hash")
            if count:
                self._top()[BUCKET_BITS].put(bucket, (count, digest))
                dirty.add(bucket)
        for depth in range(BUCKET_BITS - 1, -1, -1):
            below, here = self._top()[depth + 1], self._top()[depth]
            dirty = {b >> 1 for b in dirty}
            for prefix in dirty:
                here.put(prefix, _parent(below.get(2 * prefix), below.get(2 * prefix + 1)))

    def _top(self) -> list[_Level]:
        if self._levels is None:
            self._levels = [_Level(depth) for depth in range(BUCKET_BITS + 1)]
        return self._levels

    def _node(self, depth: int, prefix: int) -> _Node:
        return _NONE if self._levels is None else self._levels[depth].get(prefix)

    @property
    def root(self) -> bytes:
        """The current state root."""
        return self._node(0, 0)[1]

    @property
    def leaf_count(self) -> int:
        """How many leaves the map holds."""
        return self._node(0, 0)[0]

    def bucket_count(self, bucket: int) -> int:
        """How many leaves ``bucket`` holds (0 for an empty one, which needs no reading)."""
        return 0 if self._levels is None else self._levels[BUCKET_BITS].counts[bucket]

    def plan(self, buckets: Mapping[int, Sequence[tuple[bytes, bytes]]]) -> StateMapUpdate:
        """The root if the given buckets held the given leaves; the map itself does not change.

        Args:
            buckets: bucket number -> every (path, value hash) it will hold, sorted by path.
        """
        levels: list[dict[int, _Node]] = [{} for _ in range(BUCKET_BITS + 1)]
        bottom = levels[BUCKET_BITS]
        for bucket, leaves in buckets.items():
            bottom[bucket] = (len(leaves), subtree_hash(leaves, BUCKET_BITS))
        dirty: Iterable[int] = bottom
        for depth in range(BUCKET_BITS - 1, -1, -1):
            new_below, here = levels[depth + 1], levels[depth]
            old = self._levels[depth + 1].get if self._levels is not None else (lambda _: _NONE)
            parents = {b >> 1 for b in dirty}
            for prefix in parents:
                left, right = 2 * prefix, 2 * prefix + 1
                here[prefix] = _parent(new_below.get(left) or old(left), new_below.get(right) or old(right))
            dirty = parents
        top = levels[0].get(0) or self._node(0, 0)
        return StateMapUpdate(top[1], tuple(levels))

    def apply(self, update: StateMapUpdate) -> None:
        """Make a planned change current (after its leaves are stored)."""
        if not any(update.levels):
            return
        for mine, changed in zip(self._top(), update.levels):
            for prefix, node in changed.items():
                mine.put(prefix, node)

    def prove(self, path: bytes, read_bucket: BucketReader) -> StateProof:
        """A proof for ``path`` against :attr:`root`, reading at most two buckets through ``read_bucket``."""
        _check_path(path)
        siblings: list[bytes] = []
        top = bucket_of(path)
        for depth in range(BUCKET_BITS + 1):
            prefix = top >> (BUCKET_BITS - depth)
            count, _ = self._node(depth, prefix)
            if count == 0:
                return StateProof(tuple(siblings))
            if count == 1:
                leaves = read_bucket(self._only_bucket(depth, prefix))
                return _prove_sorted(leaves, path, depth, siblings)
            if depth == BUCKET_BITS:
                return _prove_sorted(read_bucket(top), path, depth, siblings)
            other = 2 * prefix + 1 - _bit(path, depth)
            siblings.append(self._node(depth + 1, other)[1])
        raise AssertionError("unreachable: the walk ends at the bucket depth")  # pragma: no cover

    def _only_bucket(self, depth: int, prefix: int) -> int:
        # The one non-empty bucket under a subtree that holds one leaf.
        while depth < BUCKET_BITS:
            depth += 1
            prefix = 2 * prefix if self._node(depth, 2 * prefix)[0] else 2 * prefix + 1
        return prefix
