"""The node's aiohttp application: the one place that assembles it.

:func:`create_app` builds the whole :class:`aiohttp.web.Application` of a member node from a
:class:`~node.config.NodeConfig` (house style rule 9), as the server, the tests and the devnet use it:
typed ``web.AppKey`` values (:mod:`node.appkeys`), resources opened and closed in ``cleanup_ctx`` (the
SQLite storage, the node key, then the ledger host and its service), the middlewares in their order
(metrics, errors, body size, concurrency), and every route of specs/api.md (:func:`node.routes.add_routes`).

No module-level state: two applications in one process share nothing.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Mapping
from functools import partial
from pathlib import Path

import nacl.signing
from aiohttp import web

from ledger.errors import VerificationError
from ledger.roots import SignedRoot, root_hash
from ledger.storage import Storage
from node import logfilter
from node.appkeys import (
    CLOCK_KEY,
    CONCURRENCY_KEY,
    CONFIG_KEY,
    METRICS_KEY,
    PROCESSES_KEY,
    RATE_LIMITER_KEY,
    REPLAY_KEY,
    SERVICE_KEY,
    SIGNING_KEY,
    STORAGE_KEY,
    Clock,
)
from node.config import NodeConfig
from node.explorer import add_explorer
from node.host import LedgerHost
from node.keystore import load_signing_key, passphrase_from_env
from node.limits import ConcurrencyLimiter, TokenBucketLimiter, body_size_middleware, concurrency_middleware
from node.metrics import node_metrics
from node.middleware import error_middleware, metrics_middleware
from node.routes import add_routes
from node.service import NodeService, unix_now

__all__ = ["create_app"]


def create_app(config: NodeConfig, *, storage: Storage | None = None,
               signing_key: nacl.signing.SigningKey | None = None, clock: Clock = unix_now,
               environ: Mapping[str, str] | None = None, replay_first: bool = False,
               signature_processes: bool = False) -> web.Application:
    """Build the node application.

    Args:
        config: the validated node configuration.
        storage: an open storage to use instead of opening
            ``config.database_path``; the caller keeps ownership and closes it.
        signing_key: the node key to use instead of opening
            ``config.node_key_file`` with the passphrase in ``config.passphrase_env``.
        clock: returns the current Unix time in seconds.
        environ: where to read the passphrase variable (default ``os.environ``).
        replay_first: replay the whole database before serving (spec 7.5); by default the node starts
            with the checks of spec 7.5.3, whose cost does not grow with the ledger.
        signature_processes: check signatures on worker processes (``LedgerHost``); a node process does.

    Returns:
        The application; resources open when it starts (``cleanup_ctx``), so
        a wrong passphrase or an unreadable database fails startup with a
        :class:`~ledger.errors.MekongError` naming the problem.
    """
    limits = config.limits
    metrics = node_metrics()
    concurrency = ConcurrencyLimiter(limits.max_concurrent_requests, limits.reserved_peer_requests,
                                     limits.max_requests_per_client)
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
    app[REPLAY_KEY] = replay_first
    app[PROCESSES_KEY] = signature_processes
    app.cleanup_ctx.append(_storage_ctx(storage))
    app.cleanup_ctx.append(_signing_key_ctx(signing_key, environ))
    app.cleanup_ctx.append(_service_ctx)
    metrics.registry.add_collector(lambda: _collect(app))
    add_routes(app.router)
    add_explorer(app)
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


async def _service_ctx(app: web.Application) -> AsyncIterator[None]:
    # Opened after the storage and the node key: the pinned genesis, the ledger host (which checks the
    # database, spec 7.5.3, or replays it when asked) and the service's loops; closed first.
    config = app[CONFIG_KEY]
    genesis_bytes = await asyncio.to_thread(Path(config.genesis_file).read_bytes)
    genesis = SignedRoot.from_cbor(genesis_bytes)
    if root_hash(genesis.payload) != config.genesis_hash:
        raise VerificationError(f"genesis file {config.genesis_file} does not match the pinned genesis hash")
    host = await asyncio.to_thread(partial(LedgerHost, full_check=app[REPLAY_KEY],
                                           signature_processes=app[PROCESSES_KEY]), app[STORAGE_KEY], genesis,
                                   config.genesis_hash, config.member, config.network, app[SIGNING_KEY])
    service = NodeService(config, host, app[METRICS_KEY], app[CLOCK_KEY])
    app[SERVICE_KEY] = service
    await service.start()
    try:
        yield
    finally:
        await service.stop()
        await asyncio.get_running_loop().run_in_executor(host.executor, host.close)
        host.executor.shutdown(wait=True)


def _collect(app: web.Application) -> None:
    metrics = app[METRICS_KEY]
    for kind, seen in logfilter.totals().items():  # the process's log filter counts; the counter catches up
        behind = seen - metrics.client_errors.value(kind=kind)
        if behind > 0:
            metrics.client_errors.inc(behind, kind=kind)
    storage = app.get(STORAGE_KEY)
    if storage is None:
        return
    for log in storage.logs():
        metrics.log_size.set(storage.size(log), log=log)
