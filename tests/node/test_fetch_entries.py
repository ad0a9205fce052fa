"""A node's catch-up (node/service.py fetch_entries, specs/api.md A.9): the next range is fetched while the
current one is appended, and nothing is appended out of order or twice.

The peer and the ledger are fakes here (the integration tests in tests/integration/test_catchup.py catch
real nodes up over real HTTP); what is tested is the order of requests and appends.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from httphelp import make_config

from ledger import cbor
from ledger.errors import DecodeError, StorageError
from node import service
from node.metrics import node_metrics
from node.service import NodeService, PeerError


class FakeLedger:
    """The ledger thread: appends in order, slowly, and records what it was given and what was asked meanwhile."""

    def __init__(self, size: int = 0, fail_at: int | None = None) -> None:
        self.size, self.fail_at = size, fail_at
        self.executor = ThreadPoolExecutor(1)
        self.appended: list[tuple[int, int]] = []
        self.requested: list[int] = []
        self.events: list[tuple[str, int]] = []  # ("request", start) and ("appended", start), as they happen
        self.lock = threading.Lock()

    def event(self, kind: str, at: int) -> None:
        with self.lock:
            self.events.append((kind, at))

    def append_replicated(self, member: str, raws: list[bytes], start: int) -> int:
        assert start == self.size, f"append at {start}, log at {self.size}"
        if self.fail_at is not None and start <= self.fail_at < start + len(raws):
            raise StorageError("disk full")
        threading.Event().wait(0.05)  # verification takes a while: the next fetch goes out meanwhile
        self.appended.append((start, len(raws)))
        self.event("appended", start)
        self.size = start + len(raws)
        return self.size


def _service(tmp_path: Path, ledger: FakeLedger, short: set[int] = frozenset(), missing: int | None = None) -> Any:
    svc = NodeService(make_config(tmp_path), ledger, node_metrics(), lambda: 0)  # type: ignore[arg-type]

    async def request(method: str, url: str, path: str, *args: Any, **kw: Any) -> tuple[int, bytes]:
        query = dict(p.split("=") for p in path.split("?")[1].split("&"))
        lo, hi = int(query["start"]), int(query["end"])
        ledger.requested.append(lo)
        ledger.event("request", lo)
        if missing is not None and lo >= missing:
            return 404, b"gone"
        if lo in short:  # a peer may send fewer than asked (A.9)
            hi = lo + 1
        return 200, cbor.encode([b"entry %d" % i for i in range(lo, hi)])

    svc._request = request
    return svc


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "FETCH_BATCH", 3)


def test_the_next_range_is_fetched_while_one_is_appended(tmp_path: Path) -> None:
    ledger = FakeLedger(size=2)
    asyncio.run(_service(tmp_path, ledger, short={5}).fetch_entries("VN", "http://peer", 2, 13))
    assert ledger.size == 13
    assert ledger.appended == [(2, 3), (5, 1), (6, 3), (9, 3), (12, 1)]  # in order, each entry once
    assert ledger.requested == [2, 5, 6, 9, 12]
    # each range was asked for before the range before it was appended: the transfer overlaps the work
    for (done, _), (following, _) in zip(ledger.appended, ledger.appended[1:], strict=False):
        assert ledger.events.index(("request", following)) < ledger.events.index(("appended", done)), ledger.events


def test_a_failed_append_stops_and_leaves_no_fetch_behind(tmp_path: Path) -> None:
    ledger = FakeLedger(fail_at=4)

    async def run() -> None:
        with pytest.raises(StorageError, match="disk full"):
            await _service(tmp_path, ledger).fetch_entries("VN", "http://peer", 0, 12)
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert not pending, pending

    asyncio.run(run())
    assert ledger.appended == [(0, 3)] and ledger.size == 3


def test_a_peer_that_stops_serving_is_named_after_what_it_served(tmp_path: Path) -> None:
    ledger = FakeLedger()
    with pytest.raises(PeerError, match="answered 404 for entries 6-9"):
        asyncio.run(_service(tmp_path, ledger, missing=6).fetch_entries("VN", "http://peer", 0, 12))
    assert ledger.appended == [(0, 3), (3, 3)]


def test_an_empty_answer_is_refused(tmp_path: Path) -> None:
    ledger = FakeLedger()
    svc = _service(tmp_path, ledger)

    async def empty(*args: Any, **kw: Any) -> tuple[int, bytes]:
        return 200, cbor.encode([])

    svc._request = empty
    with pytest.raises(DecodeError, match="sent no entries for 0-3"):
        asyncio.run(svc.fetch_entries("VN", "http://peer", 0, 12))
    assert ledger.appended == []
