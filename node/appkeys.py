"""The typed application keys every part of the node shares (house style rule 9): one place, no import circles.

:func:`node.app.create_app` fills them; handlers (:mod:`node.routes`) and the service read them.
"""

from __future__ import annotations

from collections.abc import Callable

import nacl.signing
from aiohttp import web

from ledger.storage import Storage
from node.config import NodeConfig
from node.limits import ConcurrencyLimiter, TokenBucketLimiter
from node.metrics import NodeMetrics
from node.service import NodeService

__all__ = [
    "CLOCK_KEY",
    "CONCURRENCY_KEY",
    "CONFIG_KEY",
    "METRICS_KEY",
    "PROCESSES_KEY",
    "RATE_LIMITER_KEY",
    "REPLAY_KEY",
    "SERVICE_KEY",
    "SIGNING_KEY",
    "STORAGE_KEY",
    "Clock",
]  # fmt: skip

Clock = Callable[[], int]

CONFIG_KEY = web.AppKey("mekong.config", NodeConfig)
METRICS_KEY = web.AppKey("mekong.metrics", NodeMetrics)
STORAGE_KEY = web.AppKey("mekong.storage", Storage)
SIGNING_KEY = web.AppKey("mekong.signing_key", nacl.signing.SigningKey)
RATE_LIMITER_KEY = web.AppKey("mekong.rate_limiter", TokenBucketLimiter)
CONCURRENCY_KEY = web.AppKey("mekong.concurrency", ConcurrencyLimiter)
SERVICE_KEY = web.AppKey("mekong.service", NodeService)
#: Unix seconds, as every ledger function takes ``now``; tests pass a fixed clock.
CLOCK_KEY: web.AppKey[Clock] = web.AppKey("mekong.clock")
#: Whether the node replays its whole database before serving (mekong node start --replay, spec 7.5).
REPLAY_KEY: web.AppKey[bool] = web.AppKey("mekong.replay")
#: Whether signatures are checked on worker processes (a node process) rather than threads (spec 7.3 step 5).
PROCESSES_KEY: web.AppKey[bool] = web.AppKey("mekong.signature_processes")
