"""``mekong audit replay`` and ``audit compare``: whole-ledger checks and split views."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from conftest import Invoke, Scenario
from netfixture import Network

from credentials.cwt import UnverifiedCredential, credential_digest
from ledger.bodies import IssuerRegister
from ledger.entries import UnverifiedEntry, make_entry
from ledger.replay import replay
from ledger.state import MemoryState
from ledger.statemap import bucket_of, value_hash
from ledger.storage import Storage


def test_replay_a_database(scenario: Scenario, invoke: Invoke) -> None:
    scenario.net.wait_replicated()
    r = invoke("audit", "replay", "--db", scenario.net.database("VN"), "--pin", scenario.pin, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["ok"] and doc["logs"]["VN"] == {"size": 3, "verified": 3, "root": doc["logs"]["VN"]["root"]}
    assert doc["entries_checked"] == 4 and doc["problems"] == []


def test_replay_finds_tampering(scenario: Scenario, invoke: Invoke, tmp_path: Path) -> None:
    copy = tmp_path / "copy.sqlite"
    src, db = sqlite3.connect(scenario.net.database("VN")), sqlite3.connect(copy)
    src.backup(db)  # the database is in WAL mode: a file copy could miss the log
    src.close()
    raw = db.execute("SELECT raw FROM entries WHERE log = 'VN' AND idx = 1").fetchone()[0]
    db.execute("UPDATE entries SET raw = ? WHERE log = 'VN' AND idx = 1", (raw[:-1] + bytes([raw[-1] ^ 1]),))
    db.commit()
    db.close()
    genesis = tmp_path / "genesis.cbor"
    genesis.write_bytes(scenario.net.genesis.to_cbor())
    r = invoke("audit", "replay", "--db", copy, "--genesis", genesis)
    assert r.exit_code == 1, r.output
    assert "PROBLEMS" in r.stdout and "log VN entry 1" in r.stdout


def test_replay_usage_and_tool_errors(invoke: Invoke, tmp_path: Path, net: Network) -> None:
    assert invoke("audit", "replay").exit_code == 3
    assert invoke("audit", "replay", "--db", net.database("VN")).exit_code == 3  # which genesis?
    r = invoke("audit", "replay", "--db", tmp_path / "missing.sqlite", "--pin", "00" * 32)
    assert r.exit_code == 4 and "no database file" in r.stderr
    assert not (tmp_path / "missing.sqlite").exists()
    r = invoke("audit", "replay", "--db", net.database("VN"), "--pin", "00" * 32)
    assert r.exit_code == 4 and "no genesis with the pinned hash" in r.stderr


def test_replay_from_a_node(scenario: Scenario, invoke: Invoke, tmp_path: Path) -> None:
    r = invoke("audit", "replay", "--node", scenario.node.url, "--pin", scenario.pin, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["ok"] and doc["logs"]["VN"]["verified"] == 3 and doc["sync"]["answered"] == [scenario.node.url]
    assert not (tmp_path / "default-replica").exists()  # a fresh replica, not the verifier's


def test_compare_consistent_nodes(scenario: Scenario, invoke: Invoke) -> None:
    scenario.net.wait_replicated()
    before = scenario.net.host("VN").own.size
    r = invoke("audit", "compare", "--node", scenario.node.url, "--node", scenario.net.urls["TH"], "--pin",
               scenario.pin, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["split_views"] == [] and doc["problems"] == []
    assert {s["size"] for s in doc["logs"]["VN"]} == {before}


def test_compare_finds_a_split_view(scenario: Scenario, invoke: Invoke, tmp_path: Path) -> None:
    (tmp_path / "fork").mkdir()
    fork = Network(tmp_path / "fork")
    try:
        t = int(time.time())
        fork.submit("VN", [make_entry("VN", "issuer.register", t, IssuerRegister(
            f"VN/{name}", "Forged", ("e-invoice",), "high", "VN"), fork.admin["VN"]) for name in ("a", "b", "c", "d")])
        r = invoke("audit", "compare", "--node", scenario.node.url, "--node", fork.urls["VN"], "--pin", scenario.pin)
    finally:
        fork.close()
    assert r.exit_code == 1, r.output
    assert "SPLIT VIEW: log VN: the checkpoint of size 3" in r.stdout and "not consistent" in r.stdout


def test_compare_errors(scenario: Scenario, invoke: Invoke, closed_port_url: str) -> None:
    assert invoke("audit", "compare", "--node", scenario.node.url).exit_code == 3
    r = invoke("audit", "compare", "--node", scenario.node.url, "--node", closed_port_url, "--pin", scenario.pin)
    assert r.exit_code == 4
    assert f"unreachable: {closed_port_url}" in r.stdout


def _clean_copy(scenario: Scenario, tmp_path: Path, name: str, statements: list[str]) -> Path:
    """A backup of VN's database with rows deleted consistently, so that replay alone passes it."""
    copy = tmp_path / name
    src, db = sqlite3.connect(scenario.net.database("VN")), sqlite3.connect(copy)
    src.backup(db)
    src.close()
    for sql in statements:
        db.execute(sql)
    _rebuild_state(db, "VN")
    db.commit()
    db.close()
    return copy


