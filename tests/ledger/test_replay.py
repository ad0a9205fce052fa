"""Tests for ledger.replay: a clean database replays; one flipped byte anywhere is reported where it is."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nacl.signing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_memberlog import MEMBERS, NETWORK, T0, Net, anchors, make_net, setup_entries

from ledger.checkpoint import Checkpoint, add_signatures, sign_checkpoint
from ledger.errors import TamperError, VerificationError
from ledger.finality import checkpoint_extensions
from ledger.memberlog import MemberLog
from ledger.note import Note, NoteSignature, NoteSigner
from ledger.registry import RegistryState
from ledger.replay import ReplayReport, replay
from ledger.roots import Root, SignedRoot
from ledger.state import StateValue
from ledger.storage import Storage

WITNESSES = ("CN", "KH", "LA", "TH")


def _successor(net: Net) -> SignedRoot:
    g = net.genesis.root
    root = Root(g.network, 2, g.root_hash, g.members, g.quorum, g.threshold, g.faulty, T0 + 100)
    return SignedRoot.create(root, [net.admin[m] for m in MEMBERS[:4]])


def build_db(path: Path, net: Net) -> dict[str, object]:
    """A node database: VN's own log, a replica of TH's log, checkpoints, cosignatures and a later (fresh) line
    of one witness on each log's newest checkpoint, two roots.

    Pending state rows are merged at 20 rows (spec 7.1.16): VN's first two batches end in the merged state
    tables, its third batch and TH's log in the pending ones."""
    with Storage.open(path, merge_rows=20) as vn_db, Storage.open(path.with_name("th-owner.db")) as th_db:
        vn_db.put_root(1, net.genesis.to_cbor())
        vn_db.put_root(2, _successor(net).to_cbor())
        vn = MemberLog(vn_db, "VN", NETWORK, RegistryState(net.chain()), net.node["VN"])
        raws = setup_entries(net, "VN") + anchors(net, "VN", 18)
        for lo, hi in ((0, 5), (5, 12), (12, 20)):
            vn.append(raws[lo:hi])
            note = vn.checkpoint(now=T0 + hi)
            cp = Checkpoint.parse(note.text)
            if hi > 5:
                vn.add_cosignatures(hi, [net.cosigner(w).cosign(cp, T0 + hi + 1) for w in WITNESSES])
        vn.add_cosignatures(20, [net.cosigner(WITNESSES[0]).cosign(cp, T0 + 40)])  # a heartbeat: a fresh line
        th_owner = MemberLog(th_db, "TH", NETWORK, RegistryState(net.chain()), net.node["TH"])
        th_raws = setup_entries(net, "TH") + anchors(net, "TH", 5)
        th_owner.append(th_raws)
        th_note = th_owner.checkpoint()
        th = MemberLog(vn_db, "TH", NETWORK, vn.state)
        th.append_replicated(th_raws, 0)
        th.add_checkpoint(th_note.to_bytes())
        th.add_cosignatures(7, [net.cosigner("VN").cosign(Checkpoint.parse(th_note.text), T0 + 50)])
        th.add_cosignatures(7, [net.cosigner("VN").cosign(Checkpoint.parse(th_note.text), T0 + 60)])
        out = {"VN": vn.root_hash(), "TH": th.root_hash()}
        for m in (vn, th, th_owner):
            m.close()
    return out


@pytest.fixture(scope="module")
def net() -> Net:
    return make_net()


@pytest.fixture(scope="module")
def clean_db(tmp_path_factory: pytest.TempPathFactory, net: Net) -> tuple[Path, dict[str, object]]:
    path = tmp_path_factory.mktemp("replay") / "node.db"
    roots = build_db(path, net)
    conn = sqlite3.connect(path)  # fold the WAL into the main file so a plain copy is complete
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path, roots


def _replay(path: Path, net: Net) -> ReplayReport:
    with Storage.open(path) as s:
        return replay(s, net.genesis, net.genesis.root_hash)


