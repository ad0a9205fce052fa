"""SQLite storage for member logs, tree hashes, checkpoints, cosignatures and roots.

Specified in specs/07-storage.md. :class:`Storage` is the one small interface the
ledger needs from a database (spec 7.1): append a batch of entries with their
tree hashes and get durable indices, read a range, read one stored tree hash,
store checkpoints and cosignatures and read the latest, and keep governance
roots by version. A node replicates every member's log, so many logs share one
database, keyed by member id.

Bytes are stored exactly as they were received or signed; this module never
decodes, re-encodes or verifies them. Checking what is stored is the job of
:mod:`ledger.memberlog` (on the way in) and :mod:`ledger.replay` (afterwards).

One :class:`Storage` object owns the single writer connection of a database;
it serialises its own calls with a lock, so it may be shared between threads.
Every ``sqlite3`` error is wrapped in :class:`~ledger.errors.StorageError`.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from ledger.errors import StorageError, StorageFullError, StorageReadOnlyError
from ledger.schema import StoredCosignature, StoredEvidence, StoredRoot, connect
from ledger.staterows import MERGE_ROWS, PendingRows, StateRows

if TYPE_CHECKING:
    from ledger.credbook import BookRows
    from ledger.state import StateBatch

__all__ = ["Storage"]

_HASH_SIZE = 32

class Storage(StateRows):
    """The single writer connection to one ledger database.

    Use :meth:`open`; the constructor is internal. Every method raises
    :class:`StorageError` when SQLite fails or an argument breaks the
    storage rules (for example appending at the wrong index).
    """

    def __init__(self, conn: sqlite3.Connection, path: str, merge_rows: int = MERGE_ROWS) -> None:
        if merge_rows < 1:
            raise StorageError(f"merge_rows must be at least 1, not {merge_rows}")
        self.merge_rows = merge_rows
        self._conn = conn
        self._lock = threading.RLock()
        self._pending: dict[str, PendingRows] = {}  # log -> its pending state rows (spec 7.1.16)
        self.path = path

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def open(cls, path: str | Path, *, synchronous: str = "FULL", merge_rows: int = MERGE_ROWS) -> Storage:
        """Open (creating if needed) the database at ``path`` (spec 7.1, 7.2; :func:`ledger.schema.connect`).

        Args:
            path: a file path, or ``":memory:"`` for tests.
            synchronous: the SQLite ``synchronous`` level. ``FULL`` (the
                default, and what a node uses) makes every acknowledged
                append survive power loss; see spec 7.2.
            merge_rows: the pending state rows of a log at which a batch merges them into
                ``state_values`` and ``state_buckets`` (spec 7.1.16): larger means fewer,
                larger merges and more rows loaded at start.

        Raises:
            StorageError: SQLite failed, WAL mode could not be set, the
                database has a different schema version, or ``merge_rows`` < 1.
        """
        return cls(connect(path, synchronous), str(path), merge_rows)

    def close(self) -> None:
        """Close the connection. Safe to call twice."""
        with self._lock:
            try:
                self._conn.close()
            except sqlite3.Error as e:  # pragma: no cover - close rarely fails
                raise StorageError(f"cannot close database: {e}") from e

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def synchronous(self) -> int:
        """The ``PRAGMA synchronous`` value in force (2 = FULL)."""
        with self._wrap("read PRAGMA synchronous"):
            return int(self._conn.execute("PRAGMA synchronous").fetchone()[0])

    @contextmanager
    def _wrap(self, what: str) -> Iterator[None]:
        with self._lock:
            try:
                yield
            except sqlite3.Error as e:
                text = str(e).lower()
                if "full" in text:  # SQLITE_FULL: the disk, or a size limit of the database
                    raise StorageFullError(f"cannot {what}: the database or disk is full") from e
                if "readonly" in text or "read-only" in text:  # SQLITE_READONLY
                    raise StorageReadOnlyError(f"cannot {what}: the database is read-only") from e
                raise StorageError(f"cannot {what}: {e}") from e

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        # Caller holds the lock. IMMEDIATE takes the write lock up front.
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:  # the body failed, or COMMIT did (a failed COMMIT leaves it open)
                self._conn.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------------ entries and tree

    def logs(self, *, every_table: bool = False) -> list[str]:
        """Member ids of the logs in the ``logs`` table, sorted.

        With ``every_table``, also any log named only by rows of other tables
        (which a consistent database never has; replay looks for them).
        """
        tables = ("logs", "entries", "nodes", "checkpoints", "cosignatures", "state_values", "state_buckets",
                  "state_roots", "state_pending", "state_pending_buckets", "registry_entries", "credential_anchors",
                  "credential_anchors_pending") \
            if every_table else ("logs",)
        with self._wrap("list logs"):
            sql = " UNION ".join(f"SELECT DISTINCT log FROM {t}" for t in tables)
            return sorted(r[0] for r in self._conn.execute(sql))

    def size(self, log: str) -> int:
        """Number of entries stored for ``log`` (0 for a log never seen)."""
        with self._wrap(f"read the size of log {log}"):
            row = self._conn.execute("SELECT size FROM logs WHERE log = ?", (log,)).fetchone()
            return 0 if row is None else int(row[0])

    def append_entries(self, log: str, start: int, raws: Sequence[bytes], leaf_hashes: Sequence[bytes],
                       nodes: Sequence[tuple[int, int, bytes]],
                       before_commit: Callable[[], None] | None = None,
                       state: StateBatch | None = None, book: BookRows | None = None) -> range:
        """Append a batch of entries and their tree hashes in one transaction (spec 7.3 step 6).

        Args:
            log: member id of the log.
            start: index of the first entry; must equal the stored size.
            raws: entry bytes exactly as received.
            leaf_hashes: the RFC 9162 leaf hash of each entry, same length as ``raws``.
            nodes: every complete subtree above the leaves that the batch
                completes, as ``(level, index, hash)`` with ``level >= 1``
                (level 0 rows, if given, must equal ``leaf_hashes`` and are skipped).
            before_commit: called after the rows are written and before the
                commit; if it raises, the transaction is rolled back and its
                exception propagates. :class:`~ledger.memberlog.MemberLog`
                waits for signature verification here (spec 7.3 step 6).
            state: the batch's change to the log's state map (values, buckets,
                and the state root at the new size; spec 7.1.11 to 7.1.13).
            book: the batch's rows of ``registry_entries`` and ``credential_anchors``
                (:func:`ledger.credbook.book_rows`; spec 7.1.14, 7.1.15).

        Returns:
            The indices the entries now have. When this returns, the batch is
            committed with the database's ``synchronous`` durability.

        Raises:
            StorageError: ``start`` is not the stored size, lengths differ, a
                hash is not 32 bytes, a node already exists, or SQLite failed.
                Nothing is stored in any of these cases.
        """
        if len(raws) != len(leaf_hashes):
            raise StorageError(f"{len(raws)} entries but {len(leaf_hashes)} leaf hashes")
        if not raws:
            raise StorageError("empty batch")
        end = start + len(raws)
        if any(len(lh) != _HASH_SIZE for lh in leaf_hashes):
            raise StorageError(f"a leaf hash of the batch at {start} is not {_HASH_SIZE} bytes")
        entry_rows = [(log, i, raw, lh) for i, raw, lh in zip(range(start, end), raws, leaf_hashes)]
        node_rows = [(log, level, idx, h) for level, idx, h in nodes if level]
        for level, idx, h in nodes:
            if level == 0:
                if not start <= idx < end or h != leaf_hashes[idx - start]:
                    raise StorageError(f"level-0 node {idx} does not match the batch's leaf hashes")
            elif len(h) != _HASH_SIZE or level < 0 or (idx + 1) << level > end:
                raise StorageError(f"tree node ({level}, {idx}) is not a {_HASH_SIZE}-byte complete subtree"
                                   f" of {end} leaves")
        committed: Callable[[], None] | None = None
        with self._wrap(f"append {len(raws)} entries to log {log}"):
            with self._transaction():
                row = self._conn.execute("SELECT size FROM logs WHERE log = ?", (log,)).fetchone()
                size = 0 if row is None else int(row[0])
                if start != size:
                    raise StorageError(f"log {log} has {size} entries; cannot append at {start}")
                self._conn.executemany(
                    "INSERT INTO entries (log, idx, raw, leaf_hash) VALUES (?, ?, ?, ?)", entry_rows)
                self._conn.executemany(
                    "INSERT INTO nodes (log, level, idx, hash) VALUES (?, ?, ?, ?)", node_rows)
                self._conn.execute(
                    "INSERT INTO logs (log, size) VALUES (?, ?) "
                    "ON CONFLICT (log) DO UPDATE SET size = excluded.size", (log, end))
                if state is not None:
                    committed = self._write_state(log, end, state, book)
                elif book is not None:
                    self._write_book(log, book)
                if before_commit is not None:
                    before_commit()
            if committed is not None:  # the pending state rows in memory follow the committed ones
                committed()
        return range(start, end)

    def read_entries(self, log: str, start: int, end: int) -> list[bytes]:
        """Entry bytes ``[start, end)`` of ``log``, exactly as stored.

        Raises:
            StorageError: the range is not within the stored size, or a row is missing.
        """
        return self._read_range(log, start, end, "raw", "entries")

    def read_leaf_hashes(self, log: str, start: int, end: int) -> list[bytes]:
        """Stored leaf hashes ``[start, end)`` of ``log``.

        Raises:
            StorageError: as :meth:`read_entries`.
        """
        return self._read_range(log, start, end, "leaf_hash", "leaf hashes")

    def _read_range(self, log: str, start: int, end: int, column: str, what: str) -> list[bytes]:
        with self._wrap(f"read {what} {start}..{end} of log {log}"):
            size = self.size(log)
            if not 0 <= start <= end <= size:
                raise StorageError(f"range {start}..{end} is outside log {log} of size {size}")
            rows = self._conn.execute(
                f"SELECT {column} FROM entries WHERE log = ? AND idx >= ? AND idx < ? ORDER BY idx",
                (log, start, end)).fetchall()
            if len(rows) != end - start:
                raise StorageError(f"log {log}: {end - start - len(rows)} {what} missing in {start}..{end}")
            return [bytes(r[0]) for r in rows]

    def get_node(self, log: str, level: int, idx: int) -> bytes:
        """The stored hash of complete subtree ``(level, idx)`` of ``log`` (level 0: a leaf hash).

        Raises:
            StorageError: no such stored hash.
        """
        with self._wrap(f"read tree node ({level}, {idx}) of log {log}"):
            if level == 0:
                row = self._conn.execute(
                    "SELECT leaf_hash FROM entries WHERE log = ? AND idx = ?", (log, idx)).fetchone()
            else:
                row = self._conn.execute(
                    "SELECT hash FROM nodes WHERE log = ? AND level = ? AND idx = ?", (log, level, idx)).fetchone()
            if row is None:
                raise StorageError(f"log {log} has no stored tree node ({level}, {idx})")
            return bytes(row[0])

    def iter_nodes(self, log: str, batch: int = 10000) -> Iterator[tuple[int, int, bytes]]:
        """Every stored node above the leaves of ``log`` as ``(level, index, hash)``, in that order.

        Reads pages of ``batch`` rows, so a large log is never loaded at once.

        Raises:
            StorageError: SQLite failed.
        """
        return self._pages(log, batch, "SELECT level, idx, hash FROM nodes WHERE log = ? AND (level, idx) > (?, ?)"
                           " ORDER BY level, idx LIMIT ?", (0, -1))

    def iter_entries(self, log: str, batch: int = 10000) -> Iterator[tuple[int, bytes, bytes]]:
        """Every stored entry of ``log`` as ``(index, raw, leaf_hash)``, in index order, read in pages.

        Raises:
            StorageError: SQLite failed.
        """
        return self._pages(log, batch, "SELECT idx, raw, leaf_hash FROM entries WHERE log = ? AND idx > ?"
                           " ORDER BY idx LIMIT ?", (-1,))

    def _pages(self, log: str, batch: int, sql: str, after: tuple[int, ...]) -> Iterator[Any]:
        while True:
            with self._wrap(f"read log {log}"):
                rows = self._conn.execute(sql, (log, *after, batch)).fetchall()
            yield from rows
            if len(rows) < batch:
                return
            after = tuple(rows[-1][:len(after)])

    # ------------------------------------------------------------------ checkpoints

    def put_checkpoint(self, log: str, size: int, note: bytes) -> None:
        """Store the signed checkpoint note of ``log`` at ``size`` (spec 7.4.1).

        Storing the same bytes twice is a no-op.

        Raises:
            StorageError: ``size`` exceeds the stored log, a different note is
                already stored for that size, or SQLite failed.
        """
        with self._wrap(f"store checkpoint {size} of log {log}"), self._transaction():
            have = self.size(log)
            if not 0 <= size <= have:
                raise StorageError(f"checkpoint size {size} but log {log} has {have} entries")
            row = self._conn.execute(
                "SELECT note FROM checkpoints WHERE log = ? AND size = ?", (log, size)).fetchone()
            if row is not None:
                if bytes(row[0]) != bytes(note):
                    raise StorageError(f"log {log} already has a different checkpoint at size {size}")
                return
            self._conn.execute("INSERT INTO checkpoints (log, size, note) VALUES (?, ?, ?)",
                               (log, size, bytes(note)))

    def checkpoint(self, log: str, size: int) -> bytes | None:
        """The stored checkpoint note of ``log`` at ``size``, or None."""
        with self._wrap(f"read checkpoint {size} of log {log}"):
            row = self._conn.execute(
                "SELECT note FROM checkpoints WHERE log = ? AND size = ?", (log, size)).fetchone()
            return None if row is None else bytes(row[0])

    def latest_checkpoint(self, log: str) -> tuple[int, bytes] | None:
        """``(size, note)`` of the largest stored checkpoint of ``log``, or None."""
        with self._wrap(f"read the latest checkpoint of log {log}"):
            row = self._conn.execute(
                "SELECT size, note FROM checkpoints WHERE log = ? ORDER BY size DESC LIMIT 1", (log,)).fetchone()
            return None if row is None else (int(row[0]), bytes(row[1]))

    def put_final(self, log: str, size: int, root_version: int, witnessed_time: int) -> None:
        """Record that the checkpoint of ``log`` at ``size`` is final (spec 7.1.9, 7.4.3).

        Recording it again keeps the earlier witnessed time: more cosignatures can only bring it forward.

        Raises:
            StorageError: no checkpoint of that size is stored, or SQLite failed.
        """
        with self._wrap(f"record final checkpoint {size} of log {log}"), self._transaction():
            if self._conn.execute("SELECT 1 FROM checkpoints WHERE log = ? AND size = ?", (log, size)).fetchone() is None:
                raise StorageError(f"log {log} has no checkpoint at size {size} to record as final")
            self._conn.execute(
                "INSERT INTO finals (log, size, root_version, witnessed_time) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (log, size) DO UPDATE SET witnessed_time = min(witnessed_time, excluded.witnessed_time)",
                (log, size, root_version, witnessed_time))

    def finals(self, log: str) -> list[tuple[int, int, int]]:
        """Every recorded final checkpoint of ``log`` as ``(size, root_version, witnessed_time)``, by size."""
        with self._wrap(f"read final checkpoints of log {log}"):
            return [(int(a), int(b), int(c)) for a, b, c in self._conn.execute(
                "SELECT size, root_version, witnessed_time FROM finals WHERE log = ? ORDER BY size", (log,))]

    def final_covering(self, log: str, index: int) -> int | None:
        """The size of the oldest recorded final checkpoint of ``log`` that covers entry ``index``, or None."""
        with self._wrap(f"find the final checkpoint covering entry {index} of log {log}"):
            row = self._conn.execute("SELECT min(size) FROM finals WHERE log = ? AND size > ?", (log, index)).fetchone()
            return None if row is None or row[0] is None else int(row[0])

    def latest_final(self, log: str) -> int | None:
        """The size of the newest recorded final checkpoint of ``log``, or None."""
        with self._wrap(f"find the newest final checkpoint of log {log}"):
            row = self._conn.execute("SELECT max(size) FROM finals WHERE log = ?", (log,)).fetchone()
            return None if row is None or row[0] is None else int(row[0])

    def put_fresh(self, log: str, size: int, lines: Sequence[tuple[str, bytes]]) -> None:
        """Keep each witness's newest cosignature line on ``log`` (spec 7.1.10): it replaces the one held for a
        smaller or equal size (a heartbeat re-cosigns the same checkpoint later), never one for a larger size.

        Raises:
            StorageError: SQLite failed.
        """
        with self._wrap(f"store fresh cosignatures of log {log}"), self._transaction():
            self._conn.executemany(
                "INSERT INTO fresh (log, witness, size, line) VALUES (?, ?, ?, ?) ON CONFLICT (log, witness) "
                "DO UPDATE SET size = excluded.size, line = excluded.line WHERE excluded.size >= fresh.size",
                [(log, w, size, bytes(line)) for w, line in lines])

    def fresh(self, log: str, size: int) -> list[tuple[str, bytes]]:
        """``(witness, line)`` of the newest cosignature each witness made on the checkpoint of ``log`` at
        ``size``, as far as stored (spec 7.1.10)."""
        with self._wrap(f"read fresh cosignatures of log {log}"):
            return [(w, bytes(line)) for w, line in self._conn.execute(
                "SELECT witness, line FROM fresh WHERE log = ? AND size = ? ORDER BY witness", (log, size))]

    def fresh_sizes(self, log: str) -> dict[str, int]:
        """Witness -> the size of the checkpoint its newest stored line on ``log`` cosigns (7.1.10)."""
        with self._wrap(f"read the fresh cosignatures of log {log}"):
            return {str(w): int(s) for w, s in self._conn.execute(
                "SELECT witness, size FROM fresh WHERE log = ?", (log,))}

    def fresh_rows(self, log: str) -> list[tuple[str, int, bytes]]:
        """Every row of ``fresh`` for ``log``: (witness, size, line), by witness (replay checks them)."""
        with self._wrap(f"read the fresh cosignatures of log {log}"):
            return [(str(w), int(s), bytes(line)) for w, s, line in self._conn.execute(
                "SELECT witness, size, line FROM fresh WHERE log = ? ORDER BY witness", (log,))]

    def checkpoints(self, log: str, newest: int | None = None) -> list[tuple[int, bytes]]:
        """Every stored ``(size, note)`` of ``log``, by size; only the ``newest`` ones when given (one
        indexed read, whatever the number stored)."""
        with self._wrap(f"read checkpoints of log {log}"):
            rows: list[Any]
            if newest is None:
                rows = self._conn.execute("SELECT size, note FROM checkpoints WHERE log = ? ORDER BY size",
                                          (log,)).fetchall()
            else:
                rows = self._conn.execute("SELECT size, note FROM checkpoints WHERE log = ? ORDER BY size DESC"
                                          " LIMIT ?", (log, newest)).fetchall()[::-1]
            return [(int(s), bytes(n)) for s, n in rows]

    def put_cosignatures(self, log: str, size: int, lines: Sequence[tuple[str, bytes]]) -> None:
        """Store witness cosignature lines on checkpoint ``size`` of ``log``, atomically (spec 7.4.2).

        Args:
            lines: ``(witness member id, signature line)`` pairs. A witness
                that already has a line for this checkpoint keeps its first
                one (a later line with a newer timestamp is ignored).

        Raises:
            StorageError: no checkpoint of that size is stored, or SQLite failed.
        """
        with self._wrap(f"store cosignatures on checkpoint {size} of log {log}"), self._transaction():
            if self._conn.execute("SELECT 1 FROM checkpoints WHERE log = ? AND size = ?",
                                  (log, size)).fetchone() is None:
                raise StorageError(f"log {log} has no checkpoint at size {size}")
            self._conn.executemany(
                "INSERT OR IGNORE INTO cosignatures (log, size, witness, line) VALUES (?, ?, ?, ?)",
                [(log, size, w, bytes(line)) for w, line in lines])

    def cosignatures(self, log: str, size: int | None = None) -> list[StoredCosignature]:
        """Stored cosignatures of ``log`` (of one checkpoint ``size``, or all), by size then witness."""
        with self._wrap(f"read cosignatures of log {log}"):
            if size is None:
                rows = self._conn.execute(
                    "SELECT size, witness, line FROM cosignatures WHERE log = ? ORDER BY size, witness", (log,))
            else:
                rows = self._conn.execute(
                    "SELECT size, witness, line FROM cosignatures WHERE log = ? AND size = ? ORDER BY witness",
                    (log, size))
            return [StoredCosignature(log, int(s), w, bytes(line)) for s, w, line in rows]

    # ------------------------------------------------------------------ governance roots

    def put_root(self, version: int, signed: bytes) -> bytes:
        """Store a signed governance root document as received (spec 7.1.7).

        Several documents may be stored for one version (a re-signed copy, or
        evidence of equivocation); the same bytes twice are stored once.

        Returns:
            The SHA-256 digest of ``signed`` that keys the row.

        Raises:
            StorageError: SQLite failed.
        """
        digest = hashlib.sha256(signed).digest()
        with self._wrap(f"store governance root version {version}"), self._transaction():
            self._conn.execute("INSERT OR IGNORE INTO roots (version, digest, signed) VALUES (?, ?, ?)",
                               (version, digest, bytes(signed)))
        return digest

    def roots(self, version: int | None = None) -> list[StoredRoot]:
        """Stored governance root documents (of one ``version``, or all), by version."""
        with self._wrap("read governance roots"):
            if version is None:
                rows = self._conn.execute("SELECT version, digest, signed FROM roots ORDER BY version, digest")
            else:
                rows = self._conn.execute(
                    "SELECT version, digest, signed FROM roots WHERE version = ? ORDER BY digest", (version,))
            return [StoredRoot(int(v), bytes(d), bytes(s)) for v, d, s in rows]

    # ------------------------------------------------------------------ evidence (spec 7.1.8)

    def put_evidence(self, log: str, kind: str, data: bytes, reason: str, received: int,
                     same: bytes | None = None) -> bool:
        """Keep a refused signed object (a checkpoint a witness would not cosign) as evidence, once.

        Args:
            same: the start of ``data`` that names the object (for a note: its text and the blank line, so
                that the same checkpoint with other signature lines is the same object); all of it by default.

        Returns:
            False when the same object is already kept as evidence of that kind (spec 7.1.8): an attacker
            sending it again, with signature lines added or not, or a sync loop meeting it each round, adds
            nothing.

        Raises:
            StorageError: SQLite failed.
        """
        if same is not None and not bytes(data).startswith(same):
            raise ValueError("same must be a prefix of data")
        held = ("data = ?", (bytes(data),)) if same is None else ("substr(data, 1, ?) = ?", (len(same), bytes(same)))
        with self._wrap(f"store evidence for log {log}"), self._transaction():
            cur = self._conn.execute(
                "INSERT INTO evidence (log, kind, received, reason, data) SELECT ?, ?, ?, ?, ? WHERE NOT EXISTS"
                f" (SELECT 1 FROM evidence WHERE log = ? AND kind = ? AND {held[0]})",
                (log, kind, received, reason, bytes(data), log, kind, *held[1]))
            return cur.rowcount == 1

    def evidence(self, log: str | None = None) -> list[StoredEvidence]:
        """Stored evidence, oldest first (of one log, or all)."""
        with self._wrap("read evidence"):
            query = "SELECT log, kind, received, reason, data, id FROM evidence"
            rows = (self._conn.execute(query + " ORDER BY id") if log is None
                    else self._conn.execute(query + " WHERE log = ? ORDER BY id", (log,)))
            return [StoredEvidence(lg, k, int(t), r, bytes(d), int(i)) for lg, k, t, r, d, i in rows]
