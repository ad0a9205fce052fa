"""The node application: wiring, resources, error mapping, limits (specs/api.md A.1, A.3-A.5)."""

from __future__ import annotations

import asyncio
import json
import re
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from httphelp import make_config, node_key, run_with_client
from prometheus_client.parser import text_string_to_metric_families

from ledger.errors import (
    AuthorizationError,
    ConflictError,
    DecodeError,
    EquivocationError,
    MekongError,
    StorageError,
    TamperError,
    VerificationError,
)
from ledger.storage import Storage
from node import keystore
from node.app import create_app
from node.appkeys import (
    CLOCK_KEY,
    CONCURRENCY_KEY,
    CONFIG_KEY,
    METRICS_KEY,
    RATE_LIMITER_KEY,
    SIGNING_KEY,
    STORAGE_KEY,
)
from node.keystore import KeyFileError
from node.limits import SUBMITTER, read_json, submitter_of
from node.middleware import NotFoundError, OverloadedError, RateLimitedError, RequestTooLargeError

Scenario = Callable[[TestClient[Any, Any]], Awaitable[Any]]


def _app(tmp_path: Path, **limits: int) -> web.Application:
    return create_app(make_config(tmp_path, **limits), signing_key=node_key(), clock=lambda: 1_764_370_000)


def _raise(exc: BaseException) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        raise exc
    return handler


# ----------------------------------------------------------------------------- resources


def test_healthz_and_resources(tmp_path: Path) -> None:
    app = _app(tmp_path)
    seen: dict[str, Any] = {}

    async def scenario(client: TestClient[Any, Any]) -> None:
        resp = await client.get("/healthz")
        assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
        assert await resp.json() == {"status": "ok", "member": "VN", "network": "gms-test", "log_size": 0}
        seen["storage"] = app[STORAGE_KEY]
        assert app[CONFIG_KEY].member == "VN" and app[CLOCK_KEY]() == 1_764_370_000
        assert bytes(app[SIGNING_KEY].verify_key) == bytes(node_key().verify_key)
        assert app[CONCURRENCY_KEY].limit == app[CONFIG_KEY].limits.max_concurrent_requests
        assert app[RATE_LIMITER_KEY].burst == app[CONFIG_KEY].limits.submitter_burst

    run_with_client(app, scenario)
    data_dir = tmp_path / "data"
    assert (data_dir / "ledger.sqlite3").exists()
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    with pytest.raises(StorageError):  # closed by cleanup_ctx
        seen["storage"].size("VN")


