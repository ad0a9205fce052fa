"""A node reads a peer's answer up to the largest a peer sends, never without bound (node/replicate.py).

The peer here is a real aiohttp server on loopback that streams a body without end, or announces one larger
than the cap; the node's own peer client (``NodeService._request``) asks it.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from httphelp import make_config

from ledger.checkpoint import Checkpoint
from ledger.errors import DecodeError
from ledger.memberlog import RuleBreach
from node import replicate
from node.metrics import node_metrics
from node.replicate import EntriesRefused, PeerError
from node.service import NodeService

CAP = 4 << 20


async def _endless(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    await resp.prepare(request)
    chunk = b" " * (1 << 20)
    while True:  # until the client goes away
        await resp.write(chunk)


async def _announced(request: web.Request) -> web.Response:
    return web.Response(body=b" " * (CAP + 1))


async def _small(request: web.Request) -> web.Response:
    return web.json_response({"versions": [1]})


def _ask(tmp_path: Path, path: str) -> tuple[Any, int]:
    async def main() -> tuple[Any, int]:
        app = web.Application()
        app.router.add_get("/endless", _endless)
        app.router.add_get("/announced", _announced)
        app.router.add_get("/small", _small)
        async with TestServer(app) as server:
            svc = NodeService(make_config(tmp_path), None, node_metrics(), lambda: 0)  # type: ignore[arg-type]
            svc.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20))
            try:
                started = asyncio.get_running_loop().time()
                try:
                    answer: Any = await svc._request("GET", str(server.make_url("")).rstrip("/"), path)
                except PeerError as e:
                    answer = e
                return answer, int(asyncio.get_running_loop().time() - started)
            finally:
                await svc.session.close()

    return asyncio.run(main())


@pytest.fixture(autouse=True)
def small_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replicate, "MAX_PEER_ANSWER", CAP)


def test_an_endless_answer_is_cut_at_the_cap(tmp_path: Path) -> None:
    answer, took = _ask(tmp_path, "/endless")
    assert isinstance(answer, PeerError) and f"exceeds {CAP} bytes" in str(answer), answer
    assert took < 10, "the answer was read until the timeout, not cut at the cap"


def test_an_answer_announced_larger_than_the_cap_is_not_read(tmp_path: Path) -> None:
    answer, _ = _ask(tmp_path, "/announced")
    assert isinstance(answer, PeerError) and f"the answer of {CAP + 1} bytes exceeds {CAP}" in str(answer), answer


def test_an_answer_within_the_cap_is_read_whole(tmp_path: Path) -> None:
    answer, _ = _ask(tmp_path, "/small")
    assert answer == (200, b'{"versions": [1]}'), answer


class _Host:
    """The ledger thread of a node whose witnesses answered lines that are no cosignatures."""

    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(1)
        self.given: list[list[str]] = []

    def add_cosignatures(self, member: str, size: int, lines: list[str]) -> bool:
        self.given.append(lines)
        raise DecodeError("not a cosignature line")


def test_a_late_unusable_cosignature_is_a_warning_not_a_lost_task_error(tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    host = _Host()
    svc = NodeService(make_config(tmp_path), host, node_metrics(), lambda: 0)  # type: ignore[arg-type]

    async def main() -> None:
        async def answer() -> list[str]:
            return ["— garbage"]
        task = asyncio.create_task(answer())
        task.add_done_callback(svc._late_cosignature(5))
        await task
        for _ in range(50):  # the callback's own task runs on the ledger thread
            await asyncio.sleep(0.01)
            if host.given:
                break
        await asyncio.sleep(0.05)

    with caplog.at_level(logging.WARNING):
        asyncio.run(main())
    assert host.given == [["— garbage"]]
    assert any("unusable cosignature" in r.getMessage() for r in caplog.records), caplog.text
    assert "never retrieved" not in caplog.text


class _Logs:
    """The parts of a node's ledger a sync round reads."""

    def __init__(self) -> None:
        self.logs = {"KH": None, "LA": None, "TH": None, "VN": None}
        self.final: dict[str, object] = {}
        self.own = type("Own", (), {"size": 0})()
        self.chain = type("Chain", (), {"roots": [None]})()


def test_one_log_that_fails_from_a_peer_does_not_keep_the_others_from_syncing(tmp_path: Path,
                                                                             caplog: pytest.LogCaptureFixture
                                                                             ) -> None:
    svc = NodeService(make_config(tmp_path), _Logs(), node_metrics(), lambda: 0)  # type: ignore[arg-type]
    own = svc.config.member
    synced: list[str] = []

    async def request(method: str, url: str, path: str, *args: Any, **kw: Any) -> tuple[int, bytes]:
        return 200, b'{"versions": [1]}'

    async def sync_log(peer: str, url: str, member: str) -> None:
        synced.append(member)
        if member == "KH":
            raise DecodeError("a checkpoint over an entry that breaks a rule")
        if member == "LA":
            raise KeyError("a bug")

    svc._request = request  # type: ignore[method-assign]
    svc._sync_log = sync_log  # type: ignore[method-assign]
    svc.peers = lambda: {"TH": "http://th"}  # type: ignore[method-assign]
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            asyncio.run(svc.sync_once())
    others = sorted(m for m in ("KH", "LA", "TH", "VN") if m != own)
    assert synced == others * 3, synced  # every log, every round, whatever the others did
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "breaks a rule" in warnings[0], warnings  # once, not every round
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) <= 1  # the bug's traceback, once


class _Evidence:
    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(1)
        self.kept: list[tuple[str, str, bytes]] = []
        self.storage = self

    def put_evidence(self, log: str, kind: str, data: bytes, reason: str, received: int, same: bytes) -> bool:
        self.kept.append((log, kind, data))
        return True


def test_a_checkpoint_found_to_break_a_rule_is_kept_once_and_not_fetched_again(tmp_path: Path) -> None:
    host = _Evidence()
    svc = NodeService(make_config(tmp_path), host, node_metrics(), lambda: 0)  # type: ignore[arg-type]
    fetched = []

    async def fetch_from_any(member: str, urls: list[str], start: int, end: int, root: bytes) -> None:
        fetched.append((member, start, end))
        raise EntriesRefused("entry 5 breaks 6.3.6", breach=RuleBreach("entry 5 breaks 6.3.6", end))

    svc.replicator.fetch_from_any = fetch_from_any  # type: ignore[method-assign]
    cp = Checkpoint("mekong-trust-ledger/gms/VN", 7, b"\x01" * 32, ())
    for _ in range(3):
        with pytest.raises(EntriesRefused, match="kept as evidence"):
            asyncio.run(svc._fetch_for("VN", b"note\n\n-- sig\n", ["http://vn"], 4, cp))
    assert fetched == [("VN", 4, 7)] and host.kept == [("VN", "rule-breach", b"note\n\n-- sig\n")]