def _rebuild_state(db: sqlite3.Connection, log: str) -> None:
    """What a careful deleter also does: recompute the log's state and registry tables from the entries left."""
    rows = db.execute("SELECT raw, leaf_hash FROM entries WHERE log = ? ORDER BY idx", (log,)).fetchall()
    db.execute("DELETE FROM state_roots WHERE log = ? AND size > ?", (log, len(rows)))
    for table in ("registry_entries", "credential_anchors", "credential_anchors_pending"):
        db.execute(f"DELETE FROM {table} WHERE log = ? AND idx >= ?", (log, len(rows)))
    sizes = [s for (s,) in db.execute("SELECT size FROM state_roots WHERE log = ? ORDER BY size", (log,))]
    state, done = MemoryState(), 0
    for size in sizes:
        state.apply(done, [UnverifiedEntry.decode(r).body for r, _ in rows[done:size]], [h for _, h in rows[done:size]])
        db.execute("UPDATE state_roots SET root = ? WHERE log = ? AND size = ?", (state.root, log, size))
        done = size
    for table in ("state_values", "state_buckets", "state_pending", "state_pending_buckets"):  # merged (7.1.16)
        db.execute(f"DELETE FROM {table} WHERE log = ?", (log,))
    db.executemany("INSERT INTO state_values VALUES (?, ?, ?, ?, ?, ?)",
                   [(log, bucket_of(p), p, k, v, value_hash(v)) for p, (k, v) in state.items().items()])
    db.executemany("INSERT INTO state_buckets VALUES (?, ?, ?, ?)",
                   [(log, b, c, h) for b, (c, h) in state.buckets().items()])


