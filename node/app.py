"""The node's aiohttp application: wiring, resources and the handlers that exist so far.

:func:`create_app` builds a :class:`aiohttp.web.Application` from a
:class:`~node.config.NodeConfig` (house style rule 9): typed ``web.AppKey``s
for everything handlers share, resources opened and closed in
``cleanup_ctx`` (the SQLite storage, the node key), the middlewares in their
order (metrics, errors, body size, concurrency), and the routes of
specs/api.md: ``/healthz``, ``/metrics`` and the C2SP tiles of every log the
node stores. Replication, witnessing, submission and registry queries are
added on top by their own modules, using the keys defined here.

No module-level state: two applications in one process share nothing.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping

import nacl.signing
from aiohttp import web

from ledger.storage import Storage
from node.config import NodeConfig
from node.keystore import load_signing_key, passphrase_from_env
from node.limits import ConcurrencyLimiter, TokenBucketLimiter, body_size_middleware, concurrency_middleware
from node.metrics import CONTENT_TYPE, NodeMetrics, node_metrics
from node.middleware import NotFoundError, error_middleware, metrics_middleware
from node.tiles import TILE_ROUTE, StorageTileSource, TileSource, tile_handler

__all__ = [
    "CLOCK_KEY", "CONCURRENCY_KEY", "CONFIG_KEY", "METRICS_KEY", "RATE_LIMITER_KEY", "SIGNING_KEY", "STORAGE_KEY",
    "create_app", "run",
]  # fmt: skip

Clock = Callable[[], int]

CONFIG_KEY = web.AppKey("mekong.config", NodeConfig)
METRICS_KEY = web.AppKey("mekong.metrics", NodeMetrics)
STORAGE_KEY = web.AppKey("mekong.storage", Storage)
SIGNING_KEY = web.AppKey("mekong.signing_key", nacl.signing.SigningKey)
RATE_LIMITER_KEY = web.AppKey("mekong.rate_limiter", TokenBucketLimiter)
CONCURRENCY_KEY = web.AppKey("mekong.concurrency", ConcurrencyLimiter)
#: Unix seconds, as every ledger function takes ``now``; tests pass a fixed clock.
CLOCK_KEY: web.AppKey[Clock] = web.AppKey("mekong.clock")

_MEMBER_RE = re.compile(r"[A-Z]{2}")


def _unix_now() -> int:
    return int(time.time())


def create_app(config: NodeConfig, *, storage: Storage | None = None,
               signing_key: nacl.signing.SigningKey | None = None, clock: Clock = _unix_now,
               environ: Mapping[str, str] | None = None) -> web.Application:
    """Build the node application.

    Args:
        config: the validated node configuration.
        storage: an open storage to use instead of opening
            ``config.database_path``; the caller keeps ownership and closes it.
        signing_key: the node key to use instead of opening
            ``config.node_key_file`` with the passphrase in ``config.passphrase_env``.
        clock: returns the current Unix time in seconds.
        environ: where to read the passphrase variable (default ``os.environ``).

    Returns:
        The application; resources open when it starts (``cleanup_ctx``), so
        a wrong passphrase or an unreadable database fails startup with a
        :class:`~ledger.errors.MekongError` naming the problem.
    """
    limits = config.limits
    metrics = node_metrics()
    concurrency = ConcurrencyLimiter(limits.max_concurrent_requests)
    app = web.Application(
        client_max_size=limits.max_request_bytes,
        middlewares=[
            metrics_middleware(metrics),
            error_middleware(metrics),
            body_size_middleware(limits.max_request_bytes),
            concurrency_middleware(concurrency),
        ],
    )
    app[CONFIG_KEY] = config
    app[METRICS_KEY] = metrics
    app[CONCURRENCY_KEY] = concurrency
    app[RATE_LIMITER_KEY] = TokenBucketLimiter(limits.submitter_entries_per_second, limits.submitter_burst,
                                               max_keys=limits.max_tracked_submitters)
    app[CLOCK_KEY] = clock
    app.cleanup_ctx.append(_storage_ctx(storage))
    app.cleanup_ctx.append(_signing_key_ctx(signing_key, environ))
    metrics.registry.add_collector(lambda: _collect(app))

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get(TILE_ROUTE, tile_handler(_resolve_log))
    return app


def _storage_ctx(given: Storage | None) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if given is not None:
            app[STORAGE_KEY] = given
            yield
            return
        config = app[CONFIG_KEY]
        await asyncio.to_thread(_make_data_dir, config)
        storage = await asyncio.to_thread(Storage.open, config.database_path)
        app[STORAGE_KEY] = storage
        try:
            yield
        finally:
            await asyncio.to_thread(storage.close)

    return ctx


def _make_data_dir(config: NodeConfig) -> None:
    os.makedirs(config.data_dir, mode=0o700, exist_ok=True)


def _signing_key_ctx(given: nacl.signing.SigningKey | None,
                     environ: Mapping[str, str] | None) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if given is not None:
            app[SIGNING_KEY] = given
        else:
            config = app[CONFIG_KEY]
            passphrase = passphrase_from_env(config.passphrase_env, None if environ is None else dict(environ))
            # Argon2id takes about a second: keep the loop free while it runs.
            app[SIGNING_KEY] = await asyncio.to_thread(load_signing_key, config.node_key_file, passphrase)
        yield

    return ctx


def _collect(app: web.Application) -> None:
    storage = app.get(STORAGE_KEY)
    if storage is None:
        return
    metrics = app[METRICS_KEY]
    for log in storage.logs():
        metrics.log_size.set(storage.size(log), log=log)


# ----------------------------------------------------------------------------- handlers (specs/api.md)


async def healthz(request: web.Request) -> web.Response:
    """``GET /healthz``: 200 with the member, network and own log size while storage answers (spec A.4)."""
    config = request.app[CONFIG_KEY]
    size = await asyncio.to_thread(request.app[STORAGE_KEY].size, config.member)
    return web.json_response({"status": "ok", "member": config.member, "network": config.network, "log_size": size},
                             headers={"Cache-Control": "no-store"})


async def metrics_handler(request: web.Request) -> web.Response:
    """``GET /metrics``: the Prometheus text format (spec A.5)."""
    text = await asyncio.to_thread(request.app[METRICS_KEY].registry.render)
    return web.Response(body=text.encode("utf-8"), headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})


async def _resolve_log(request: web.Request) -> tuple[int, TileSource]:
    member = request.match_info["member"]
    storage = request.app[STORAGE_KEY]
    if not _MEMBER_RE.fullmatch(member) or member not in await asyncio.to_thread(storage.logs):
        raise NotFoundError(f"this node serves no log {member[:16]!r}")
    return await asyncio.to_thread(storage.size, member), StorageTileSource(storage, member)


def run(config: NodeConfig) -> None:  # pragma: no cover - exercised by the integration tests
    """Serve the node on ``config.listen_host:listen_port`` until interrupted."""
    web.run_app(create_app(config), host=config.listen_host, port=config.listen_port, access_log=None)