def test_node_key_from_key_file_and_env(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    pub = keystore.write_key_file(cfg.node_key_file, node_key(), b"pw", "VN node",
                                  opslimit=keystore.OPSLIMIT_MIN, memlimit=keystore.MEMLIMIT_MIN)
    storage = Storage.open(":memory:")
    app = create_app(cfg, storage=storage, environ={cfg.passphrase_env: "pw"})

    async def scenario(client: TestClient[Any, Any]) -> bytes:
        return bytes(app[SIGNING_KEY].verify_key)

    assert run_with_client(app, scenario) == pub
    assert storage.size("VN") == 0  # a given storage stays open: the caller owns it
    storage.close()

    for environ, match in (({cfg.passphrase_env: "wrong"}, "wrong passphrase"), ({}, "holds no passphrase")):
        bad = create_app(cfg, storage=Storage.open(":memory:"), environ=environ)
        with pytest.raises(KeyFileError, match=match):
            run_with_client(bad, scenario)


def test_unopenable_storage_fails_startup(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("a file where the data directory should be")
    with pytest.raises((OSError, StorageError)):
        run_with_client(_app(tmp_path), lambda c: asyncio.sleep(0))


# ----------------------------------------------------------------------------- error mapping

ERRORS = [
    ("decode", DecodeError("bad CBOR at byte 3"), 400, "bad_request", "bad CBOR at byte 3"),
    ("verification", VerificationError("signature does not verify"), 422, "verification_failed", "signature"),
    ("authorization", AuthorizationError("key not allowed"), 403, "not_authorized", "key not allowed"),
    ("conflict", ConflictError("two roots", evidence=(1, 2)), 409, "conflict", "two roots"),
    ("equivocation", EquivocationError("two v2 roots"), 409, "equivocation", "two v2 roots"),
    ("storage", StorageError("sqlite: /var/lib/secret.db locked"), 500, "storage_error", "storage failed"),
    ("tamper", TamperError("hash differs", "log VN entry 3"), 500, "storage_error", "storage failed"),
    ("not-found", NotFoundError("no such issuer"), 404, "not_found", "no such issuer"),
    ("too-large", RequestTooLargeError("batch of 5000"), 413, "request_too_large", "batch of 5000"),
    ("rate", RateLimitedError("slow down", 2.5), 429, "rate_limited", "slow down"),
    ("overloaded", OverloadedError("busy"), 503, "overloaded", "busy"),
    ("mekong-root", MekongError("internal detail /etc/x"), 500, "internal_error", "internal error"),
    ("key-error", KeyError("secret-key-material"), 500, "internal_error", "internal error"),
    ("runtime", RuntimeError("boom at 0xdeadbeef"), 500, "internal_error", "internal error"),
    ("http-400", web.HTTPBadRequest(), 400, "bad_request", "Bad Request"),
    ("http-503", web.HTTPServiceUnavailable(), 503, "internal_error", "Service Unavailable"),
]


def test_error_middleware_maps_every_kind(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = _app(tmp_path)
    for name, exc, *_ in ERRORS:
        app.router.add_get(f"/test/{name}", _raise(exc))
    app.router.add_get("/test/redirect", _raise(web.HTTPFound("/healthz")))

    async def scenario(client: TestClient[Any, Any]) -> None:
        for name, _, status, kind, message in ERRORS:
            resp = await client.get(f"/test/{name}")
            assert resp.status == status, name
            assert resp.content_type == "application/json"
            body = await resp.json()
            assert set(body) == {"error", "message"} and body["error"] == kind, name
            assert message in body["message"], (name, body)
            for secret in ("/var/lib", "/etc/x", "secret-key", "0xdeadbeef"):
                assert secret not in body["message"]
        resp = await client.get("/test/rate")
        assert resp.headers["Retry-After"] == "3"
        resp = await client.get("/test/overloaded")
        assert resp.headers["Retry-After"] == "1"
        resp = await client.get("/test/redirect", allow_redirects=False)
        assert resp.status == 302
        resp = await client.get("/no/such/route")
        assert resp.status == 404 and (await resp.json())["error"] == "not_found"

    run_with_client(app, scenario)
    assert "boom at 0xdeadbeef" in caplog.text  # the details go to the log instead


def test_long_messages_are_cut(tmp_path: Path) -> None:
    app = _app(tmp_path)
    app.router.add_get("/long", _raise(DecodeError("x" * 10_000)))

    async def scenario(client: TestClient[Any, Any]) -> None:
        body = await (await client.get("/long")).json()
        assert len(body["message"]) == 1000 and body["message"].endswith("...")

    run_with_client(app, scenario)


# ----------------------------------------------------------------------------- limits


async def _echo_json(request: web.Request) -> web.Response:
    return web.json_response({"got": await read_json(request, 16384)})


async def _echo_read(request: web.Request) -> web.Response:
    return web.json_response({"bytes": len(await request.read())})


def test_request_size_limits(tmp_path: Path) -> None:
    app = _app(tmp_path, max_request_bytes=20_000, max_entry_bytes=1024)
    app.router.add_post("/json", _echo_json)
    app.router.add_post("/read", _echo_read)

    async def chunked(size: int) -> AsyncIterator[bytes]:
        for _ in range(size // 1024):
            yield b"x" * 1024

    async def scenario(client: TestClient[Any, Any]) -> None:
        resp = await client.post("/read", data=b"x" * 20_000)
        assert resp.status == 200 and (await resp.json()) == {"bytes": 20_000}
        for path in ("/read", "/json", "/healthz", "/no/route"):
            resp = await client.post(path, data=b"x" * 100_000)  # Content-Length checked before reading
            assert resp.status == 413, path
            assert (await resp.json())["error"] == "request_too_large"
        resp = await client.post("/read", data=chunked(64 * 1024))  # no Content-Length: client_max_size
        assert resp.status == 413 and (await resp.json())["error"] == "request_too_large"
        resp = await client.post("/json", data=chunked(17 * 1024))  # per-handler limit of 16384
        assert resp.status == 413 and "16384" in (await resp.json())["message"]
        resp = await client.get("/healthz")
        assert resp.status == 200  # the node is still fine

    run_with_client(app, scenario)


BAD_JSON = {
    "truncated": b'{"a": ', "not-json": b"hello", "bad-utf8": b'"\xff\xfe"', "empty": b"",
    "deep": b"[" * 5000 + b"]" * 5000, "huge-int": b"1" * 5000, "nul": b"\x00",
}


def test_bad_json_is_400(tmp_path: Path) -> None:
    app = _app(tmp_path)
    app.router.add_post("/json", _echo_json)

    async def scenario(client: TestClient[Any, Any]) -> None:
        for name, data in BAD_JSON.items():
            resp = await client.post("/json", data=data, headers={"Content-Type": "application/json"})
            assert resp.status == 400, name
            assert (await resp.json())["error"] == "bad_request", name
        resp = await client.post("/json", data=json.dumps({"ok": [1, 2]}))
        assert await resp.json() == {"got": {"ok": [1, 2]}}

    run_with_client(app, scenario)


def test_concurrency_limit_gives_503_but_not_for_monitoring(tmp_path: Path) -> None:
    app = _app(tmp_path, max_concurrent_requests=2, reserved_peer_requests=0)
    gate = asyncio.Event()
    entered = asyncio.Queue[None]()

    async def slow(request: web.Request) -> web.Response:
        entered.put_nowait(None)
        await gate.wait()
        return web.json_response({})

    app.router.add_get("/slow", slow)

    async def scenario(client: TestClient[Any, Any]) -> None:
        gate.clear()
        held = [asyncio.create_task(client.get("/slow")) for _ in range(2)]
        for _ in range(2):
            await asyncio.wait_for(entered.get(), 5)
        resp = await client.get("/slow")
        assert resp.status == 503 and resp.headers["Retry-After"] == "1"
        assert (await resp.json())["error"] == "overloaded"
        health = await client.get("/healthz")  # answered, and says the node is saturated (Trust II item 4)
        assert health.status == 503 and (await health.json())["status"] == "degraded"
        assert (await client.get("/metrics")).status == 200
        gate.set()
        assert [r.status for r in await asyncio.gather(*held)] == [200, 200]
        assert app[CONCURRENCY_KEY].active == 0
        assert (await client.get("/slow")).status == 200

    run_with_client(app, scenario)


def test_rate_limiter_in_a_handler(tmp_path: Path) -> None:
    app = _app(tmp_path, submitter_entries_per_second=1, submitter_burst=3, max_batch_entries=3)

    async def submit(request: web.Request) -> web.Response:
        if "id" in request.query:
            request[SUBMITTER] = request.query["id"]
        request.app[RATE_LIMITER_KEY].take(submitter_of(request), int(request.query.get("n", "1")))
        return web.json_response({"who": submitter_of(request)})

    app.router.add_post("/submit", submit)

    async def scenario(client: TestClient[Any, Any]) -> None:
        resp = await client.post("/submit?n=3")
        assert (await resp.json())["who"] == "addr:127.0.0.1"
        resp = await client.post("/submit")
        assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
        assert (await resp.json())["error"] == "rate_limited"
        assert (await client.post("/submit?id=KH&n=2")).status == 200  # another submitter, its own bucket
        resp = await client.post("/submit?id=TH&n=4")
        assert resp.status == 429 and "Retry-After" not in resp.headers
        assert "burst" in (await resp.json())["message"]

    run_with_client(app, scenario)


# ----------------------------------------------------------------------------- metrics


def test_metrics_endpoint(tmp_path: Path) -> None:
    storage = Storage.open(":memory:")
    app = create_app(make_config(tmp_path), storage=storage, signing_key=node_key())
    app.router.add_get("/items/{id}", _raise(VerificationError("bad")))

    async def scenario(client: TestClient[Any, Any]) -> str:
        await client.get("/healthz")
        for i in range(3):
            await client.get(f"/items/{i}")
        await client.get("/nowhere/1")
        metrics = app[METRICS_KEY]
        metrics.final_size.set(12, log="TH")
        metrics.witness_lag_entries.set(3, log="VN", witness="TH")
        metrics.submissions_rejected.inc(reason="bad_signature")
        resp = await client.get("/metrics")
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        return await resp.text()

    text = run_with_client(app, scenario)
    storage.close()
    samples = {(m.name, tuple(sorted(m.labels.items()))): m.value
               for family in text_string_to_metric_families(text) for m in family.samples}

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("mekong_http_requests_total", route="/healthz", method="GET", status="200") == 1
    assert value("mekong_http_requests_total", route="/items/{id}", method="GET", status="422") == 3
    assert value("mekong_http_requests_total", route="unmatched", method="GET", status="404") == 1
    assert value("mekong_http_errors_total", kind="verification_failed") == 3
    assert value("mekong_http_request_duration_seconds_count", route="/items/{id}", method="GET") == 3
    assert value("mekong_http_request_duration_seconds_bucket", route="/items/{id}", method="GET", le="+Inf") == 3
    assert value("mekong_log_final_size_entries", log="TH") == 12
    assert value("mekong_witness_lag_entries", log="VN", witness="TH") == 3
    assert value("mekong_submissions_rejected_total", reason="bad_signature") == 1
    assert "# TYPE mekong_http_requests_total counter" in text
    assert "/items/0" not in text and "/nowhere" not in text  # route templates only


def test_garbage_on_the_wire_does_not_hurt_the_node(tmp_path: Path) -> None:
    app = _app(tmp_path)

    async def raw(client: TestClient[Any, Any], data: bytes) -> bytes:
        reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
        writer.write(data)
        await writer.drain()
        try:
            return await asyncio.wait_for(reader.read(4096), 5)
        finally:
            writer.close()

    async def scenario(client: TestClient[Any, Any]) -> None:
        for data in (b"\x00\x01\x02 garbage\r\n\r\n", b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\n\r\n",
                     b"GET /healthz HTTP/1.1\r\nHost: x\r\nX: " + b"y" * 100_000 + b"\r\n\r\n",
                     b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
                     b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"):
            answer = await raw(client, data)
            assert answer == b"" or re.match(rb"HTTP/1\.[01] 4\d\d ", answer), answer[:80]
        resp = await client.get("/healthz")
        assert resp.status == 200

    run_with_client(app, scenario)
