"""A node's catch-up (node/replicate.py, specs/api.md A.9): the next range is fetched while the current one is
appended, nothing is appended out of order or twice, each range goes with the serving peer's proof that it leads
to the checkpoint, and a peer whose range is refused is passed over for the next.

The peer and the ledger are fakes here (the integration tests in tests/integration/test_catchup.py catch
real nodes up over real HTTP); what is tested is the order of requests and appends.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from httphelp import make_config

from ledger import cbor
from ledger.errors import DecodeError, StorageError, VerificationError
from ledger.memberlog import RuleBreach, TargetTree
from node import replicate
from node.metrics import node_metrics
from node.replicate import EntriesRefused, PeerError
from node.service import NodeService

ROOT = b"\x07" * 32


class FakeLedger:
    """The ledger thread: appends in order, slowly, and records what it was given and what was asked meanwhile."""

    def __init__(self, size: int = 0, fail_at: int | None = None, refuse_from: str = "",
                 breach_at: int | None = None) -> None:
        self.size, self.fail_at, self.refuse_from, self.breach_at = size, fail_at, refuse_from, breach_at
        self.targets: list[TargetTree] = []
        self.executor = ThreadPoolExecutor(1)
        self.appended: list[tuple[int, int]] = []
        self.requested: list[int] = []
        self.asked_urls: list[str] = []
        self.events: list[tuple[str, int]] = []  # ("request", start) and ("appended", start), as they happen
        self.lock = threading.Lock()

    def event(self, kind: str, at: int) -> None:
        with self.lock:
            self.events.append((kind, at))

    def member_log(self, member: str) -> FakeLedger:
        return self

    def append_replicated(self, member: str, raws: list[bytes], start: int, target: TargetTree) -> int:
        assert start == self.size, f"append at {start}, log at {self.size}"
        if self.fail_at is not None and start <= self.fail_at < start + len(raws):
            raise StorageError("disk full")
        if self.refuse_from and raws[0].startswith(self.refuse_from.encode()):
            raise VerificationError(f"entries {start}-{start + len(raws) - 1} are not those of the checkpoint")
        if self.breach_at is not None and start <= self.breach_at < start + len(raws):
            raise RuleBreach(f"entries {start}-{start + len(raws) - 1} lead to the checkpoint, and one is refused",
                             target.size)
        self.targets.append(target)
        threading.Event().wait(0.05)  # verification takes a while: the next fetch goes out meanwhile
        self.appended.append((start, len(raws)))
        self.event("appended", start)
        self.size = start + len(raws)
        return self.size


def _service(tmp_path: Path, ledger: FakeLedger, short: set[int] = frozenset(), missing: int | None = None) -> Any:
    svc = NodeService(make_config(tmp_path), ledger, node_metrics(), lambda: 0)  # type: ignore[arg-type]

    async def request(method: str, url: str, path: str, *args: Any, **kw: Any) -> tuple[int, bytes]:
        query = dict(p.split("=") for p in path.split("?")[1].split("&"))
        if "/proof/consistency" in path:  # a proof naming its own sizes, to see which one went with which range
            proof = [base64.b64encode(int(query[k]).to_bytes(32, "big")).decode() for k in ("from", "to")]
            return 200, json.dumps({"proof": proof}).encode()
        lo, hi = int(query["start"]), int(query["end"])
        ledger.requested.append(lo)
        ledger.asked_urls.append(url)
        ledger.event("request", lo)
        if missing is not None and lo >= missing:
            return 404, b"gone"
        if lo in short:  # a peer may send fewer than asked (A.9)
            hi = lo + 1
        return 200, cbor.encode([b"%s entry %d" % (url.encode(), i) for i in range(lo, hi)])

    svc._request = request
    return svc


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replicate, "FETCH_BATCH", 3)


def test_the_next_range_is_fetched_while_one_is_appended(tmp_path: Path) -> None:
    ledger = FakeLedger(size=2)
    asyncio.run(_service(tmp_path, ledger, short={5}).replicator.fetch_entries("VN", "http://peer", 2, 13, ROOT))
    assert ledger.size == 13
    assert ledger.appended == [(2, 3), (5, 1), (6, 3), (9, 3), (12, 1)]  # in order, each entry once
    assert ledger.requested == [2, 5, 6, 9, 12]
    # each range went with the checkpoint and the proof from where the range ends (none for the last)
    assert {(t.size, t.root_hash) for t in ledger.targets} == {(13, ROOT)}
    assert [t.proof for t in ledger.targets] == [
        (end.to_bytes(32, "big"), (13).to_bytes(32, "big")) for end in (5, 6, 9, 12)] + [()]
    # each range was asked for before the range before it was appended: the transfer overlaps the work
    for (done, _), (following, _) in zip(ledger.appended, ledger.appended[1:], strict=False):
        assert ledger.events.index(("request", following)) < ledger.events.index(("appended", done)), ledger.events


def test_a_failed_append_stops_and_leaves_no_fetch_behind(tmp_path: Path) -> None:
    ledger = FakeLedger(fail_at=4)

    async def run() -> None:
        with pytest.raises(StorageError, match="disk full"):
            await _service(tmp_path, ledger).replicator.fetch_entries("VN", "http://peer", 0, 12, ROOT)
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert not pending, pending

    asyncio.run(run())
    assert ledger.appended == [(0, 3)] and ledger.size == 3


def test_a_peer_that_stops_serving_is_named_after_what_it_served(tmp_path: Path) -> None:
    ledger = FakeLedger()
    with pytest.raises(PeerError, match="answered 404 for entries 6-9"):
        asyncio.run(_service(tmp_path, ledger, missing=6).replicator.fetch_entries("VN", "http://peer", 0, 12, ROOT))
    assert ledger.appended == [(0, 3), (3, 3)]


def test_an_empty_answer_is_refused(tmp_path: Path) -> None:
    ledger = FakeLedger()
    svc = _service(tmp_path, ledger)

    async def empty(*args: Any, **kw: Any) -> tuple[int, bytes]:
        return 200, cbor.encode([])

    svc._request = empty
    with pytest.raises(DecodeError, match="sent no entries for 0-3"):
        asyncio.run(svc.replicator.fetch_entries("VN", "http://peer", 0, 12, ROOT))
    assert ledger.appended == []


def test_a_peer_whose_range_is_refused_is_passed_over_for_the_next(tmp_path: Path) -> None:
    ledger = FakeLedger(refuse_from="http://liar")
    svc = _service(tmp_path, ledger)
    asyncio.run(svc.replicator.fetch_from_any("VN", ["http://liar", "http://honest"], 0, 7, ROOT))
    assert ledger.size == 7 and ledger.appended == [(0, 3), (3, 3), (6, 1)]


def test_refused_by_every_peer_is_a_422_naming_each(tmp_path: Path) -> None:
    ledger = FakeLedger(refuse_from="http://")
    svc = _service(tmp_path, ledger)
    with pytest.raises(EntriesRefused, match="could not fetch entries 0-7") as e:
        asyncio.run(svc.replicator.fetch_from_any("VN", ["http://liar", "http://other"], 0, 7, ROOT))
    assert e.value.status == 422 and "http://liar:" in str(e.value) and "http://other:" in str(e.value)
    assert ledger.size == 0


def test_a_range_of_the_checkpoint_that_breaks_a_rule_is_asked_of_no_other_peer(tmp_path: Path) -> None:
    ledger = FakeLedger(breach_at=4)
    svc = _service(tmp_path, ledger)
    with pytest.raises(EntriesRefused, match="lead to the checkpoint") as e:
        asyncio.run(svc.replicator.fetch_from_any("VN", ["http://owner", "http://other"], 0, 7, ROOT))
    assert e.value.breach is not None and e.value.breach.size == 7
    assert ledger.size == 3 and not any(p.startswith("http://other") for p in ledger.asked_urls)
