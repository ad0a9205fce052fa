"""Registry state of one log as a state map: keys, values, and the change a batch of entries makes.

Specified in specs/state.md section S.4. Every entry of a member log touches
one or two *state keys* (the issuer it registers, the key it adds, the
credential whose status it sets, ...). The value at a key is the list of
(index, leaf hash) of every entry of the log that touched it, oldest first,
so a proof of the value, together with those entries, gives everything the
registry knows of that thing, and a proof of absence shows that no entry of
the log ever touched it (no revocation, no status change). The map's root is
written in every checkpoint of the log (spec 4.3.5) and checked by witnesses.

:func:`plan_batch` computes, without writing anything, what a batch changes:
the new values, the new buckets and the new root; the caller stores the rows
in the transaction that stores the entries and then applies the update.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

from ledger import cbor
from ledger.bodies import (
    CredentialAnchor,
    CredentialStatus,
    GovernanceAdopt,
    IssuerKeyAdd,
    IssuerKeyRevoke,
    IssuerKeyRotate,
    IssuerRegister,
    IssuerUpdate,
    MemberPolicy,
)
from ledger.cbor import encode_head
from ledger.errors import DecodeError
from ledger.keys import key_id
from ledger.statemap import BUCKET_BITS, StateMap, StateMapUpdate, StateProof, bucket_of, subtree_hash, value_hash

__all__ = ["KEY_KINDS", "MemoryState", "PreparedBatch", "StateBatch", "StateKey", "StateValue", "keys_of", "plan_batch",
           "plan_prepared", "prepare_batch"]

#: Kind -> the types of the fields after it (spec S.4.1): the one table of state keys.
KEY_KINDS: dict[str, tuple[type, ...]] = {
    "issuer": (str,),          # issuer id: its registration and updates
    "key": (bytes,),           # key id: its addition, rotation (old and new key) and revocation
    "anchor": (bytes,),        # credential digest: every anchor of it
    "status": (str, bytes),    # issuer id, credential id: its status changes
    "policy": (),              # the log's member policy
    "adopt": (),               # the log's governance adoptions
}


@dataclass(frozen=True, slots=True)
class StateKey:
    """A key of a log's state map (spec S.4.1), e.g. ``StateKey("status", ("VN/customs", b"..."))``."""

    kind: str
    fields: tuple[str | bytes, ...] = ()

    def __post_init__(self) -> None:
        types = KEY_KINDS.get(self.kind) if isinstance(self.kind, str) else None
        if types is None:
            raise DecodeError(f"unknown state key kind {self.kind!r}; known: {', '.join(KEY_KINDS)}")
        if (not isinstance(self.fields, tuple) or len(self.fields) != len(types)
                or any(type(f) is not t for f, t in zip(self.fields, types))):
            names = ", ".join(t.__name__ for t in types) or "nothing"
            raise DecodeError(f"state key {self.kind!r} takes {names} after its kind")

    def encode(self) -> bytes:
        """Deterministic CBOR of ``[kind, fields...]`` (spec S.4.1), built directly (equal to ``cbor.encode``)."""
        return _key_bytes(self.kind, *self.fields)

    @property
    def path(self) -> bytes:
        """The key's path in the map: SHA-256 of :meth:`encode`."""
        return sha256(self.encode()).digest()

    @classmethod
    def decode(cls, data: bytes) -> StateKey:
        """Read the bytes of :meth:`encode`; raises DecodeError naming what is wrong."""
        item = cbor.decode(data)
        if not isinstance(item, list) or not item:
            raise DecodeError("a state key is the array [kind, fields...]")
        return cls(item[0], tuple(item[1:]))


