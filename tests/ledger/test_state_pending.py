"""Pending state rows (spec 7.1.16): a log's state reads the same whether its rows are merged or pending.

A batch writes its new state values and buckets to the pending tables; the batch that brings a log's pending
rows to ``merge_rows`` merges them into ``state_values`` and ``state_buckets``. Nothing a reader sees may
depend on where the rows are: not the root, not a value, not a bucket, not a proof, not after a restart, and
not after a batch that failed.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from test_memberlog import NETWORK, T0, Net, anchors, bad_signature, make_net, setup_entries

from ledger.bodies import CredentialAnchor, CredentialStatus
from ledger.entries import make_entry
from ledger.errors import StorageError, VerificationError
from ledger.memberlog import MemberLog
from ledger.registry import RegistryState
from ledger.reopen import open_registry
from ledger.replay import replay
from ledger.state import StateKey
from ledger.storage import Storage


def _statuses(net: Net, credential: bytes, statuses: tuple[str, ...], t: int) -> list[bytes]:
    return [make_entry("VN", "credential.status", t + i, CredentialStatus("VN/customs", credential, s, "test"),
                       net.issuer["VN"]) for i, s in enumerate(statuses)]


def _anchor(net: Net, credential: bytes, n: int, t: int) -> bytes:
    return make_entry("VN", "credential.anchor", t, CredentialAnchor(
        "VN/customs", hashlib.sha256(b"anchor %d" % n).digest(), credential_id=credential), net.issuer["VN"])


#: Credential ids anchored by :func:`_batches` (cred-1 in every batch, the others once).
_CREDENTIALS = (b"cred-1", b"cred-2", b"cred-3", b"cred-4", b"cred-5", b"never")


def _batches(net: Net, credentials: bool = False) -> list[list[bytes]]:
    # The same credential's status changes in four batches: its value is rewritten batch after batch, so
    # pending rows of one path (and of its bucket) pile up before a merge. With ``credentials``, cred-1 is
    # also anchored in every batch, so its credential_anchors rows are spread over merged and pending rows.
    out = [setup_entries(net, "VN") + anchors(net, "VN", 3)]
    if credentials:
        out[0].append(_anchor(net, b"cred-1", 0, T0 + 50))
    for b, statuses in enumerate((("suspended",), ("active", "suspended"), ("active",), ("revoked",))):
        out.append(_statuses(net, b"cred-1", statuses, T0 + 100 + 10 * b) + anchors(net, "VN", 2, first=10 + 2 * b,
                                                                                    t=T0 + 105 + 10 * b))
        if credentials:
            out[-1] += [_anchor(net, b"cred-1", 10 + b, T0 + 108 + 10 * b),
                        _anchor(net, b"cred-%d" % (b + 2), 20 + b, T0 + 109 + 10 * b)]
    return out


def _build(path: Path, net: Net, merge_rows: int, credentials: bool = False) -> list[int]:
    """The log of :func:`_batches`, appended batch by batch; returns the size after each batch."""
    with Storage.open(path, merge_rows=merge_rows) as db:
        db.put_root(1, net.genesis.to_cbor())
        vn = MemberLog(db, "VN", NETWORK, RegistryState(net.chain()), net.node["VN"])
        sizes = []
        for batch in _batches(net, credentials):
            vn.append(batch)
            sizes.append(vn.size)
        vn.close()
    return sizes


def _reads(db: Storage, sizes: list[int]) -> tuple:
    # Everything a reader can ask of the state tables, in a form that compares equal across databases.
    values = list(db.iter_state_values("VN"))
    buckets = sorted(db.state_buckets("VN"))
    return (values, buckets, [db.state_root("VN", s) for s in sizes],
            [db.state_value("VN", p) for p, _, _ in values], [db.state_bucket("VN", b) for b, _, _ in buckets],
            db.state_rows("VN", [b for b, _, _ in buckets], [p for p, _, _ in values]),
            [db.credential_anchors("VN", "VN/customs", c) for c in _CREDENTIALS], db.all_credential_anchors("VN"))


def _rows(path: Path, table: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


@pytest.fixture(scope="module")
def net() -> Net:
    return make_net()


def test_where_the_rows_are_changes_no_answer(net: Net, tmp_path: Path) -> None:
    # merged after every batch, merged once on the way, never merged
    paths = {m: tmp_path / f"m{m}.db" for m in (1, 30, 10 ** 6)}
    sizes = {m: _build(p, net, m, credentials=True) for m, p in paths.items()}
    assert _rows(paths[1], "state_pending") == 0 and _rows(paths[10 ** 6], "state_values") == 0
    assert _rows(paths[30], "state_pending") > 0 and _rows(paths[30], "state_values") > 0
    # anchor rows are pending, or merged, with the state rows of their batch
    assert _rows(paths[1], "credential_anchors_pending") == 0 and _rows(paths[10 ** 6], "credential_anchors") == 0
    assert _rows(paths[30], "credential_anchors_pending") > 0 and _rows(paths[30], "credential_anchors") > 0
    status = StateKey("status", ("VN/customs", b"cred-1")).path
    reads = {}
    for m, path in paths.items():
        with Storage.open(path, merge_rows=m) as db:  # a fresh object: the pending rows are loaded from the file
            reads[m] = _reads(db, sizes[m])
            assert db.state_value("VN", status) is not None
            report = replay(db, net.genesis, net.genesis.root_hash)
            assert report.ok, [str(p) for p in report.problems]
            vn = MemberLog(db, "VN", NETWORK, report.state)  # the stored map opens against the stored root
            size, proofs = vn.prove_states([status, StateKey("issuer", ("VN/customs",)).path])
            reads[m] += (size, proofs)
            vn.close()
    assert reads[1] == reads[30] == reads[10 ** 6]
    anchored = reads[1][-4]  # credential_anchors() of each of _CREDENTIALS
    assert len(anchored[0]) == 5 and all(len(a) == 1 for a in anchored[1:5]) and anchored[5] == []


def test_a_path_rewritten_while_pending_keeps_every_row_checkable(net: Net, tmp_path: Path) -> None:
    # The older pending rows of the status value are no longer read, but replay still checks each against the
    # value the entries give at its batch's size: a byte changed in an old row is reported by its seq.
    path = tmp_path / "n.db"
    _build(path, net, 10 ** 6)
    status = StateKey("status", ("VN/customs", b"cred-1")).path
    conn = sqlite3.connect(path)
    seqs = [int(r[0]) for r in conn.execute("SELECT seq FROM state_pending WHERE path = ? ORDER BY seq", (status,))]
    assert len(seqs) == 4
    value = bytearray(conn.execute("SELECT value FROM state_pending WHERE seq = ?", (seqs[0],)).fetchone()[0])
    value[-1] ^= 1
    conn.execute("UPDATE state_pending SET value = ? WHERE seq = ?", (bytes(value), seqs[0]))
    bucket_seq = conn.execute("SELECT min(seq) FROM state_pending_buckets").fetchone()[0]
    conn.execute("UPDATE state_pending_buckets SET count = count + 1 WHERE seq = ?", (bucket_seq,))
    conn.commit()
    conn.close()
    with Storage.open(path) as db:
        locations = [p.location for p in replay(db, net.genesis, net.genesis.root_hash).problems]
    assert f"log VN state pending value {seqs[0]}" in locations
    assert f"log VN state pending bucket {bucket_seq}" in locations


def test_a_failed_batch_leaves_the_pending_rows_as_they_were(net: Net, tmp_path: Path) -> None:
    path = tmp_path / "n.db"
    batches = _batches(net)
    with Storage.open(path, merge_rows=10 ** 6) as db:
        db.put_root(1, net.genesis.to_cbor())
        vn = MemberLog(db, "VN", NETWORK, RegistryState(net.chain()), net.node["VN"])
        vn.append(batches[0])
        vn.append(batches[1])
        before = _reads(db, [vn.size])
        spoiled = batches[2][:-1] + [bad_signature(batches[2][-1])]
        with pytest.raises(VerificationError):
            vn.append(spoiled)  # refused after its rows were written, before the commit
        assert _reads(db, [vn.size]) == before
        for batch in batches[2:]:
            vn.append(batch)
        root = vn.state_root()
        vn.close()
    with Storage.open(path) as db:
        report = replay(db, net.genesis, net.genesis.root_hash)
        assert report.ok, [str(p) for p in report.problems]
        assert MemberLog(db, "VN", NETWORK, report.state).state_root() == root


def test_the_batch_that_reaches_merge_rows_merges_every_pending_row(net: Net, tmp_path: Path) -> None:
    path = tmp_path / "n.db"
    batches = _batches(net)
    with Storage.open(path, merge_rows=14) as db:
        db.put_root(1, net.genesis.to_cbor())
        vn = MemberLog(db, "VN", NETWORK, RegistryState(net.chain()), net.node["VN"])
        vn.append(batches[0])  # 5 values, 5 buckets: 10 pending rows
        assert (_rows(path, "state_pending"), _rows(path, "state_values")) == (5, 0)
        vn.append(batches[1])  # 3 more values and buckets reach 14: all merged, 8 values in all
        assert (_rows(path, "state_pending"), _rows(path, "state_pending_buckets")) == (0, 0)
        assert (_rows(path, "state_values"), _rows(path, "state_buckets")) == (8, 8)
        vn.close()


def test_merge_rows_below_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="merge_rows must be at least 1"):
        Storage.open(tmp_path / "n.db", merge_rows=0)


def _replay_locations(path: Path, net: Net) -> list[str]:
    with Storage.open(path) as db:
        return [p.location for p in replay(db, net.genesis, net.genesis.root_hash).problems]


def test_a_merged_row_under_a_pending_one_is_checked_too(net: Net, tmp_path: Path) -> None:
    # Merged at 12 rows, then the status value is rewritten while pending: the merged row of the status path
    # is no longer read, but it stays checked (against the value at the last merge), and a row slipped into
    # another bucket under a pending path is reported, before it can spoil the next root of that bucket.
    status = StateKey("status", ("VN/customs", b"cred-1")).path
    clean = tmp_path / "clean.db"
    _build(clean, net, 12)
    conn = sqlite3.connect(clean)
    assert conn.execute("SELECT count(*) FROM state_values WHERE path = ?", (status,)).fetchone()[0] == 1
    assert conn.execute("SELECT count(*) FROM state_pending WHERE path = ?", (status,)).fetchone()[0] >= 1
    conn.close()
    assert _replay_locations(clean, net) == []
    for name, sql in (("key", "UPDATE state_values SET key = CAST(x'00' || key AS BLOB) WHERE path = ?"),
                      ("value", "UPDATE state_values SET value = CAST(value || x'00' AS BLOB) WHERE path = ?"),
                      ("stray", ("INSERT INTO state_values SELECT log, (bucket + 1) % 262144, path, key, value,"
                                 " value_hash FROM state_values WHERE path = ?"))):
        copy = tmp_path / f"{name}.db"
        copy.write_bytes(clean.read_bytes())
        conn = sqlite3.connect(copy)
        conn.execute(sql, (status,))
        conn.commit()
        conn.close()
        assert f"log VN state value {status.hex()}" in _replay_locations(copy, net), name


def test_a_pending_row_of_a_log_with_no_other_row_is_found(net: Net, tmp_path: Path) -> None:
    path = tmp_path / "n.db"
    _build(path, net, 10 ** 6)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE state_pending_buckets SET log = 'ZZ' WHERE seq = (SELECT min(seq) FROM state_pending_buckets)")
    conn.commit()
    conn.close()
    assert any(loc.startswith("log ZZ") for loc in _replay_locations(path, net))


def test_a_key_rewritten_batch_after_batch_is_merged_on_bytes(net: Net, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # Each batch adds the status value again, whole and one change longer: pending bytes grow as the square
    # of the rewrites, so a byte budget merges them long before merge_rows.
    monkeypatch.setattr("ledger.staterows.MERGE_BYTES", 2_000)
    path = tmp_path / "n.db"
    with Storage.open(path, merge_rows=10 ** 6) as db:
        db.put_root(1, net.genesis.to_cbor())
        vn = MemberLog(db, "VN", NETWORK, RegistryState(net.chain()), net.node["VN"])
        vn.append(_batches(net)[0])
        for i in range(40):
            vn.append(_statuses(net, b"cred-9", ("suspended" if i % 2 == 0 else "active",), T0 + 1000 + i))
            conn = sqlite3.connect(path)
            pending = conn.execute("SELECT coalesce(sum(length(key) + length(value)), 0) FROM state_pending").fetchone()[0]
            conn.close()
            assert pending < 2_000 + 2 * 40 * 40  # the budget, and at most one batch's value beyond it
        assert _rows(path, "state_values") > 0
        vn.close()
    assert _replay_locations(path, net) == []


def test_a_failed_commit_is_rolled_back(net: Net, tmp_path: Path) -> None:
    # A COMMIT that fails (here a deferred constraint, standing in for a full disk or an I/O error at commit)
    # must not leave the connection inside the transaction: the next append works, and nothing of the failed
    # one is seen.
    with Storage.open(tmp_path / "n.db", merge_rows=10 ** 6) as db:
        db.put_root(1, net.genesis.to_cbor())
        vn = MemberLog(db, "VN", NETWORK, RegistryState(net.chain()), net.node["VN"])
        vn.append(_batches(net)[0])
        before = _reads(db, [vn.size])
        conn = db._conn
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("CREATE TEMP TABLE parent (id INTEGER PRIMARY KEY)")
        conn.execute("CREATE TEMP TABLE child (pid INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)")
        original = db.append_entries

        def failing_commit(*args: object, **kw: object) -> range:
            wait = kw["before_commit"]

            def then_spoil() -> None:
                wait()  # type: ignore[operator]
                conn.execute("INSERT INTO child VALUES (7)")
            return original(*args, **{**kw, "before_commit": then_spoil})  # type: ignore[arg-type]

        db.append_entries = failing_commit  # type: ignore[method-assign]
        with pytest.raises(StorageError):
            vn.append(_batches(net)[1])
        db.append_entries = original  # type: ignore[method-assign]
        conn.execute("PRAGMA foreign_keys=OFF")
        assert not conn.in_transaction
        assert db.size("VN") == 5 and _reads(db, [vn.size]) == before


def test_a_pending_anchor_row_is_checked_by_replay(net: Net, tmp_path: Path) -> None:
    # credential_anchors_pending is read as credential_anchors is (a credential's anchors): a row moved to
    # another index, or dropped, is reported by replay like a merged row would be.
    clean = tmp_path / "clean.db"
    _build(clean, net, 10 ** 6, credentials=True)
    assert _rows(clean, "credential_anchors_pending") == 9 and _replay_locations(clean, net) == []
    last = "(SELECT max(seq) FROM credential_anchors_pending)"
    for name, sql in (("moved", f"UPDATE credential_anchors_pending SET idx = idx + 1 WHERE seq = {last}"),
                      ("dropped", f"DELETE FROM credential_anchors_pending WHERE seq = {last}")):
        copy = tmp_path / f"{name}.db"
        copy.write_bytes(clean.read_bytes())
        conn = sqlite3.connect(copy)
        conn.execute(sql)
        conn.commit()
        conn.close()
        assert "log VN credential_anchors" in _replay_locations(copy, net), name


def test_a_stored_bucket_out_of_range_stops_the_log_from_opening(net: Net, tmp_path: Path) -> None:
    # A bucket row no 18-bit bucket number names (a damaged or foreign database) is refused by name at
    # start-up, as a StorageError that says to replay, not as an IndexError from the map's arrays.
    path = tmp_path / "n.db"
    _build(path, net, 1)  # everything merged: state_buckets holds the buckets
    conn = sqlite3.connect(path)
    conn.execute("UPDATE state_buckets SET bucket = 262144 WHERE bucket = (SELECT min(bucket) FROM state_buckets)")
    conn.commit()
    conn.close()
    with Storage.open(path) as db:
        _, state = open_registry(db, net.genesis, net.genesis.root_hash)
        with pytest.raises(StorageError, match="18-bit bucket number.*replay the database"):
            MemberLog(db, "VN", NETWORK, state)