def test_replay_against_the_network_sees_clean_deletions(scenario: Scenario, invoke: Invoke,
                                                         tmp_path: Path) -> None:
    # Trust II item 6: rows deleted cleanly from the end leave a consistent, shorter database; only what the
    # network proves shows it.
    scenario.net.wait_replicated()
    last = _clean_copy(scenario, tmp_path, "no-last-entry.sqlite", [
        "DELETE FROM entries WHERE log = 'VN' AND idx = 2",
        "DELETE FROM nodes WHERE log = 'VN' AND ((idx + 1) << level) > 2",
        "DELETE FROM checkpoints WHERE log = 'VN' AND size > 2",
        "DELETE FROM cosignatures WHERE log = 'VN' AND size > 2",
        "DELETE FROM finals WHERE log = 'VN' AND size > 2",
        "DELETE FROM fresh WHERE log = 'VN' AND size > 2",
        "UPDATE logs SET size = 2 WHERE log = 'VN'"])
    unfinal = _clean_copy(scenario, tmp_path, "no-final.sqlite", [
        "DELETE FROM finals WHERE log = 'VN' AND size = 3",
        "DELETE FROM cosignatures WHERE log = 'VN' AND size = 3 AND witness != 'VN'",
        "DELETE FROM fresh WHERE log = 'VN' AND size = 3 AND witness != 'VN'"])
    for copy, finding in ((last, "log VN: the database holds 2 entries; "),
                          (unfinal, "log VN: the database lacks the final checkpoint of size 3")):
        assert invoke("audit", "replay", "--db", copy, "--pin", scenario.pin).exit_code == 0  # alone: it passes
        r = invoke("audit", "replay", "--db", copy, "--node", scenario.node.url, "--pin", scenario.pin)
        assert r.exit_code == 1, r.output
        assert f"MISSING: {finding}" in r.stdout, r.stdout
    r = invoke("audit", "replay", "--db", scenario.net.database("VN"), "--node", scenario.node.url, "--pin",
               scenario.pin, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["missing"] == [], r.output


def test_export_is_the_replayed_registry_as_sql(scenario: Scenario, invoke: Invoke, tmp_path: Path) -> None:
    scenario.ok("credential", "revoke", scenario.credential, "--reason", "superseded",
                *scenario.entry_args(scenario.issuer_key))
    scenario.net.wait_replicated()
    copy = _clean_copy(scenario, tmp_path, "vn.sqlite", [])
    out = tmp_path / "registry.sqlite"
    r = invoke("audit", "export", "--db", copy, "--pin", scenario.pin, "--out", out, "--json")
    assert r.exit_code == 0, r.output
    counts = json.loads(r.stdout)["tables"]
    # The export against the replay of the same database.
    with Storage.open(copy) as storage:
        report = replay(storage, scenario.net.genesis, scenario.net.genesis.root_hash)
        state = report.state
    db = sqlite3.connect(out)
    try:
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        (issuer,) = db.execute("SELECT issuer, member FROM issuers").fetchall()
        assert issuer == ("VN/customs-coo", "VN")
        rec = state.issuer("VN/customs-coo")
        assert [k.hex() for k in rec.keys] == [k for (k,) in db.execute("SELECT kid FROM keys ORDER BY added_idx")]
        cred = UnverifiedCredential.decode(scenario.credential.read_bytes())
        (anchor,) = state.anchors(credential_digest(scenario.credential.read_bytes()))
        assert db.execute("SELECT log, idx, issuer FROM anchors WHERE digest = ?",
                          (anchor.digest.hex(),)).fetchall() == [("VN", anchor.index, "VN/customs-coo")]
        history = state.credential("VN/customs-coo", cred.claims.cti).history
        assert [(e.status, e.index) for e in history] == db.execute(
            "SELECT status, idx FROM credential_events ORDER BY idx").fetchall() == [("revoked", history[0].index)]
        assert counts["checkpoints"] == db.execute("SELECT count(*) FROM checkpoints").fetchone()[0] == \
            len(_rows(copy, "checkpoints"))
        assert counts["cosignatures"] == len(_rows(copy, "cosignatures"))
        indexes = {row[1] for row in db.execute("SELECT * FROM sqlite_master WHERE type = 'index'")}
        assert any("digest" in name for name in indexes), indexes
    finally:
        db.close()
    # a database that does not replay is not exported
    tampered = tmp_path / "tampered.sqlite"
    src, dst = sqlite3.connect(copy), sqlite3.connect(tampered)
    src.backup(dst)
    dst.execute("UPDATE entries SET raw = x'00' WHERE log = 'VN' AND idx = 1")
    dst.commit()
    src.close()
    dst.close()
    r = invoke("audit", "export", "--db", tampered, "--pin", scenario.pin, "--out", tmp_path / "no.sqlite")
    assert r.exit_code == 1 and "NOT EXPORTED" in r.output and not (tmp_path / "no.sqlite").exists()


def _rows(path: Path, table: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"SELECT * FROM {table}").fetchall()
    finally:
        conn.close()
