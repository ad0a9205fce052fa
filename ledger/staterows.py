"""The queries of the state tables (spec 7.1.11 to 7.1.13): values, buckets and state roots of each log.

A mixin of :class:`ledger.storage.Storage`, kept apart so that each module stays small. It uses the
storage's connection, lock and error wrapping; the rows of a batch are written by
:meth:`ledger.storage.Storage.append_entries` in the transaction that stores the batch's entries.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from ledger.errors import StorageError
from ledger.statemap import bucket_of

if TYPE_CHECKING:
    from ledger.credbook import BookRows
    from ledger.state import StateBatch

__all__ = ["StateRows"]

_CHUNK = 500  # SQLite's variable limit, with room for the log


class StateRows:
    """Reads and writes of ``state_values``, ``state_buckets`` and ``state_roots``."""

    _conn: sqlite3.Connection
    _wrap: Callable[[str], AbstractContextManager[None]]

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
            present = {path for rows in found.values() for path, _ in rows}
            for path in paths:  # the values themselves only where the batch adds to them (a few)
                if path in present:
                    row = self._conn.execute("SELECT value FROM state_values WHERE log = ? AND bucket = ? AND path = ?",
                                             (log, bucket_of(path), path)).fetchone()
                    values[path] = row[0]
        return found, values

    def state_value(self, log: str, path: bytes) -> tuple[bytes, bytes] | None:
        """(encoded key, encoded value) at ``path`` of ``log``'s map, or None."""
        with self._wrap(f"read a state value of log {log}"):
            row = self._conn.execute("SELECT key, value FROM state_values WHERE log = ? AND bucket = ? AND path = ?",
                                     (log, bucket_of(path), path)).fetchone()
        return None if row is None else (bytes(row[0]), bytes(row[1]))

    def state_bucket(self, log: str, bucket: int) -> list[tuple[bytes, bytes]]:
        """(path, value hash) of every value of ``log`` in ``bucket``, sorted by path."""
        with self._wrap(f"read state bucket {bucket} of log {log}"):
            rows = self._conn.execute("SELECT path, value_hash FROM state_values WHERE log = ? AND bucket = ?"
                                      " ORDER BY path", (log, bucket))
            return [(bytes(p), bytes(h)) for p, h in rows]

    def state_buckets(self, log: str) -> Iterator[tuple[int, int, bytes]]:
        """(bucket, leaf count, hash) of every non-empty bucket of ``log``'s map."""
        with self._wrap(f"read the state buckets of log {log}"):
            rows = self._conn.execute("SELECT bucket, count, hash FROM state_buckets WHERE log = ?",
                                      (log,)).fetchall()
        return ((int(b), int(c), bytes(h)) for b, c, h in rows)

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
        after = b""
        while True:
            with self._wrap(f"read state values of log {log}"):
                rows = self._conn.execute(
                    "SELECT path, key, value FROM state_values WHERE log = ? AND bucket >= ? AND path > ?"
                    " ORDER BY bucket, path LIMIT ?", (log, bucket_of(after) if after else 0, after, batch)).fetchall()
            yield from ((bytes(p), bytes(k), bytes(v)) for p, k, v in rows)
            if len(rows) < batch:
                return
            after = bytes(rows[-1][0])

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
        """Indices of ``log``'s anchors that name this credential id of ``issuer``, ascending (spec 7.1.15)."""
        with self._wrap(f"read the anchors of a credential of log {log}"):
            return [int(r[0]) for r in self._conn.execute(
                "SELECT idx FROM credential_anchors WHERE log = ? AND issuer = ? AND credential_id = ? ORDER BY idx",
                (log, issuer, credential_id))]

    def all_credential_anchors(self, log: str) -> list[tuple[int, str, bytes]]:
        """(index, issuer, credential id) of every row of ``credential_anchors`` for ``log``, by index."""
        with self._wrap(f"read the credential anchors of log {log}"):
            return [(int(i), str(iss), bytes(c)) for iss, c, i in self._conn.execute(
                "SELECT issuer, credential_id, idx FROM credential_anchors WHERE log = ? ORDER BY idx, issuer,"
                " credential_id", (log,))]

    def _write_book(self, log: str, rows: BookRows) -> None:
        # Caller holds the lock and an open transaction (append_entries).
        self._conn.executemany("INSERT INTO registry_entries (log, idx) VALUES (?, ?)",
                               [(log, i) for i in rows.registry])
        self._conn.executemany("INSERT INTO credential_anchors (log, issuer, credential_id, idx) VALUES (?, ?, ?, ?)",
                               [(log, *r) for r in rows.credential_anchors])

    def _write_state(self, log: str, size: int, state: StateBatch) -> None:
        # Caller holds the lock and an open transaction (append_entries).
        self._conn.executemany(
            "INSERT INTO state_values (log, bucket, path, key, value, value_hash) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (log, bucket, path) DO UPDATE SET value = excluded.value, value_hash = excluded.value_hash",
            _value_rows(log, state.values.items()))
        self._conn.executemany(
            "INSERT INTO state_buckets (log, bucket, count, hash) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (log, bucket) DO UPDATE SET count = excluded.count, hash = excluded.hash",
            [(log, b, c, h) for b, (c, h) in state.buckets.items()])
        self._conn.execute("INSERT INTO state_roots (log, size, root) VALUES (?, ?, ?)", (log, size, state.root))


def _value_rows(log: str, items: Iterable[tuple[bytes, tuple[bytes, bytes, bytes]]]
                ) -> Sequence[tuple[str, int, bytes, bytes, bytes, bytes]]:
    return [(log, bucket_of(path), path, key, value, vh) for path, (key, value, vh) in items]