@dataclass(frozen=True, slots=True)
class StateValue:
    """The value at a state key: (index, leaf hash) of each entry that touched it, ascending (spec S.4.2)."""

    entries: tuple[tuple[int, bytes], ...]

    def __post_init__(self) -> None:
        last = -1
        for item in self.entries:
            if (not isinstance(item, tuple) or len(item) != 2 or type(item[0]) is not int
                    or not isinstance(item[1], bytes) or len(item[1]) != 32):
                raise DecodeError("a state value lists (index, 32-byte leaf hash) pairs")
            if item[0] <= last:
                raise DecodeError("a state value lists its entries by strictly ascending index")
            last = item[0]
        if not self.entries:
            raise DecodeError("a state value lists at least one entry")

    def encode(self) -> bytes:
        """Deterministic CBOR of ``[[index, leaf hash], ...]``, built directly (equal to ``cbor.encode``)."""
        return encode_head(4, len(self.entries)) + b"".join(
            _PAIR + encode_head(0, i) + _HASH_HEAD + h for i, h in self.entries)

    @classmethod
    def decode(cls, data: bytes) -> StateValue:
        """Read the bytes of :meth:`encode`; raises DecodeError naming what is wrong."""
        item = cbor.decode(data)
        if not isinstance(item, list) or not all(isinstance(x, list) and len(x) == 2 for x in item):
            raise DecodeError("a state value is an array of [index, leaf hash] pairs")
        return cls(tuple((x[0], x[1]) for x in item))

    def before(self, size: int) -> tuple[tuple[int, bytes], ...]:
        """The entries among the first ``size`` of the log (an "as of" reading)."""
        return tuple(e for e in self.entries if e[0] < size)


_PAIR = encode_head(4, 2)
_HASH_HEAD = encode_head(2, 32)


def _text(s: str) -> bytes:
    b = s.encode("utf-8")
    return encode_head(3, len(b)) + b


def _keys_issuer(b: Any) -> tuple[StateKey, ...]:
    return (StateKey("issuer", (b.issuer,)),)


_KEYS: dict[type, Callable[[Any], tuple[StateKey, ...]]] = {
    IssuerRegister: _keys_issuer,
    IssuerUpdate: _keys_issuer,
    IssuerKeyAdd: lambda b: (StateKey("key", (key_id(b.key),)),),
    IssuerKeyRotate: lambda b: (StateKey("key", (b.old_kid,)), StateKey("key", (key_id(b.key),))),
    IssuerKeyRevoke: lambda b: (StateKey("key", (b.kid,)),),
    CredentialAnchor: lambda b: (StateKey("anchor", (b.digest,)),),
    CredentialStatus: lambda b: (StateKey("status", (b.issuer, b.credential_id)),),
    MemberPolicy: lambda b: (StateKey("policy"),),
    GovernanceAdopt: lambda b: (StateKey("adopt"),),
}


def keys_of(body: object) -> tuple[StateKey, ...]:
    """The state keys an entry body touches (spec S.4.1)."""
    return _KEYS[type(body)](body)


def _key_bytes(kind: str, *fields: str | bytes) -> bytes:
    # StateKey(kind, fields).encode() for fields of the right types (a checked entry's), without the checks
    return encode_head(4, 1 + len(fields)) + _text(kind) + b"".join(
        _text(f) if isinstance(f, str) else encode_head(2, len(f)) + f for f in fields)


def _issuer_key_bytes(b: Any) -> tuple[bytes, ...]:
    return (_key_bytes("issuer", b.issuer),)


#: The encodings of :func:`keys_of`, built directly: a batch encodes a key per entry.
_ENCODED_KEYS: dict[type, Callable[[Any], tuple[bytes, ...]]] = {
    IssuerRegister: _issuer_key_bytes,
    IssuerUpdate: _issuer_key_bytes,
    IssuerKeyAdd: lambda b: (_key_bytes("key", key_id(b.key)),),
    IssuerKeyRotate: lambda b: (_key_bytes("key", b.old_kid), _key_bytes("key", key_id(b.key))),
    IssuerKeyRevoke: lambda b: (_key_bytes("key", b.kid),),
    CredentialAnchor: lambda b: (_key_bytes("anchor", b.digest),),
    CredentialStatus: lambda b: (_key_bytes("status", b.issuer, b.credential_id),),
    MemberPolicy: lambda b: (_key_bytes("policy"),),
    GovernanceAdopt: lambda b: (_key_bytes("adopt"),),
}


