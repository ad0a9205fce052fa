"""Tests for ledger.storage: round trips, atomic appends, checkpoints, roots, crash safety."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ledger.errors import StorageError
from ledger.schema import SCHEMA_VERSION
from ledger.storage import Storage


def _leaf(raw: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + raw).digest()


def _nodes_for(start: int, leaves: list[bytes], get) -> list[tuple[int, int, bytes]]:
    """Complete subtrees above the leaves completed by appending ``leaves`` at ``start``."""
    known = {(0, start + i): h for i, h in enumerate(leaves)}
    out = []
    end = start + len(leaves)
    level = 1
    while (1 << level) <= end:
        first = start >> level
        for idx in range(first, end >> level):
            if ((idx + 1) << level) <= start:
                continue
            left = known.get((level - 1, 2 * idx)) or get(level - 1, 2 * idx)
            right = known.get((level - 1, 2 * idx + 1)) or get(level - 1, 2 * idx + 1)
            h = hashlib.sha256(b"\x01" + left + right).digest()
            known[(level, idx)] = h
            out.append((level, idx, h))
        level += 1
    return out


def _append(store: Storage, log: str, raws: list[bytes]) -> range:
    start = store.size(log)
    leaves = [_leaf(r) for r in raws]
    return store.append_entries(log, start, raws, leaves,
                                _nodes_for(start, leaves, lambda lv, i: store.get_node(log, lv, i)))


@pytest.fixture
def store(tmp_path: Path):
    s = Storage.open(tmp_path / "ledger.db")
    yield s
    s.close()


def test_open_sets_wal_full_and_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with Storage.open(path) as s:
        assert s.synchronous == 2  # FULL
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    conn.execute("UPDATE schema_version SET version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match="schema version"):
        Storage.open(path)


def test_open_refuses_unknown_synchronous(tmp_path: Path) -> None:
    with pytest.raises(StorageError):
        Storage.open(tmp_path / "a.db", synchronous="SOMETIMES")


def test_not_a_database_is_wrapped(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError) as info:
        Storage.open(path)
    assert isinstance(info.value.__cause__, sqlite3.Error)


def test_append_read_round_trip(store: Storage) -> None:
    raws = [bytes([i]) * (i + 1) for i in range(7)]
    assert _append(store, "VN", raws[:3]) == range(3)
    assert _append(store, "VN", raws[3:]) == range(3, 7)
    assert store.size("VN") == 7
    assert store.size("TH") == 0
    assert store.read_entries("VN", 0, 7) == raws
    assert store.read_entries("VN", 2, 5) == raws[2:5]
    assert store.read_entries("VN", 7, 7) == []
    assert store.read_leaf_hashes("VN", 0, 7) == [_leaf(r) for r in raws]
    assert store.get_node("VN", 0, 6) == _leaf(raws[6])
    want = hashlib.sha256(b"\x01" + _leaf(raws[0]) + _leaf(raws[1])).digest()
    assert store.get_node("VN", 1, 0) == want
    assert {(lv, i) for lv, i, _ in store.iter_nodes("VN")} == {(1, 0), (1, 1), (1, 2), (2, 0)}
    assert [i for i, _, _ in store.iter_entries("VN", batch=2)] == list(range(7))
    with pytest.raises(StorageError):
        store.read_entries("VN", 5, 8)
    with pytest.raises(StorageError):
        store.get_node("VN", 2, 1)


def test_logs_are_separate(store: Storage) -> None:
    _append(store, "VN", [b"a", b"b"])
    _append(store, "TH", [b"c"])
    assert store.logs() == ["TH", "VN"]
    assert store.read_entries("TH", 0, 1) == [b"c"]
    assert store.get_node("TH", 0, 0) == _leaf(b"c")


def test_append_at_wrong_start_refused(store: Storage) -> None:
    _append(store, "VN", [b"a"])
    with pytest.raises(StorageError, match="cannot append at 0"):
        store.append_entries("VN", 0, [b"b"], [_leaf(b"b")], [])
    with pytest.raises(StorageError, match="cannot append at 2"):
        store.append_entries("VN", 2, [b"b"], [_leaf(b"b")], [])
    assert store.size("VN") == 1


def test_append_is_atomic(store: Storage) -> None:
    _append(store, "VN", [b"a", b"b"])
    # A node row that collides with an existing one fails the whole batch.
    bad_nodes = [(1, 0, b"\x00" * 32)]
    with pytest.raises(StorageError):
        store.append_entries("VN", 2, [b"c", b"d"], [_leaf(b"c"), _leaf(b"d")], bad_nodes)
    assert store.size("VN") == 2
    assert store.read_entries("VN", 0, 2) == [b"a", b"b"]
    assert _append(store, "VN", [b"c", b"d"]) == range(2, 4)


@pytest.mark.parametrize("raws,leaves,nodes", [
    ([b"a"], [b"short"], []),
    ([b"a", b"b"], [_leaf(b"a")], []),
    ([], [], []),
    ([b"a"], [_leaf(b"a")], [(1, 0, b"\x00" * 32)]),  # not complete with one leaf
    ([b"a"], [_leaf(b"a")], [(0, 0, b"\x01" * 32)]),  # level 0 disagrees with the leaf hash
], ids=["short-leaf-hash", "length-mismatch", "empty-batch", "incomplete-node", "level0-mismatch"])
def test_append_argument_checks(store: Storage, raws, leaves, nodes) -> None:
    with pytest.raises(StorageError):
        store.append_entries("VN", 0, raws, leaves, nodes)
    assert store.size("VN") == 0


def test_checkpoints_and_cosignatures(store: Storage) -> None:
    _append(store, "VN", [b"a", b"b", b"c"])
    assert store.latest_checkpoint("VN") is None
    store.put_checkpoint("VN", 2, b"note2")
    store.put_checkpoint("VN", 3, b"note3")
    store.put_checkpoint("VN", 3, b"note3")  # idempotent
    with pytest.raises(StorageError, match="different checkpoint"):
        store.put_checkpoint("VN", 3, b"other")
    with pytest.raises(StorageError):
        store.put_checkpoint("VN", 4, b"too big")
    assert store.latest_checkpoint("VN") == (3, b"note3")
    assert store.checkpoint("VN", 2) == b"note2"
    assert store.checkpoint("VN", 1) is None
    assert store.checkpoints("VN") == [(2, b"note2"), (3, b"note3")]
    assert store.checkpoints("VN", newest=1) == [(3, b"note3")]  # the newest, still by size
    assert store.checkpoints("VN", newest=5) == store.checkpoints("VN")
    store.put_cosignatures("VN", 3, [("TH", b"line-th"), ("KH", b"line-kh")])
    store.put_cosignatures("VN", 3, [("TH", b"line-th-later")])  # first one kept
    with pytest.raises(StorageError, match="no checkpoint"):
        store.put_cosignatures("VN", 1, [("TH", b"x")])
    got = store.cosignatures("VN", 3)
    assert [(c.witness, c.line) for c in got] == [("KH", b"line-kh"), ("TH", b"line-th")]
    assert len(store.cosignatures("VN")) == 2


def test_roots_by_version(store: Storage) -> None:
    d1 = store.put_root(1, b"genesis")
    assert d1 == hashlib.sha256(b"genesis").digest()
    store.put_root(1, b"genesis")
    store.put_root(2, b"v2-a")
    store.put_root(2, b"v2-b")
    assert [(r.version, r.signed) for r in store.roots()] == [
        (1, b"genesis"), *sorted([(2, b"v2-a"), (2, b"v2-b")], key=lambda t: hashlib.sha256(t[1]).digest())]
    assert [r.signed for r in store.roots(1)] == [b"genesis"]


def test_reopen_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with Storage.open(path) as s:
        _append(s, "VN", [b"x", b"y"])
        s.put_checkpoint("VN", 2, b"n")
    with Storage.open(path) as s:
        assert s.read_entries("VN", 0, 2) == [b"x", b"y"]
        assert s.latest_checkpoint("VN") == (2, b"n")


_CRASH_CHILD = textwrap.dedent("""
    import sys
    sys.path[:0] = [{root!r}, {tests!r}]
    from ledger.storage import Storage
    from test_storage import _append
    s = Storage.open({path!r})
    n = 0
    while True:
        _append(s, "VN", [b"entry-%d" % (n + i) for i in range(50)])
        n += 50
        print(n, flush=True)
