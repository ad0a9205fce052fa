"""Replay of the state maps (spec 7.5.1 step 8): recompute each log's state root and compare what is stored.

Used by :func:`ledger.replay.replay`. The state map of a log is recomputed in memory from the entries that
passed every check, with its root taken at every size where the database says a batch ended or a checkpoint
was made; then the stored state roots, buckets and values must equal the recomputed ones, and every
checkpoint's ``state`` line must carry the recomputed root at its size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from ledger import merkle
from ledger.checkpoint import Checkpoint
from ledger.credbook import book_rows
from ledger.entries import UnverifiedEntry
from ledger.errors import DecodeError, VerificationError
from ledger.finality import state_reference
from ledger.state import MemoryState, StateKey, StateValue
from ledger.statemap import BUCKET_BITS, EMPTY, bucket_of, subtree_hash, value_hash
from ledger.storage import Storage

__all__ = ["StateReplay"]

Report = Callable[[str, str], None]
T = TypeVar("T")


class StateReplay:
    """The state map of one log, recomputed while its entries are replayed."""

    def __init__(self, storage: Storage, log: str) -> None:
        """Note the sizes at which the database holds a state root or a checkpoint of ``log``."""
        self.log = log
        self._cuts = {s for s, _ in storage.checkpoints(log)} | {s for s, _ in storage.state_roots(log)}
        self._state = MemoryState()
        self.roots: dict[int, bytes] = {0: EMPTY}
        self._size = 0
        self._registry: list[int] = []
        self._credential_anchors: list[tuple[int, str, bytes]] = []

    def add(self, start: int, entries: Sequence[UnverifiedEntry], raws: Sequence[bytes]) -> None:
        """Add verified entries ``start, ...``; roots are kept at every noted size they reach."""
        if start != self._size:
            raise ValueError(f"state replay of log {self.log} holds {self._size} entries, not {start}")
        lo = 0
        for i in range(1, len(entries) + 1):
            if start + i in self._cuts or i == len(entries):
                self._state.apply(start + lo, [e.body for e in entries[lo:i]],
                                  [merkle.leaf_hash(r) for r in raws[lo:i]])
                self.roots[start + i] = self._state.root
                lo = i
        rows = book_rows(start, [e.body for e in entries])
        self._registry += rows.registry
        self._credential_anchors += [(i, issuer, cti) for issuer, cti, i in rows.credential_anchors]
        self._size = start + len(entries)

    def check_checkpoint(self, cp: Checkpoint) -> None:
        """The checkpoint's state line carries the recomputed state root at its size.

        Raises:
            DecodeError: no well-formed state line.
            VerificationError: a root other than the recomputed one (or none could be recomputed there).
        """
        claimed = state_reference(cp)
        mine = self.roots.get(cp.size)
        if mine is None:
            raise VerificationError(f"carries state root {claimed.hex()}, which cannot be recomputed at size"
                                    f" {cp.size} (an entry before it failed)")
        if claimed != mine:
            raise VerificationError(f"carries state root {claimed.hex()}, but the entries give {mine.hex()}")

    def check_stored(self, storage: Storage, report: Report) -> None:
        """Compare the stored state roots, buckets and values of the log with the recomputed ones."""
        where = f"log {self.log} state"
        for size, root in storage.state_roots(self.log):
            mine = self.roots.get(size)
            if size <= self._size and mine != root:
                report(f"{where} root size {size}", f"stored {root.hex()}, recomputed"
                       f" {mine.hex() if mine else 'nothing'}")
            elif size > self._size:
                report(f"{where} root size {size}", f"stored beyond the {self._size} entries that verify")
        if storage.size(self.log) != self._size:
            return  # a failed entry stops the recomputation; the values cannot be compared
        buckets = {b: (c, h) for b, c, h in storage.state_buckets(self.log)}
        if buckets != self._state.buckets():
            bad = sorted(set(buckets.items()) ^ set(self._state.buckets().items()))[:3]
            report(f"{where} buckets", f"differ from the recomputed map (first buckets: {[b for b, _ in bad]})")
        mine_values = self._state.items()
        stored = 0
        for path, key, value in storage.iter_state_values(self.log):
            stored += 1
            if mine_values.get(path) != (key, value):
                report(f"{where} value {path.hex()}", f"stored value of key {_show(key)} differs from the entries")
        if stored != len(mine_values):
            report(f"{where} values", f"{stored} stored, {len(mine_values)} recomputed")
        self._check_pending(storage, report, mine_values)
        self._check_registry_rows(storage, report)

    def _check_pending(self, storage: Storage, report: Report, mine: dict[bytes, tuple[bytes, bytes]]) -> None:
        # spec 7.1.16: every pending row, the newest of its path or bucket or an older one, holds the value or
        # bucket at the size of the batch that wrote it; the merged rows under them hold those of the last
        # merge (the batch end before the first pending row); every merged row is in its path's bucket and
        # hashes to its value hash. The recomputed value lists every entry: its part before a size is the value
        # at that size.
        where = f"log {self.log} state"
        values, buckets = storage.pending_state_rows(self.log)
        past = _PastState(mine, {b for _, _, b, _, _ in buckets} | {bucket_of(p) for _, _, p, _, _, _ in values})
        for seq, size, path, key, value, vh in values:
            if size > self._size or mine.get(path, (None,))[0] != key or past.value(path, size) != (value, vh) \
                    or value_hash(value) != vh:
                report(f"{where} pending value {seq}", f"the row of key {_show(key)} at size {size} is not the value"
                       " the entries give there")
        for seq, size, bucket, count, digest in buckets:
            if size > self._size or (count, digest) != past.bucket(bucket, size):
                report(f"{where} pending bucket {seq}", f"the row of bucket {bucket} at size {size} is not the"
                       " bucket the entries give there")
        first = min((size for _, size, *_ in values), default=None)
        merged = max((s for s, _ in storage.state_roots(self.log) if first is None or s < first), default=0)
        pending = {path for _, _, path, _, _, _ in values}
        for bucket, path, key, value, vh in storage.stored_state_values(self.log):
            if bucket != bucket_of(path) or value_hash(value) != vh or (path in pending and (
                    mine.get(path, (None,))[0] != key or past.value(path, merged) != (value, vh))):
                report(f"{where} value {path.hex()}", f"the stored row of key {_show(key)} in bucket {bucket} is not"
                       f" the value the entries give at the last merge (size {merged})")
        stored = storage.stored_state_buckets(self.log)
        for bucket in {b for _, _, b, _, _ in buckets}:
            count, digest = past.bucket(bucket, merged)
            if stored.get(bucket) != ((count, digest) if count else None):
                report(f"{where} buckets", f"the stored row of bucket {bucket} is not the bucket the entries give at"
                       f" the last merge (size {merged})")

    def _check_registry_rows(self, storage: Storage, report: Report) -> None:
        # spec 7.5.1 step 8: the registry tables (7.1.14, 7.1.15) list exactly what the entries give
        stored_registry = storage.registry_entries(self.log)
        if stored_registry != self._registry:
            report(f"log {self.log} registry_entries", _differ(stored_registry, self._registry, lambda i: i))
        stored_anchors = storage.all_credential_anchors(self.log)
        if stored_anchors != self._credential_anchors:
            report(f"log {self.log} credential_anchors", _differ(stored_anchors, self._credential_anchors,
                                                                 lambda row: row[0]))


class _PastState:
    """The recomputed state of a log at an earlier size, for the paths and buckets pending rows name."""

    def __init__(self, mine: dict[bytes, tuple[bytes, bytes]], buckets: set[int]) -> None:
        self._mine = mine
        self._decoded: dict[bytes, tuple[tuple[int, bytes], ...]] = {}
        self._hashes: dict[bytes, bytes] = {}
        self._paths: dict[int, list[bytes]] = {b: [] for b in buckets}
        for path in mine:
            if (b := bucket_of(path)) in self._paths:
                self._paths[b].append(path)
        for found in self._paths.values():
            found.sort()

    def value(self, path: bytes, size: int) -> tuple[bytes, bytes] | None:
        """(value, value hash) of ``path`` after the first ``size`` entries; the whole value is hashed once."""
        found = self._mine.get(path)
        if found is None:
            return None
        entries = self._decoded.get(path)
        if entries is None:
            entries = self._decoded[path] = StateValue.decode(found[1]).entries
        if entries[-1][0] < size:
            if path not in self._hashes:
                self._hashes[path] = value_hash(found[1])
            return found[1], self._hashes[path]
        before = StateValue(entries).before(size)
        value = StateValue(before).encode() if before else None
        return None if value is None else (value, value_hash(value))

    def bucket(self, bucket: int, size: int) -> tuple[int, bytes]:
        """(count, hash) of ``bucket`` (one named at construction) after the first ``size`` entries."""
        leaves = [(p, v[1]) for p in self._paths[bucket] if (v := self.value(p, size)) is not None]
        return len(leaves), subtree_hash(leaves, BUCKET_BITS)


def _differ(stored: Sequence[T], mine: Sequence[T], index: Callable[[T], int]) -> str:
    mine_set, stored_set = set(mine), set(stored)
    extra = [index(r) for r in stored if r not in mine_set][:1]
    missing = [index(r) for r in mine if r not in stored_set][:1]
    first = (f"first extra row at entry {extra[0]}" if extra else
             f"first missing row at entry {missing[0]}" if missing else "rows out of order")
    return f"{len(stored)} rows stored, {len(mine)} given by the entries ({first})"


def _show(key: bytes) -> str:
    try:
        k = StateKey.decode(key)
    except DecodeError:
        return key.hex()
    return f"{k.kind} " + " ".join(f.hex() if isinstance(f, bytes) else f for f in k.fields)