@dataclass(frozen=True, slots=True)
class StateBatch:
    """What a batch of entries changes in a log's state map, not yet stored (:func:`plan_batch`).

    Attributes:
        values: path -> (encoded key, new encoded value, its hash), for every key the batch touched.
        buckets: bucket -> (leaf count, hash) for every bucket that changed.
        update: the change to the in-memory map; its ``root`` is the state root after the batch.
    """

    values: dict[bytes, tuple[bytes, bytes, bytes]]
    buckets: dict[int, tuple[int, bytes]]
    update: StateMapUpdate

    @property
    def root(self) -> bytes:
        """The state root after the batch."""
        return self.update.root


#: Reads the stored rows a batch needs: for the given buckets, (path, value hash) of every value in each, sorted
#: by path; and the encoded value at each of the given paths that holds one.
RowReader = Callable[[Iterable[int], Collection[bytes]],
                     tuple[Mapping[int, Sequence[tuple[bytes, bytes]]], Mapping[bytes, bytes]]]


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    """The keys a batch of entries touches and what the map holds there now (:func:`prepare_batch`).

    Attributes:
        start: the index of the batch's first entry.
        touched: path -> (encoded key, [(index, leaf hash)] the batch adds to its value), in first-touch order.
        first_paths: for each entry of the batch, the path of its first key.
        rows: bucket -> (path, value hash) of every value stored in it, for the buckets the batch touches.
        old: path -> encoded value stored there, for the touched paths that hold one.
    """

    start: int
    touched: dict[bytes, tuple[bytes, list[tuple[int, bytes]]]]
    first_paths: list[bytes]
    rows: Mapping[int, Sequence[tuple[bytes, bytes]]]
    old: Mapping[bytes, bytes]

    def replayed(self, leaf_hashes: Sequence[bytes]) -> tuple[int, int] | None:
        """(index in the log, index of the held copy) of the first entry the log already holds, else None.

        An entry touches its keys again with the same leaf hash, so the stored value of its first key lists it
        if the log holds it (spec 6.3.18): no index of entries by leaf hash is needed.
        """
        for i, (path, leaf) in enumerate(zip(self.first_paths, leaf_hashes)):
            held = self.old.get(path)
            if held is not None and _HASH_HEAD + leaf in held:
                for index, h in StateValue.decode(held).entries:
                    if h == leaf:
                        return self.start + i, index
        return None


def prepare_batch(state_map: StateMap, start: int, bodies: Sequence[object], leaf_hashes: Sequence[bytes],
                  read_rows: RowReader) -> PreparedBatch:
    """Collect the keys entries ``start, start + 1, ...`` touch and read what the map holds for them.

    ``read_rows`` is called once, for the buckets the map says are not empty.
    """
    touched: dict[bytes, tuple[bytes, list[tuple[int, bytes]]]] = {}
    first_paths = []
    for index, (body, leaf) in enumerate(zip(bodies, leaf_hashes), start):
        for n, key in enumerate(_ENCODED_KEYS[type(body)](body)):
            path = sha256(key).digest()
            if not n:
                first_paths.append(path)
            found = touched.get(path)
            if found is None:
                touched[path] = (key, [(index, leaf)])
            elif found[1][-1][0] != index:  # a rotation naming the same key twice touches it once
                found[1].append((index, leaf))
    wanted = {b for b in map(bucket_of, touched) if state_map.bucket_count(b)}
    rows, old = read_rows(wanted, [p for p in touched if bucket_of(p) in wanted]) if wanted else ({}, {})
    return PreparedBatch(start, touched, first_paths, rows, old)