def test_clean_database_replays(clean_db: tuple[Path, dict[str, object]], net: Net) -> None:
    path, roots = clean_db
    report = _replay(path, net)
    assert report.ok, [str(p) for p in report.problems]
    report.raise_on_problem()
    assert report.logs == ("TH", "VN")
    assert dict(report.sizes) == {"TH": 7, "VN": 20} == dict(report.verified)
    assert dict(report.roots) == roots
    assert report.entries_checked == 27
    assert report.checkpoints_checked == 4
    assert report.cosignatures_checked == 3 + 2 * len(WITNESSES) + 1
    assert report.chain.current.version == 2
    assert report.state.size("VN") == 20 and report.state.issuer("TH/customs") is not None


def test_replayed_state_backs_a_member_log(clean_db: tuple[Path, dict[str, object]], net: Net,
                                          tmp_path: Path) -> None:
    path = tmp_path / "copy.db"
    shutil.copy(clean_db[0], path)
    with Storage.open(path) as s:
        report = replay(s, net.genesis, net.genesis.root_hash)
        log = MemberLog(s, "VN", NETWORK, report.state, net.node["VN"])
        assert log.append(anchors(net, "VN", 3, first=100, t=T0 + 1000)) == [20, 21, 22]
        f = log.finality(20)
        assert f is not None and f.final and f.witnessed_time == T0 + 21
        log.close()
        assert replay(s, net.genesis, net.genesis.root_hash).ok


def test_wrong_genesis_raises(clean_db: tuple[Path, dict[str, object]], net: Net) -> None:
    with Storage.open(clean_db[0]) as s, pytest.raises(VerificationError):
        replay(s, net.genesis, b"\x00" * 32)


# --------------------------------------------------------------------------- tampering

#: (table, column, key columns, location pattern) for every column that holds hashed or signed bytes.
TARGETS = {
    ("entries", "raw"): ("log, idx", "log {0} entry {1}"),
    ("entries", "leaf_hash"): ("log, idx", "log {0} tree node level 0 index {1}"),
    ("nodes", "hash"): ("log, level, idx", "log {0} tree node level {1} index {2}"),
    ("checkpoints", "note"): ("log, size", "log {0} checkpoint size {1}"),
    ("cosignatures", "line"): ("log, size, witness", "log {0} checkpoint size {1} cosignature {2}"),
    ("fresh", "line"): ("log, witness", "log {0} fresh line of {1}"),
    ("roots", "signed"): ("version", "root version {0}"),
    ("roots", "digest"): ("version", "root version {0}"),
    ("state_roots", "root"): ("log, size", "log {0} state root size {1}"),
    ("state_buckets", "hash"): ("log, bucket", "log {0} state buckets"),
    ("state_pending", "value"): ("log, seq", "log {0} state pending value {1}"),
    ("state_pending", "key"): ("log, seq", "log {0} state pending value {1}"),
    ("state_pending", "value_hash"): ("log, seq", "log {0} state pending value {1}"),
    ("state_pending_buckets", "hash"): ("log, seq", "log {0} state pending bucket {1}"),
}


def _flip(path: Path, table: str, column: str, keys: str, row: int, pos: int, mask: int) -> tuple:
    conn = sqlite3.connect(path)
    rows = conn.execute(f"SELECT {keys}, {column} FROM {table} ORDER BY {keys}").fetchall()
    *key, value = rows[row % len(rows)]
    value = bytearray(value)
    value[pos % len(value)] ^= mask
    where = " AND ".join(f"{k.strip()} = ?" for k in keys.split(","))
    if table == "roots":
        where += " AND digest = ?"
        key_args = [*key, conn.execute(f"SELECT digest FROM roots ORDER BY {keys} LIMIT 1 OFFSET ?",
                                       (row % len(rows),)).fetchone()[0]]
    else:
        key_args = key
    cur = conn.execute(f"UPDATE {table} SET {column} = ? WHERE {where}", (bytes(value), *key_args))
    assert cur.rowcount == 1
    conn.commit()
    conn.close()
    return tuple(key)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=st.sampled_from(sorted(TARGETS)), row=st.integers(0, 10_000), pos=st.integers(0, 10_000),
       mask=st.integers(1, 255))
