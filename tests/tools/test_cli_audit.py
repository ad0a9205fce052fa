"""``mekong audit replay`` and ``audit compare``: whole-ledger checks and split views."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from conftest import Invoke, Scenario
from netfixture import Network

from ledger.bodies import IssuerRegister
from ledger.entries import UnverifiedEntry, make_entry
from ledger.state import MemoryState
from ledger.statemap import bucket_of, value_hash


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
    """What a careful deleter also does: recompute the log's state tables from the entries left."""
    rows = db.execute("SELECT raw, leaf_hash FROM entries WHERE log = ? ORDER BY idx", (log,)).fetchall()
    db.execute("DELETE FROM state_roots WHERE log = ? AND size > ?", (log, len(rows)))
    sizes = [s for (s,) in db.execute("SELECT size FROM state_roots WHERE log = ? ORDER BY size", (log,))]
    state, done = MemoryState(), 0
    for size in sizes:
        state.apply(done, [UnverifiedEntry.decode(r).body for r, _ in rows[done:size]], [h for _, h in rows[done:size]])
        db.execute("UPDATE state_roots SET root = ? WHERE log = ? AND size = ?", (state.root, log, size))
        done = size
    db.execute("DELETE FROM state_values WHERE log = ?", (log,))
    db.execute("DELETE FROM state_buckets WHERE log = ?", (log,))
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