def plan_prepared(state_map: StateMap, prepared: PreparedBatch) -> StateBatch:
    """The state change of a prepared batch: new values, buckets and root; nothing is written."""
    values: dict[bytes, tuple[bytes, bytes, bytes]] = {}
    by_bucket: dict[int, dict[bytes, bytes]] = {}
    for path, (key, added) in prepared.touched.items():
        pairs = b"".join(_PAIR + encode_head(0, i) + _HASH_HEAD + h for i, h in added)
        before = prepared.old.get(path)
        if before is None:
            encoded = encode_head(4, len(added)) + pairs
        else:  # the stored value's pairs, as stored, then the new ones (a longer array head)
            count, head = _array_head(before)
            encoded = encode_head(4, count + len(added)) + before[head:] + pairs
        vh = value_hash(encoded)
        values[path] = (key, encoded, vh)
        by_bucket.setdefault(bucket_of(path), {})[path] = vh
    leaves_of: dict[int, list[tuple[bytes, bytes]]] = {}
    for bucket, changed in by_bucket.items():
        stored = prepared.rows.get(bucket)
        if stored:
            merged = dict(stored)
            merged.update(changed)
            leaves_of[bucket] = sorted(merged.items())
        else:
            leaves_of[bucket] = sorted(changed.items())
    update = state_map.plan(leaves_of)
    bottom = update.levels[-1]
    return StateBatch(values, {b: bottom[b] for b in leaves_of}, update)


def plan_batch(state_map: StateMap, start: int, bodies: Sequence[object], leaf_hashes: Sequence[bytes],
               read_rows: RowReader) -> StateBatch:
    """The state change of entries ``start, start + 1, ...`` with these bodies and leaf hashes (both steps)."""
    return plan_prepared(state_map, prepare_batch(state_map, start, bodies, leaf_hashes, read_rows))


def _array_head(value: bytes) -> tuple[int, int]:
    # (item count, head length) of a stored value's CBOR array head (spec S.4.2: major type 4, shortest form)
    first = value[0]
    if first < 0x98:
        return first - 0x80, 1
    width = 1 << (first - 0x98)
    return int.from_bytes(value[1:1 + width], "big"), 1 + width


class MemoryState:
    """One log's state map held in memory, for sandboxes, replay and tests (a node keeps it in SQLite)."""

    def __init__(self) -> None:
        """Start empty."""
        self._values: dict[bytes, tuple[bytes, bytes]] = {}  # path -> (encoded key, encoded value)
        self._buckets: dict[int, dict[bytes, bytes]] = {}
        self._map = StateMap()

    @property
    def root(self) -> bytes:
        """The current state root."""
        return self._map.root

    def apply(self, start: int, bodies: Sequence[object], leaf_hashes: Sequence[bytes]) -> bytes:
        """Add entries ``start, start + 1, ...`` (already verified); returns the new state root."""
        batch = plan_batch(self._map, start, bodies, leaf_hashes, self._read_rows)
        for path, (key, value, vh) in batch.values.items():
            self._values[path] = (key, value)
            self._buckets.setdefault(bucket_of(path), {})[path] = vh
        self._map.apply(batch.update)
        return batch.root

    def value(self, path: bytes) -> bytes | None:
        """The encoded value at ``path``, or None."""
        found = self._values.get(path)
        return None if found is None else found[1]

    def items(self) -> dict[bytes, tuple[bytes, bytes]]:
        """Path -> (encoded key, encoded value), a copy."""
        return dict(self._values)

    def buckets(self) -> dict[int, tuple[int, bytes]]:
        """Bucket -> (leaf count, hash) of every non-empty bucket."""
        return {b: (len(leaves), subtree_hash(sorted(leaves.items()), BUCKET_BITS))
                for b, leaves in self._buckets.items()}

    def prove(self, path: bytes) -> StateProof:
        """A proof for ``path`` against :attr:`root`."""
        return self._map.prove(path, self._read_bucket)

    def _read_rows(self, buckets: Iterable[int], paths: Collection[bytes]
                   ) -> tuple[dict[int, list[tuple[bytes, bytes]]], dict[bytes, bytes]]:
        return ({b: self._read_bucket(b) for b in buckets},
                {p: self._values[p][1] for p in paths if p in self._values})

    def _read_bucket(self, bucket: int) -> list[tuple[bytes, bytes]]:
        return sorted(self._buckets.get(bucket, {}).items())