def test_one_flipped_byte_is_reported_with_its_location(clean_db: tuple[Path, dict[str, object]], net: Net,
                                                       tmp_path: Path, target: tuple[str, str], row: int,
                                                       pos: int, mask: int) -> None:
    path = tmp_path / "tampered.db"
    shutil.copy(clean_db[0], path)
    keys, pattern = TARGETS[target]
    key = _flip(path, *target, keys, row, pos, mask)
    report = _replay(path, net)
    expected = pattern.format(*key)
    locations = [p.location for p in report.problems]
    assert expected in locations, (expected, [str(p) for p in report.problems])
    assert all(isinstance(p, TamperError) for p in report.problems)
    with pytest.raises(TamperError):
        report.raise_on_problem()
    path.unlink()


def _tamper(clean: Path, tmp_path: Path, *sql: tuple[str, tuple]) -> Path:
    path = tmp_path / "t.db"
    shutil.copy(clean, path)
    conn = sqlite3.connect(path)
    for stmt, args in sql:
        conn.execute(stmt, args)
    conn.commit()
    conn.close()
    return path


_COPY_ENTRY_3_OVER_4 = ("UPDATE entries SET raw = (SELECT raw FROM entries WHERE log = 'VN' AND idx = 3),"
                        " leaf_hash = (SELECT leaf_hash FROM entries WHERE log = 'VN' AND idx = 3)"
                        " WHERE log = 'VN' AND idx = 4")


@pytest.mark.parametrize("sql,location", [
    ((("DELETE FROM nodes WHERE log = 'VN' AND level = 2 AND idx = 1", ()),), "log VN tree node level 2 index 1"),
    ((("INSERT INTO nodes VALUES ('VN', 3, 7, zeroblob(32))", ()),), "log VN tree node level 3 index 7"),
    ((("UPDATE logs SET size = 19 WHERE log = 'VN'", ()),), "log VN"),
    ((("DELETE FROM entries WHERE log = 'TH' AND idx = 3", ()),), "log TH entry 3"),
    ((("INSERT INTO cosignatures SELECT log, size, 'MM', line FROM cosignatures WHERE witness = 'KH' LIMIT 1", ()),),
     "log VN checkpoint size 12 cosignature MM"),
    ((("INSERT INTO cosignatures SELECT log, size, 'SG', line FROM cosignatures WHERE witness = 'KH' LIMIT 1", ()),),
     "log VN checkpoint size 12 cosignature SG"),
    ((("UPDATE checkpoints SET size = 11 WHERE log = 'VN' AND size = 12", ()),), "log VN checkpoint size 11"),
    ((("UPDATE roots SET version = 3 WHERE version = 2", ()),), "root version 3"),
    ((("INSERT INTO logs VALUES ('SG', 0)", ()),), "log SG"),
    ((("UPDATE entries SET log = 'LA' WHERE log = 'TH' AND idx = 6", ()),), "log LA"),
    ((("INSERT INTO checkpoints SELECT 'MM', size, note FROM checkpoints WHERE log = 'VN' AND size = 5", ()),),
     "log MM checkpoint size 5"),
    ((("UPDATE finals SET witnessed_time = witnessed_time - 100 WHERE log = 'VN' AND size = 12", ()),),
     "log VN final checkpoint size 12"),
    ((("INSERT INTO finals VALUES ('VN', 5, 1, 1)", ()),), "log VN final checkpoint size 5"),
    (((_COPY_ENTRY_3_OVER_4, ()),), "log VN entry 4"),
], ids=["missing-node", "superfluous-node", "size-column", "missing-entry", "cosignature-under-wrong-witness",
        "cosignature-by-non-member", "checkpoint-size-column", "root-version-column", "unknown-log",
        "entry-moved-to-another-log", "checkpoint-of-an-empty-log", "final-witnessed-time-moved-back",
        "final-without-quorum", "replayed-entry"])
