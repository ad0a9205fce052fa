"""The SQLite schema of a ledger database: its tables, its version, the rows it returns, and opening it.

Specified in specs/07-storage.md section 7.1 (the tables) and 7.2 (durability). :func:`connect` opens a
database file in WAL mode with the requested ``synchronous`` level, creates the tables of a new database
and refuses one of another schema version; :class:`ledger.storage.Storage` runs every query on the
connection it returns. The row types are what those queries return.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from ledger.errors import StorageError

__all__ = ["SCHEMA_VERSION", "StoredCosignature", "StoredEvidence", "StoredRoot", "connect"]

#: Version of the schema below; stored in ``schema_version`` (spec 7.1.1).
SCHEMA_VERSION = 6

# spec 7.1: every table, in the order the spec lists them.
_SCHEMA = """
CREATE TABLE schema_version (
    version INTEGER NOT NULL
);
CREATE TABLE logs (
    log  TEXT PRIMARY KEY,
    size INTEGER NOT NULL CHECK (size >= 0)
) WITHOUT ROWID;
CREATE TABLE entries (
    log       TEXT NOT NULL,
    idx       INTEGER NOT NULL,
    raw       BLOB NOT NULL,
    leaf_hash BLOB NOT NULL,
    PRIMARY KEY (log, idx)
) WITHOUT ROWID;
CREATE TABLE nodes (
    log   TEXT NOT NULL,
    level INTEGER NOT NULL CHECK (level >= 1),
    idx   INTEGER NOT NULL,
    hash  BLOB NOT NULL,
    PRIMARY KEY (log, level, idx)
) WITHOUT ROWID;
CREATE TABLE checkpoints (
    log  TEXT NOT NULL,
    size INTEGER NOT NULL,
    note BLOB NOT NULL,
    PRIMARY KEY (log, size)
) WITHOUT ROWID;
CREATE TABLE cosignatures (
    log     TEXT NOT NULL,
    size    INTEGER NOT NULL,
    witness TEXT NOT NULL,
    line    BLOB NOT NULL,
    PRIMARY KEY (log, size, witness)
) WITHOUT ROWID;
CREATE TABLE finals (
    log            TEXT NOT NULL,
    size           INTEGER NOT NULL,
    root_version   INTEGER NOT NULL,
    witnessed_time INTEGER NOT NULL,
    PRIMARY KEY (log, size)
) WITHOUT ROWID;
CREATE TABLE fresh (
    log     TEXT NOT NULL,
    witness TEXT NOT NULL,
    size    INTEGER NOT NULL,
    line    BLOB NOT NULL,
    PRIMARY KEY (log, witness)
) WITHOUT ROWID;
CREATE TABLE roots (
    version INTEGER NOT NULL,
    digest  BLOB NOT NULL,
    signed  BLOB NOT NULL,
    PRIMARY KEY (version, digest)
) WITHOUT ROWID;
CREATE TABLE state_values (
    log        TEXT NOT NULL,
    bucket     INTEGER NOT NULL,
    path       BLOB NOT NULL,
    key        BLOB NOT NULL,
    value      BLOB NOT NULL,
    value_hash BLOB NOT NULL,
    PRIMARY KEY (log, bucket, path)
) WITHOUT ROWID;
CREATE TABLE state_buckets (
    log    TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    count  INTEGER NOT NULL CHECK (count >= 1),
    hash   BLOB NOT NULL,
    PRIMARY KEY (log, bucket)
) WITHOUT ROWID;
CREATE TABLE state_roots (
    log  TEXT NOT NULL,
    size INTEGER NOT NULL CHECK (size >= 1),
    root BLOB NOT NULL,
    PRIMARY KEY (log, size)
) WITHOUT ROWID;
CREATE TABLE registry_entries (
    log TEXT NOT NULL,
    idx INTEGER NOT NULL,
    PRIMARY KEY (log, idx)
) WITHOUT ROWID;
CREATE TABLE credential_anchors (
    log           TEXT NOT NULL,
    issuer        TEXT NOT NULL,
    credential_id BLOB NOT NULL,
    idx           INTEGER NOT NULL,
    PRIMARY KEY (log, issuer, credential_id, idx)
) WITHOUT ROWID;
CREATE TABLE state_pending (
    seq        INTEGER PRIMARY KEY,
    log        TEXT NOT NULL,
    size       INTEGER NOT NULL CHECK (size >= 1),
    path       BLOB NOT NULL,
    key        BLOB NOT NULL,
    value      BLOB NOT NULL,
    value_hash BLOB NOT NULL
);
CREATE TABLE state_pending_buckets (
    seq    INTEGER PRIMARY KEY,
    log    TEXT NOT NULL,
    size   INTEGER NOT NULL CHECK (size >= 1),
    bucket INTEGER NOT NULL,
    count  INTEGER NOT NULL CHECK (count >= 1),
    hash   BLOB NOT NULL
);
CREATE INDEX state_pending_by_log ON state_pending (log, seq);
CREATE INDEX state_pending_buckets_by_log ON state_pending_buckets (log, seq);
CREATE TABLE credential_anchors_pending (
    seq           INTEGER PRIMARY KEY,
    log           TEXT NOT NULL,
    issuer        TEXT NOT NULL,
    credential_id BLOB NOT NULL,
    idx           INTEGER NOT NULL
);
CREATE INDEX credential_anchors_pending_by_log ON credential_anchors_pending (log, seq);
CREATE TABLE evidence (
    id       INTEGER PRIMARY KEY,
    log      TEXT NOT NULL,
    kind     TEXT NOT NULL,
    received INTEGER NOT NULL,
    reason   TEXT NOT NULL,
    data     BLOB NOT NULL
);
"""

SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")
#: SQLite page cache per connection, KiB (spec 7.2).
CACHE_KIB = 65536
#: WAL pages between automatic checkpoints (spec 7.2): a page the state map rewrites batch after batch is
#: copied into the database once per checkpoint, not once per thousand pages.
WAL_CHECKPOINT_PAGES = 10000


@dataclass(frozen=True, slots=True)
class StoredRoot:
    """A governance root document as stored (spec 7.1.7).

    Attributes:
        version: the version the writer claimed for it.
        digest: SHA-256 of ``signed``, computed when it was stored.
        signed: the ``SignedRoot`` CBOR bytes exactly as received.
    """

    version: int
    digest: bytes
    signed: bytes


@dataclass(frozen=True, slots=True)
class StoredEvidence:
    """A signed object refused by a check, kept as evidence (spec 7.1.8)."""

    log: str
    kind: str
    received: int
    reason: str
    data: bytes
    row: int  # its id: the order rows were stored in


@dataclass(frozen=True, slots=True)
class StoredCosignature:
    """One witness's cosignature on one checkpoint (spec 7.1.6).

    Attributes:
        log: the member id of the log.
        size: the size of the cosigned checkpoint.
        witness: the member id of the witness.
        line: the signature line exactly as received (no trailing newline).
    """

    log: str
    size: int
    witness: str
    line: bytes


def connect(path: str | Path, synchronous: str = "FULL") -> sqlite3.Connection:
    """Open (creating if needed) the database at ``path`` with the schema of spec 7.1.

    Args:
        path: a file path, or ``":memory:"`` for tests.
        synchronous: the SQLite ``synchronous`` level; ``FULL`` makes every acknowledged append survive
            power loss (spec 7.2).

    Returns:
        A connection with explicit transactions (``isolation_level=None``), usable from any thread.

    Raises:
        StorageError: an unknown level, SQLite failed, WAL mode could not be set, or the database has
            another schema version.
    """
    level = synchronous.upper()
    if level not in SYNCHRONOUS_LEVELS:
        raise StorageError(f"unknown synchronous level {synchronous!r}")
    try:
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE).
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    except sqlite3.Error as e:
        raise StorageError(f"cannot open database {path}: {e}") from e
    try:
        _configure(conn, str(path), level)
    except sqlite3.Error as e:
        conn.close()
        raise StorageError(f"cannot configure the database {path}: {e}") from e
    except BaseException:
        conn.close()
        raise
    return conn


def _configure(conn: sqlite3.Connection, path: str, synchronous: str) -> None:
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if mode.lower() != "wal" and path != ":memory:":
        raise StorageError(f"could not enable WAL mode (got {mode})")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA foreign_keys=OFF")
    # A fixed page cache (64 MiB) rather than SQLite's 2 MiB default: the hot pages of a large log (the
    # newest tree nodes, the state buckets a batch touches, the leaf-hash index) stay in memory (spec 7.2).
    conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
    conn.execute("BEGIN IMMEDIATE")
    try:
        have = conn.execute("SELECT name FROM sqlite_master WHERE type='table' AND name='schema_version'").fetchone()
        if have is None:
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    rows = conn.execute("SELECT version FROM schema_version").fetchall()
    if rows != [(SCHEMA_VERSION,)]:
        raise StorageError(f"database schema version {rows} is not the supported {SCHEMA_VERSION}")
