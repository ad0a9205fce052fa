"""Registry state kept in the database (spec 7.1.14, 7.1.15) and start-up without replay (spec 7.5.3).

The stored registry must answer every query exactly as the in-memory one rebuilt by replay does, for
every position of every log, including while a batch is being applied and after a batch is refused; a
node must open its database without reading its history; and a database whose newest checkpoint, registry
rows or entries were changed must be refused or reported, not believed.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_memberlog import NETWORK, Net, anchors, make_net
from test_registry import K1, K2, K3, T0, World, digest, kid, make_chain, snapshot
from test_replay import _tamper, build_db

from ledger.credbook import StoredBook
from ledger.entries import UnverifiedEntry
from ledger.errors import AuthorizationError, MekongError, StorageError
from ledger.memberlog import MemberLog
from ledger.registry import RegistryState
from ledger.reopen import open_registry
from ledger.replay import replay
from ledger.storage import Storage


@pytest.fixture(scope="module")
def net() -> Net:
    return make_net()


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory, net: Net) -> Path:
    path = tmp_path_factory.mktemp("reopen") / "node.db"
    build_db(path, net)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path


# --------------------------------------------------------------------------- start-up without replay


def test_open_reads_no_history_and_answers_as_replay(clean: Path, net: Net, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = _tamper(clean, tmp_path)
    with Storage.open(path) as s:
        replayed = replay(s, net.genesis, net.genesis.root_hash).state

        def no_scan(*args: Any, **kw: Any) -> Any:
            raise AssertionError("start-up read the whole log")

        monkeypatch.setattr(s, "iter_entries", no_scan)
        monkeypatch.setattr(s, "iter_state_values", no_scan)
        chain, state = open_registry(s, net.genesis, net.genesis.root_hash)
        assert chain.current.version == 2 and state.sizes() == replayed.sizes() == {"VN": 20, "TH": 7}
        assert isinstance(state.book, StoredBook)
        for log in ("VN", "TH"):
            assert (state.author_time(log), state.root_version(log)) == (replayed.author_time(log),
                                                                          replayed.root_version(log))
            for pos in range(state.size(log) + 1):
                assert state.issuer(f"{log}/customs", pos) == replayed.issuer(f"{log}/customs", pos)
                assert state.key(kid(net.issuer[log]), pos) == replayed.key(kid(net.issuer[log]), pos)
        for raw in anchors(net, "VN", 18) + anchors(net, "TH", 5):
            d = UnverifiedEntry.decode(raw).body.digest  # type: ignore[union-attr]
            assert state.anchors(d) == replayed.anchors(d) and state.anchors(d)
            assert state.anchors(d, {"VN": 6}) == replayed.anchors(d, {"VN": 6})
        # and a member log opened on it appends, with the rules reading the stored registry
        monkeypatch.undo()
        log = MemberLog(s, "VN", NETWORK, state, net.node["VN"])
        assert log.append(anchors(net, "VN", 2, first=500, t=T0 + 10_000)) == [20, 21]
        with pytest.raises(AuthorizationError):  # an issuer the stored registry does not know
            log.append([anchors(net, "TH", 1, first=501, t=T0 + 10_001)[0].replace(b"TH", b"VN", 1)])
        log.close()
        assert replay(s, net.genesis, net.genesis.root_hash).ok


def test_a_changed_newest_checkpoint_is_refused(clean: Path, net: Net, tmp_path: Path) -> None:
    # a subtree hash under the newest checkpoint rewritten: the tree no longer gives the signed root
    path = _tamper(clean, tmp_path, ("UPDATE nodes SET hash = zeroblob(32) WHERE log = 'VN' AND level = 4", ()))
    with Storage.open(path) as s, pytest.raises(StorageError, match=r"log VN: the newest checkpoint \(size 20\)"
                                                                     r".*replay it"):
        open_registry(s, net.genesis, net.genesis.root_hash)
    # a checkpoint note whose signature no longer verifies
    path.unlink()
    forge = "UPDATE checkpoints SET note = CAST(replace(CAST(note AS TEXT), 'gms', 'gmz') AS BLOB) WHERE log = 'TH'"
    path = _tamper(clean, tmp_path, (forge, ()))
    with Storage.open(path) as s, pytest.raises(StorageError, match="log TH: the newest checkpoint"):
        open_registry(s, net.genesis, net.genesis.root_hash)


def test_registry_rows_are_checked_by_replay(clean: Path, net: Net, tmp_path: Path) -> None:
    path = _tamper(clean, tmp_path, ("DELETE FROM registry_entries WHERE log = 'VN' AND idx = 1", ()))
    with Storage.open(path) as s:
        report = replay(s, net.genesis, net.genesis.root_hash)
        # start-up misses the key (it loads what the rows list) and the node refuses the issuer's anchors,
        # storing nothing; replay names the table
        assert "log VN registry_entries" in [p.location for p in report.problems], report.problems
        _, state = open_registry(s, net.genesis, net.genesis.root_hash)
        assert state.key(kid(net.issuer["VN"])) is None


def test_an_entry_read_through_the_state_map_is_checked(clean: Path, net: Net, tmp_path: Path) -> None:
    raw = anchors(net, "VN", 18)[4]  # entry 6 of VN
    d = UnverifiedEntry.decode(raw).body.digest  # type: ignore[union-attr]
    other = anchors(net, "VN", 18)[5]
    path = _tamper(clean, tmp_path, ("UPDATE entries SET raw = ? WHERE log = 'VN' AND idx = 6", (other,)))
    with Storage.open(path) as s:
        _, state = open_registry(s, net.genesis, net.genesis.root_hash)
        with pytest.raises(StorageError, match="log VN: entry 6 does not match the leaf hash"):
            state.anchors(d)


# --------------------------------------------------------------------------- stored = in memory, by property


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.data())
def test_the_stored_registry_answers_as_the_memory_one(tmp_path_factory: pytest.TempPathFactory,
                                                       data: st.DataObject) -> None:
    # Random batches of anchors (with and without credential ids), status changes, rotations and updates go
    # through a MemberLog over SQLite (a StoredBook) and a RegistryState in memory; some batches are refused
    # part-way. Every answer at every position must be the same, before and after reopening the database.
    world = World()
    path = tmp_path_factory.mktemp("stored") / "db.sqlite"
    storage = Storage.open(path, synchronous="OFF")
    chain = make_chain()
    for root in chain.roots:
        storage.put_root(root.version, chain.signed(root.version).to_cbor())
    log = MemberLog(storage, "VN", "gms", RegistryState(chain, StoredBook(storage)))
    ctis = [b"c0", b"c1", b"c2"]
    status = {c: "active" for c in ctis}
    keys = {"VN/customs": K1}
    t = T0 + 10

    def entry() -> bytes:
        nonlocal t
        t += data.draw(st.integers(1, 2), label="dt")  # no two entries alike (6.3.18)
        kind = data.draw(st.sampled_from(["anchor", "anchor", "status", "update", "rotate"]), label="kind")
        if kind == "status":
            cti = data.draw(st.sampled_from(ctis), label="cti")
            if status[cti] != "revoked":
                status[cti] = data.draw(st.sampled_from([s for s in ("active", "suspended", "revoked")
                                                         if s != status[cti]]), label="status")
                return world.status(cti, status[cti], key=keys["VN/customs"], t=t)
        if kind == "rotate" and keys["VN/customs"] is K1:
            keys["VN/customs"] = K2
            return world.rotate(K1, K2, commit=K3, t=t)
        if kind == "update":
            return world.update(loa=data.draw(st.sampled_from(["low", "high"]), label="loa"), t=t)
        return world.anchor(data.draw(st.integers(0, 4), label="digest"), key=keys["VN/customs"],
                            cti=data.draw(st.sampled_from([None, *ctis]), label="anchor cti"), t=t)

    def both(batch: list[bytes]) -> None:
        start = world.state.size("VN")
        try:
            world.apply(*batch)
        except MekongError:
            with pytest.raises(MekongError):
                log.append_replicated(batch, start)
            return
        log.append_replicated(batch, start)

    try:
        both([world.register(), world.add_key(K1, commit=K2)])
        for _ in range(data.draw(st.integers(1, 5), label="batches")):
            batch = [entry() for _ in range(data.draw(st.integers(1, 5), label="size"))]
            if data.draw(st.booleans(), label="spoil"):  # an entry the rules refuse, somewhere in the batch
                batch.insert(data.draw(st.integers(0, len(batch)), label="at"),
                             world.anchor(9, key=K3, t=t))
            both(batch)
        args = ([kid(k) for k in (K1, K2, K3)], ["VN/customs"], ctis, [digest(i) for i in range(6)])
        expected = snapshot(world.state, *args)
        assert snapshot(log.state, *args) == expected
        log.close()
        _, reopened = open_registry(storage, chain.signed(1))
        assert snapshot(reopened, *args) == expected
    finally:
        storage.close()
