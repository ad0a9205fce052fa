"""A node reads a peer's answer up to the largest a peer sends, never without bound (node/service.py).

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

from ledger.errors import DecodeError
from node import service
from node.metrics import node_metrics
from node.replicate import PeerError
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
    monkeypatch.setattr(service, "MAX_PEER_ANSWER", CAP)


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