def test_structural_tampering_is_reported(clean_db: tuple[Path, dict[str, object]], net: Net, tmp_path: Path,
                                          sql: tuple, location: str) -> None:
    report = _replay(_tamper(clean_db[0], tmp_path, *sql), net)
    assert location in [p.location for p in report.problems], [str(p) for p in report.problems]


def test_state_tables_are_checked_against_the_entries(clean_db: tuple[Path, dict[str, object]], net: Net,
                                                      tmp_path: Path) -> None:
    # A database whose state values were rewritten (say, a status change dropped from a credential's list)
    # replays with the value named; state roots rewritten are named at every size.
    conn = sqlite3.connect(clean_db[0])
    path, value = conn.execute("SELECT path, value FROM state_values WHERE log = 'VN' ORDER BY path LIMIT 1").fetchone()
    conn.close()
    dropped = StateValue(StateValue.decode(value).entries[:1] or ((0, bytes(32)),))
    other = StateValue(((0, bytes(32)),)).encode() if dropped.encode() == value else dropped.encode()
    report = _replay(_tamper(clean_db[0], tmp_path, ("UPDATE state_values SET value = ? WHERE log = 'VN' AND path = ?",
                                                     (other, path))), net)
    assert f"log VN state value {bytes(path).hex()}" in [p.location for p in report.problems], report.problems
    # the checkpoints' state lines are checked against the recomputed roots
    forged = _tamper(clean_db[0], tmp_path, ("UPDATE state_roots SET root = zeroblob(32) WHERE log = 'VN'", ()))
    report = _replay(forged, net)
    assert {f"log VN state root size {s}" for s in (5, 12, 20)} <= {p.location for p in report.problems}


