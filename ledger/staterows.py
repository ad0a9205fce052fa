"""The queries of the state tables (spec 7.1.11 to 7.1.13, 7.1.16): values, buckets and state roots of each log.

A mixin of :class:`ledger.storage.Storage`, kept apart so that each module stays small. It uses the
storage's connection, lock and error wrapping; the rows of a batch are written by
:meth:`ledger.storage.Storage.append_entries` in the transaction that stores the batch's entries.

A batch's new values and buckets go to the *pending* tables (spec 7.1.16), whose rows are appended in
order, so a batch writes a few fresh pages instead of one page of the large ``state_values`` B-tree per
value (its paths are hashes: every insert lands on a random page). Once a log has ``merge_rows``
pending rows (:data:`MERGE_ROWS` by default) or :data:`MERGE_BYTES` of pending values, the batch that
reaches it also merges them, sorted, into ``state_values`` and ``state_buckets``: each page of those is
then written once per merge, not once per value. The ``credential_anchors`` rows of a batch wait the same way
in ``credential_anchors_pending`` and are merged with the state rows. The newest pending row of each path
and bucket, and every pending anchor row, are kept in memory (loaded once per log, at most ``merge_rows``
rows of each), and every read below sees the merged state: the pending rows over the merged tables.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from functools import partial
from typing import TYPE_CHECKING

from ledger.errors import StorageError
from ledger.statemap import bucket_of

if TYPE_CHECKING:
    from ledger.credbook import BookRows
    from ledger.state import StateBatch

__all__ = ["StateRows"]

_CHUNK = 500  # SQLite's variable limit, with room for the log
#: Pending rows of one log at which a batch merges them into ``state_values`` and ``state_buckets`` (spec 7.1.16).
MERGE_ROWS = 50_000
#: Bytes of pending keys and values of one log at which a batch merges them too: a key rewritten batch after
#: batch (a credential's status) adds its whole, growing value each time (spec 7.1.16).
MERGE_BYTES = 32 * 1024 * 1024

_Row = tuple[bytes, bytes, bytes]  # (encoded key, encoded value, value hash)


class PendingRows:
    """The newest pending row of each path and bucket of one log, and its pending anchor rows, as
    ``state_pending``, ``state_pending_buckets`` and ``credential_anchors_pending`` hold them."""

    __slots__ = ("anchors", "buckets", "bytes", "rows", "values")

    def __init__(self) -> None:
        self.values: dict[int, dict[bytes, _Row]] = {}  # bucket -> path -> row
        self.buckets: dict[int, tuple[int, bytes]] = {}  # bucket -> (count, hash)
        self.anchors: dict[tuple[str, bytes], list[int]] = {}  # (issuer, credential id) -> pending anchor indices
        self.rows = 0  # rows in the two pending state tables for this log
        self.bytes = 0  # bytes of the keys and values of those rows

    def add(self, values: Iterable[tuple[bytes, _Row]], buckets: dict[int, tuple[int, bytes]],
            anchors: Iterable[tuple[str, bytes, int]] = ()) -> None:
        for path, row in values:
            self.values.setdefault(bucket_of(path), {})[path] = row
            self.rows += 1
            self.bytes += len(row[0]) + len(row[1])
        self.buckets.update(buckets)
        self.rows += len(buckets)
        for issuer, credential_id, index in anchors:
            self.anchors.setdefault((issuer, credential_id), []).append(index)

    def value(self, path: bytes) -> _Row | None:
        return self.values.get(bucket_of(path), {}).get(path)

    def over(self, bucket: int, stored: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """The (path, value hash) pairs of ``bucket``: the ``stored`` ones under the pending rows, by path."""
        newer = self.values.get(bucket)
        if not newer:
            return sorted(stored)
        merged = dict(stored)
        merged.update((path, row[2]) for path, row in newer.items())
        return sorted(merged.items())


class StateRows:
    """Reads and writes of ``state_values``, ``state_buckets``, ``state_roots`` and the pending tables (7.1.16)."""

    _conn: sqlite3.Connection
    _wrap: Callable[[str], AbstractContextManager[None]]
    _pending: dict[str, PendingRows]
    merge_rows: int = MERGE_ROWS

    def _pending_of(self, log: str) -> PendingRows:
        # Caller holds the lock. Loaded once per log: at most merge_rows rows, whatever the log's length.
        pending = self._pending.get(log)
        if pending is None:
            pending = PendingRows()
            values = self._conn.execute("SELECT path, key, value, value_hash FROM state_pending WHERE log = ?"
                                        " ORDER BY seq", (log,))
            pending.add(((bytes(p), (bytes(k), bytes(v), bytes(h))) for p, k, v, h in values), {})
            for bucket, count, digest in self._conn.execute(
                    "SELECT bucket, count, hash FROM state_pending_buckets WHERE log = ? ORDER BY seq", (log,)):
                pending.buckets[int(bucket)] = (int(count), bytes(digest))
                pending.rows += 1
            pending.add((), {}, ((str(i), bytes(c), int(x)) for i, c, x in self._conn.execute(
                "SELECT issuer, credential_id, idx FROM credential_anchors_pending WHERE log = ? ORDER BY seq", (log,))))
            self._pending[log] = pending
        return pending

    def state_rows(self, log: str, buckets: Iterable[int], paths: Collection[bytes]
                   ) -> tuple[dict[int, list[tuple[bytes, bytes]]], dict[bytes, bytes]]:
        """What a batch of entries needs of ``log``'s map (``ledger.state.RowReader``): bucket -> (path, value
        hash) of every value in each of ``buckets``, sorted by path, and path -> encoded value for those of
        ``paths`` that hold one. One indexed query per 500 buckets or paths."""
        wanted = sorted(set(buckets))
        found: dict[int, list[tuple[bytes, bytes]]] = {b: [] for b in wanted}
        values: dict[bytes, bytes] = {}
        with self._wrap(f"read state buckets of log {log}"):
            for i in range(0, len(wanted), _CHUNK):
                chunk = wanted[i:i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                for bucket, path, vh in self._conn.execute(
                        f"SELECT bucket, path, value_hash FROM state_values WHERE log = ? AND bucket IN ({marks})"
                        " ORDER BY bucket, path", (log, *chunk)):
                    found[bucket].append((path, vh))
            pending = self._pending_of(log)
            for bucket in wanted:
                found[bucket] = pending.over(bucket, found[bucket])
            present = {path for rows in found.values() for path, _ in rows}
            for path in paths:  # the values themselves only where the batch adds to them (a few)
                if path in present:
                    held = self._value(log, path)
                    if held is None:  # listed in its bucket, yet no row at its bucket: a misfiled row
                        raise StorageError(f"log {log}: state value {path.hex()} is listed in bucket {bucket_of(path)}"
                                           " but not stored there; replay the database (mekong audit replay)")
                    values[path] = held[1]
        return found, values

    def _value(self, log: str, path: bytes) -> _Row | None:
        # Caller holds the lock: the pending row of ``path``, else the merged one.
        row = self._pending_of(log).value(path)
        if row is not None:
            return row
        found = self._conn.execute("SELECT key, value, value_hash FROM state_values WHERE log = ? AND bucket = ?"
                                   " AND path = ?", (log, bucket_of(path), path)).fetchone()
        return None if found is None else (bytes(found[0]), bytes(found[1]), bytes(found[2]))

    def state_value(self, log: str, path: bytes) -> tuple[bytes, bytes] | None:
        """(encoded key, encoded value) at ``path`` of ``log``'s map, or None."""
        with self._wrap(f"read a state value of log {log}"):
            row = self._value(log, path)
        return None if row is None else (row[0], row[1])

    def state_bucket(self, log: str, bucket: int) -> list[tuple[bytes, bytes]]:
        """(path, value hash) of every value of ``log`` in ``bucket``, sorted by path."""
        with self._wrap(f"read state bucket {bucket} of log {log}"):
            return self._pending_of(log).over(bucket, ((bytes(p), bytes(h)) for p, h in self._conn.execute(
                "SELECT path, value_hash FROM state_values WHERE log = ? AND bucket = ?", (log, bucket))))

    def state_buckets(self, log: str) -> Iterator[tuple[int, int, bytes]]:
        """(bucket, leaf count, hash) of every non-empty bucket of ``log``'s map."""
        with self._wrap(f"read the state buckets of log {log}"):
            rows = self.stored_state_buckets(log)
            rows.update(self._pending_of(log).buckets)
        return ((b, c, h) for b, (c, h) in rows.items())

    def pending_state_rows(self, log: str) -> tuple[list[tuple[int, int, bytes, bytes, bytes, bytes]],
                                                    list[tuple[int, int, int, int, bytes]]]:
        """Every row of ``state_pending`` and ``state_pending_buckets`` for ``log``, by ``seq`` (spec 7.1.16):
        (seq, size, path, key, value, value hash) and (seq, size, bucket, count, hash)."""
        with self._wrap(f"read the pending state rows of log {log}"):
            values = [(int(q), int(s), bytes(p), bytes(k), bytes(v), bytes(h)) for q, s, p, k, v, h in self._conn.execute(
                "SELECT seq, size, path, key, value, value_hash FROM state_pending WHERE log = ? ORDER BY seq", (log,))]
            buckets = [(int(q), int(s), int(b), int(c), bytes(h)) for q, s, b, c, h in self._conn.execute(
                "SELECT seq, size, bucket, count, hash FROM state_pending_buckets WHERE log = ? ORDER BY seq", (log,))]
        return values, buckets

    def state_root(self, log: str, size: int) -> bytes | None:
        """The state root of ``log`` after its first ``size`` entries, if a batch ended there."""
        with self._wrap(f"read the state root of log {log} at size {size}"):
            row = self._conn.execute("SELECT root FROM state_roots WHERE log = ? AND size = ?",
                                     (log, size)).fetchone()
        return None if row is None else bytes(row[0])

    def latest_state_root(self, log: str) -> tuple[int, bytes] | None:
        """(size, root) of the newest state root stored for ``log``."""
        with self._wrap(f"read the latest state root of log {log}"):
            row = self._conn.execute("SELECT size, root FROM state_roots WHERE log = ? ORDER BY size DESC LIMIT 1",
                                     (log,)).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    def state_roots(self, log: str) -> list[tuple[int, bytes]]:
        """(size, root) of every state root stored for ``log``, by size."""
        with self._wrap(f"read the state roots of log {log}"):
            rows = self._conn.execute("SELECT size, root FROM state_roots WHERE log = ? ORDER BY size",
                                      (log,)).fetchall()
        return [(int(s), bytes(r)) for s, r in rows]

    def iter_state_values(self, log: str, batch: int = 10000) -> Iterator[tuple[bytes, bytes, bytes]]:
        """(path, encoded key, encoded value) of every value of ``log``'s map, by path, read in pages."""
        with self._wrap(f"read the pending state values of log {log}"):
            newer = sorted((p, row) for rows in self._pending_of(log).values.values() for p, row in rows.items())
        at = 0
        for _, path, key, value, _ in self.stored_state_values(log, batch):
            while at < len(newer) and newer[at][0] < path:
                yield newer[at][0], newer[at][1][0], newer[at][1][1]
                at += 1
            if at < len(newer) and newer[at][0] == path:
                continue  # the pending row replaces the merged one
            yield path, key, value
        yield from ((p, row[0], row[1]) for p, row in newer[at:])

    def stored_state_values(self, log: str, batch: int = 10000) -> Iterator[tuple[int, bytes, bytes, bytes, bytes]]:
        """(bucket, path, key, value, value hash) of every row of ``state_values`` of ``log`` as stored, without
        the pending rows over them (replay checks both), by (bucket, path), read in pages."""
        after: tuple[int, bytes] = (-1, b"")
        while True:
            with self._wrap(f"read state values of log {log}"):
                rows = self._conn.execute(
                    "SELECT bucket, path, key, value, value_hash FROM state_values WHERE log = ? AND (bucket, path) > (?, ?)"
                    " ORDER BY bucket, path LIMIT ?", (log, *after, batch)).fetchall()
            yield from ((int(b), bytes(p), bytes(k), bytes(v), bytes(h)) for b, p, k, v, h in rows)
            if len(rows) < batch:
                return
            after = (int(rows[-1][0]), bytes(rows[-1][1]))

    def stored_state_buckets(self, log: str) -> dict[int, tuple[int, bytes]]:
        """bucket -> (count, hash) of every row of ``state_buckets`` of ``log`` as stored, without the pending rows."""
        with self._wrap(f"read the state buckets of log {log}"):
            return {int(b): (int(c), bytes(h)) for b, c, h in self._conn.execute(
                "SELECT bucket, count, hash FROM state_buckets WHERE log = ?", (log,))}

    def read_entries_at(self, log: str, indices: Sequence[int]) -> list[bytes]:
        """Entry bytes at ``indices`` of ``log``, in the order given (one indexed query per 500).

        Raises:
            StorageError: an index is not stored.
        """
        found: dict[int, bytes] = {}
        wanted = list(indices)
        with self._wrap(f"read {len(wanted)} entries of log {log}"):
            for i in range(0, len(wanted), _CHUNK):
                chunk = wanted[i:i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                for idx, raw in self._conn.execute(f"SELECT idx, raw FROM entries WHERE log = ? AND idx IN ({marks})",
                                                   (log, *chunk)):
                    found[int(idx)] = bytes(raw)
        missing = [i for i in wanted if i not in found]
        if missing:
            raise StorageError(f"log {log}: entry {missing[0]} is not stored")
        return [found[i] for i in wanted]

    def registry_entries(self, log: str) -> list[int]:
        """Indices of ``log``'s entries that are neither anchors nor status changes, ascending (spec 7.1.14)."""
        with self._wrap(f"read the registry entries of log {log}"):
            return [int(r[0]) for r in self._conn.execute("SELECT idx FROM registry_entries WHERE log = ? ORDER BY idx",
                                                          (log,))]

    def credential_anchors(self, log: str, issuer: str, credential_id: bytes) -> list[int]:
        """Indices of ``log``'s anchors that name this credential id of ``issuer``, ascending (spec 7.1.15): the
        merged rows and the pending ones (7.1.16)."""
        with self._wrap(f"read the anchors of a credential of log {log}"):
            merged = [int(r[0]) for r in self._conn.execute(
                "SELECT idx FROM credential_anchors WHERE log = ? AND issuer = ? AND credential_id = ? ORDER BY idx",
                (log, issuer, credential_id))]
            return sorted(merged + self._pending_of(log).anchors.get((issuer, credential_id), []))

    def all_credential_anchors(self, log: str) -> list[tuple[int, str, bytes]]:
        """(index, issuer, credential id) of every row of ``credential_anchors`` and ``credential_anchors_pending``
        for ``log``, as stored, by index (replay compares them with the entries)."""
        with self._wrap(f"read the credential anchors of log {log}"):
            rows = [(int(i), str(iss), bytes(c)) for table in ("credential_anchors", "credential_anchors_pending")
                    for iss, c, i in self._conn.execute(
                        f"SELECT issuer, credential_id, idx FROM {table} WHERE log = ?", (log,))]
        return sorted(rows)

    def _write_registry(self, log: str, rows: BookRows) -> None:
        # Caller holds the lock and an open transaction (append_entries).
        self._conn.executemany("INSERT INTO registry_entries (log, idx) VALUES (?, ?)",
                               [(log, i) for i in rows.registry])

    def _write_book(self, log: str, rows: BookRows, *, pending: bool = False) -> None:
        # Caller holds the lock and an open transaction (append_entries). Anchor rows go to the pending table
        # when the state rows of the batch do (spec 7.1.16), else straight into credential_anchors.
        self._write_registry(log, rows)
        table = "credential_anchors_pending" if pending else "credential_anchors"
        self._conn.executemany(f"INSERT INTO {table} (log, issuer, credential_id, idx) VALUES (?, ?, ?, ?)",
                               [(log, *r) for r in rows.credential_anchors])

    def _write_state(self, log: str, size: int, state: StateBatch, book: BookRows | None = None
                     ) -> Callable[[], None]:
        # Caller holds the lock and an open transaction (append_entries). Writes the batch's state rows and, with
        # them, its book rows (pending or merged alike). Returns what to do to the pending rows in memory once the
        # transaction committed (nothing changes there if it does not).
        pending = self._pending_of(log)
        self._conn.execute("INSERT INTO state_roots (log, size, root) VALUES (?, ?, ?)", (log, size, state.root))
        added = sum(len(k) + len(v) for k, v, _ in state.values.values())
        if (pending.rows + len(state.values) + len(state.buckets) < self.merge_rows
                and pending.bytes + added < MERGE_BYTES):
            self._conn.executemany(
                "INSERT INTO state_pending (log, size, path, key, value, value_hash) VALUES (?, ?, ?, ?, ?, ?)",
                [(log, size, path, *row) for path, row in state.values.items()])
            self._conn.executemany(
                "INSERT INTO state_pending_buckets (log, size, bucket, count, hash) VALUES (?, ?, ?, ?, ?)",
                [(log, size, b, c, h) for b, (c, h) in state.buckets.items()])
            if book is not None:
                self._write_book(log, book, pending=True)
            return partial(pending.add, state.values.items(), state.buckets, book.credential_anchors if book else ())
        # spec 7.1.16: merge every pending row and the batch's, sorted, then empty the pending tables.
        values = {p: row for rows in pending.values.values() for p, row in rows.items()}
        values.update(state.values)
        buckets = {**pending.buckets, **state.buckets}
        self._conn.executemany(
            "INSERT INTO state_values (log, bucket, path, key, value, value_hash) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (log, bucket, path) DO UPDATE SET key = excluded.key, value = excluded.value,"
            " value_hash = excluded.value_hash",
            [(log, bucket_of(path), path, *row) for path, row in sorted(values.items())])
        self._conn.executemany(
            "INSERT INTO state_buckets (log, bucket, count, hash) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (log, bucket) DO UPDATE SET count = excluded.count, hash = excluded.hash",
            [(log, b, c, h) for b, (c, h) in sorted(buckets.items())])
        # the pending anchor rows and the batch's, sorted: each page of credential_anchors written once per merge
        anchors = [(issuer, cid, index) for (issuer, cid), indices in pending.anchors.items() for index in indices]
        if book is not None:
            self._write_registry(log, book)
            anchors += book.credential_anchors
        self._conn.executemany("INSERT INTO credential_anchors (log, issuer, credential_id, idx) VALUES (?, ?, ?, ?)",
                               [(log, *r) for r in sorted(anchors)])
        self._conn.execute("DELETE FROM state_pending WHERE log = ?", (log,))
        self._conn.execute("DELETE FROM state_pending_buckets WHERE log = ?", (log,))
        self._conn.execute("DELETE FROM credential_anchors_pending WHERE log = ?", (log,))
        return partial(self._pending.__setitem__, log, PendingRows())