""")


def test_crash_leaves_consistent_prefix(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    root = str(Path(__file__).resolve().parents[2])
    code = _CRASH_CHILD.format(root=root, tests=str(Path(__file__).parent), path=str(path))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    acknowledged = 0
    assert proc.stdout is not None
    deadline = time.monotonic() + 20
    while acknowledged < 1000 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acknowledged = int(line)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert acknowledged >= 1000, "child did not make progress"
    with Storage.open(path) as s:
        size = s.size("VN")
        assert size >= acknowledged and size % 50 == 0
        raws = s.read_entries("VN", 0, size)
        assert raws == [b"entry-%d" % i for i in range(size)]
        assert s.read_leaf_hashes("VN", 0, size) == [_leaf(r) for r in raws]
        nodes = {(lv, i): h for lv, i, h in s.iter_nodes("VN")}
        want = _nodes_for(0, [_leaf(r) for r in raws], lambda lv, i: b"")
        assert nodes == {(lv, i): h for lv, i, h in want}


def test_before_commit_failure_rolls_back(store: Storage) -> None:
    _append(store, "VN", [b"a"])

    def refuse() -> None:
        raise ValueError("signature check failed")

    with pytest.raises(ValueError):
        store.append_entries("VN", 1, [b"b"], [_leaf(b"b")], [], before_commit=refuse)
    assert store.size("VN") == 1
    calls = []
    store.append_entries("VN", 1, [b"b"], [_leaf(b"b")], [], before_commit=lambda: calls.append(1))
    assert calls == [1] and store.size("VN") == 2


# --------------------------------------------------------------------------- replays and recorded finality


def test_recorded_finals(store: Storage) -> None:
    _append(store, "VN", [b"a", b"b", b"c", b"d"])
    with pytest.raises(StorageError, match="no checkpoint"):
        store.put_final("VN", 2, 1, 100)
    for size in (2, 4):
        store.put_checkpoint("VN", size, b"note %d" % size)
    assert store.latest_final("VN") is None and store.final_covering("VN", 0) is None
    store.put_final("VN", 2, 1, 100)
    store.put_final("VN", 4, 2, 200)
    store.put_final("VN", 4, 2, 150)  # more cosignatures can only bring the witnessed time forward
    store.put_final("VN", 4, 2, 190)
    assert store.finals("VN") == [(2, 1, 100), (4, 2, 150)]
    assert [store.final_covering("VN", i) for i in range(5)] == [2, 2, 4, 4, None]
    assert store.latest_final("VN") == 4 and store.latest_final("TH") is None