def test_a_checkpoint_with_a_wrong_state_line_is_reported(net: Net, tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    with Storage.open(path) as db:
        db.put_root(1, net.genesis.to_cbor())
        vn = MemberLog(db, "VN", NETWORK, RegistryState(net.chain()), net.node["VN"])
        vn.append(setup_entries(net, "VN"))
        size = vn.size
        good = Checkpoint.parse(vn.checkpoint().text)
        vn.close()
        bad = Checkpoint(good.origin, good.size, good.root_hash, checkpoint_extensions(net.chain().current, bytes(32)))
        forged = sign_checkpoint(bad, NoteSigner(good.origin, net.node["VN"])).to_bytes()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE checkpoints SET note = ? WHERE log = 'VN' AND size = ?", (forged, size))
    conn.commit()
    conn.close()
    report = _replay(path, net)
    problems = {p.location: str(p) for p in report.problems}
    assert "state root" in problems.get(f"log VN checkpoint size {size}", ""), problems


def test_evidence_rows_are_checked(clean_db: tuple[Path, dict[str, object]], net: Net, tmp_path: Path) -> None:
    # Evidence accuses a member; a row its accused never signed, or that accuses it of what the verified entries
    # show it did not do, is reported (spec 7.5.1 step 9). Genuine rows of every kind pass.
    path = tmp_path / "evidence.db"
    shutil.copy(clean_db[0], path)
    with Storage.open(path) as db:
        notes = dict(db.checkpoints("VN"))
        real = Checkpoint.parse(Note.parse(notes[12]).text)
        lines = [NoteSignature.parse_line(c.line.decode()) for c in db.cosignatures("VN", 12)]
    vn = NoteSigner(real.origin, net.node["VN"])
    stranger = NoteSigner(real.origin, nacl.signing.SigningKey(b"\x09" * 32))
    other_root = Checkpoint(real.origin, 12, b"\x42" * 32, real.extensions)
    other_state = Checkpoint(real.origin, 12, real.root_hash, checkpoint_extensions(net.chain().current, bytes(32)))
    other_v2 = SignedRoot.create(dataclasses.replace(_successor(net).root, expires=T0 + 10**6),
                                 [net.admin[m] for m in MEMBERS[:4]])
    rows = {  # row id -> (log, kind, data, genuine)
        1: ("VN", "root-mismatch", sign_checkpoint(other_root, vn).to_bytes(), True),
        2: ("VN", "root-mismatch", sign_checkpoint(other_root, stranger).to_bytes(), False),
        3: ("VN", "root-mismatch", notes[12], False),  # the very root of the verified entries
        4: ("VN", "state-mismatch", sign_checkpoint(other_state, vn).to_bytes(), True),
        5: ("VN", "state-mismatch", notes[12], False),  # the very state root of the verified entries
        6: ("VN", "rule-breach", sign_checkpoint(other_root, vn).to_bytes(), True),
        7: ("VN", "rule-breach", b"not a note", False),
        8: ("VN", "split-view", add_signatures(sign_checkpoint(other_root, vn), [
            net.cosigner(w).cosign(other_root, T0 + 30) for w in WITNESSES]).to_bytes(),
            True),  # another history, final: a quorum cosigned it
        9: ("VN", "split-view", sign_checkpoint(other_root, vn).to_bytes(), False),  # not final
        10: ("VN", "gossip", notes[12], False),
        11: ("governance", "root-equivocation", other_v2.to_cbor(), True),
        12: ("governance", "root-equivocation", _successor(net).to_cbor(), False),  # the held root itself
        13: ("VN", "root-equivocation", other_v2.to_cbor(), False),
        14: ("governance", "root-mismatch", notes[12], False),
        15: ("VN", "split-view", add_signatures(sign_checkpoint(other_root, vn), lines).to_bytes(),
             False),  # another checkpoint's cosignatures
        16: ("VN", "rule-breach", notes[12], False),  # the very entries that passed every rule
    }
    with Storage.open(path) as db:
        for log, kind, data, _ in (rows[i] for i in sorted(rows)):  # the row ids are the keys
            assert db.put_evidence(log, kind, data, "as received", T0)
    report = _replay(path, net)
    flagged = {int(p.location.rsplit(" ", 1)[1]) for p in report.problems if p.location.startswith("evidence row")}
    assert flagged == {i for i, (*_, genuine) in rows.items() if not genuine}, [str(p) for p in report.problems]
    assert len(report.problems) == len(flagged), [str(p) for p in report.problems]


# --------------------------------------------------------------------------- crash safety

_CHILD = textwrap.dedent("""
    import sys
    sys.path[:0] = [{root!r}, {tests!r}]
    from ledger.memberlog import MemberLog
    from ledger.registry import RegistryState
    from ledger.storage import Storage
    from test_memberlog import NETWORK, anchors, make_net, setup_entries
    net = make_net()
    s = Storage.open({path!r})
    s.put_root(1, net.genesis.to_cbor())
    log = MemberLog(s, "VN", NETWORK, RegistryState(net.chain()), net.node["VN"])
    log.append(setup_entries(net, "VN"))
    n = 0
    while True:
        log.append(anchors(net, "VN", 50, first=n, t=1_700_000_010 + n))
        n += 50
        if n % 200 == 0:
            log.checkpoint()
        print(log.size, flush=True)
""")


def test_kill_mid_append_leaves_a_consistent_prefix(net: Net, tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    code = _CHILD.format(root=str(Path(__file__).resolve().parents[2]), tests=str(Path(__file__).parent),
                         path=str(path))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    acknowledged, deadline = 0, time.monotonic() + 30
    while acknowledged < 402 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acknowledged = int(line)
    time.sleep(0.05)  # let it get into the middle of another batch
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert acknowledged >= 402, "child made no progress"
    report = _replay(path, net)
    assert report.ok, [str(p) for p in report.problems]
    size = report.sizes["VN"]
    assert size >= acknowledged and (size - 2) % 50 == 0
    assert report.checkpoints_checked >= 2
