"""Request limits: body size, per-submitter rate, and concurrency (specs/api.md section A.3).

Three independent guards, each refusing with a status and a body that says
why, never by dropping the connection:

- body size: ``client_max_size`` on the application plus an early check of
  ``Content-Length`` (:func:`body_size_middleware`) and :func:`read_body` /
  :func:`read_json` for handlers (413, or 400 for bad JSON);
- per-submitter rate: :class:`TokenBucketLimiter`, keyed by
  :func:`submitter_of` (the authenticated member or key id a handler stored
  on the request, else the client address) (429 with ``Retry-After``);
- concurrency: :class:`ConcurrencyLimiter` and its middleware (503 with
  ``Retry-After``) when the node already handles as many requests as allowed.

The numbers come from :class:`node.config.Limits`; nothing here is global.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ledger.errors import DecodeError
from node.middleware import (
    OverloadedError,
    RateLimitedError,
    RequestTimeoutError,
    RequestTooLargeError,
)

__all__ = [
    "SUBMITTER", "ConcurrencyLimiter", "TokenBucketLimiter", "body_size_middleware", "concurrency_middleware",
    "read_body", "read_json", "submitter_of",
]  # fmt: skip

#: Request key under which authentication code stores who is submitting
#: (a member id or a hex key id), for :func:`submitter_of`.
SUBMITTER = web.RequestKey("mekong.submitter", str)


def submitter_of(request: web.Request) -> str:
    """The rate-limit key of a request: the authenticated submitter, else ``addr:<client address>``."""
    who = request.get(SUBMITTER)
    if who:
        return f"id:{who}"
    return f"addr:{request.remote or 'unknown'}"


class TokenBucketLimiter:
    """Per-key token buckets: ``rate`` tokens a second, at most ``burst`` saved up.

    One token is one entry. Buckets of keys not seen for a while are dropped
    once more than ``max_keys`` are tracked (least recently used first); a
    dropped key starts again with a full bucket.
    """

    def __init__(self, rate: float, burst: int, *, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """Create a limiter.

        Raises:
            ValueError: a non-positive rate, burst or max_keys.
        """
        if rate <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate, burst and max_keys must be positive")
        self.rate = float(rate)
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, updated)

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, cost: int = 1) -> None:
        """Spend ``cost`` tokens of ``key``'s bucket, or refuse without spending any.

        Raises:
            RateLimitedError: not enough tokens now (``retry_after`` says when
                there will be), or ``cost`` exceeds the burst and never fits
                (``retry_after`` is None).
        """
        if cost < 0:
            raise ValueError("cost must be non-negative")
        if cost > self.burst:
            raise RateLimitedError(
                f"{cost} entries in one request exceed the per-submitter burst of {self.burst}", None)
        now = self._clock()
        tokens, updated = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + max(0.0, now - updated) * self.rate)
        if tokens < cost:
            self._store(key, tokens, now)
            wait = (cost - tokens) / self.rate
            raise RateLimitedError(
                f"rate limit of {self.rate:g} entries/s (burst {self.burst}) exceeded; retry in {math.ceil(wait)} s",
                wait)
        self._store(key, tokens - cost, now)

    def _store(self, key: str, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)


class ConcurrencyLimiter:
    """At most ``limit`` requests at once, ``reserved`` of them kept for member nodes; refused, not queued.

    Public requests (clients, verifiers, anyone) share ``limit - reserved`` slots, at most ``per_client`` at
    once from one address. A request that claims to come from a member node (an ``Authorization:
    Mekong-Node member=XX ...`` header, checked when the handler reads the body) may also use the reserved
    slots, at most ``per_client`` at once per claimed member: a flood of slow public requests cannot take
    the slots witnessing and replication need (Trust II item 4), and a forged header gains little.
    """

    def __init__(self, limit: int, reserved: int = 0, per_client: int | None = None) -> None:
        """Create a limiter.

        Raises:
            ValueError: ``limit`` is not positive, ``reserved`` not below it, or ``per_client`` not positive.
        """
        if limit < 1 or not 0 <= reserved < limit or (per_client is not None and per_client < 1):
            raise ValueError("limit must be positive, reserved in [0, limit), per_client positive")
        self.limit = limit
        self.reserved = reserved
        self.per_client = per_client or limit
        self.active = 0
        self.active_public = 0
        self._by_client: dict[str, int] = {}

    @property
    def saturated(self) -> bool:
        """Whether every public slot is taken (``/healthz`` then says the node is degraded)."""
        return self.active_public >= self.limit - self.reserved

    def acquire(self, client: str = "", peer: bool = False) -> None:
        """Take a slot for a request from ``client`` (an address, or ``peer:XX`` for a member node).

        Raises:
            OverloadedError: the slots this request may use are taken, or its client has its share.
        """
        if self.active >= self.limit or (not peer and self.saturated):
            raise OverloadedError(f"the node is handling its maximum of {self.limit} concurrent requests"
                                  f" ({self.reserved} kept for member nodes); retry shortly")
        if self._by_client.get(client, 0) >= self.per_client:
            raise OverloadedError(f"{self.per_client} requests from {client or 'this client'} are already in"
                                  " progress; retry shortly")
        self.active += 1
        self.active_public += not peer
        self._by_client[client] = self._by_client.get(client, 0) + 1

    def release(self, client: str = "", peer: bool = False) -> None:
        """Give a slot back."""
        self.active = max(0, self.active - 1)
        if not peer:
            self.active_public = max(0, self.active_public - 1)
        left = self._by_client.get(client, 0) - 1
        if left > 0:
            self._by_client[client] = left
        else:
            self._by_client.pop(client, None)


def _claimed_peer(request: web.Request) -> str | None:
    # The member a request claims to come from: only the header's form is looked at here; the signature,
    # over the body, is verified by the handler (spec A.2).
    header = request.headers.get("Authorization", "")
    if header.startswith("Mekong-Node member=") and len(header) > 21 and header[19:21].isupper():
        return header[19:21]
    return None


def concurrency_middleware(limiter: ConcurrencyLimiter, exempt: Collection[str] = ("/healthz", "/metrics")
                           ) -> Middleware:
    """Build the middleware that refuses requests past ``limiter``'s limits with 503.

    Args:
        limiter: the shared slot counter.
        exempt: paths never refused, so monitoring works under load.

    Raises:
        OverloadedError: (from the middleware) when the slots the request may use are taken.
    """

    @web.middleware
    async def limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in exempt:
            return await handler(request)
        member = _claimed_peer(request)
        client = f"peer:{member}" if member else f"addr:{request.remote or 'unknown'}"
        limiter.acquire(client, member is not None)  # on the event loop thread: no await between check and take
        try:
            return await handler(request)
        finally:
            limiter.release(client, member is not None)

    return limit


def body_size_middleware(max_bytes: int) -> Middleware:
    """Build the middleware refusing a declared ``Content-Length`` over ``max_bytes`` before any read.

    Bodies without a length (chunked) are bounded when read, by the
    application's ``client_max_size`` and :func:`read_body`.

    Raises:
        RequestTooLargeError: (from the middleware) the declared body is too large.
    """

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        length = request.content_length
        if length is not None and length > max_bytes:
            raise RequestTooLargeError(f"request body of {length} bytes exceeds the limit of {max_bytes} bytes")
        return await handler(request)

    return check


async def read_body(request: web.Request, max_bytes: int, timeout: float | None = None) -> bytes:
    """Read the whole request body, refusing more than ``max_bytes`` or taking longer than ``timeout`` seconds.

    Raises:
        RequestTooLargeError: the body is larger than ``max_bytes``.
        RequestTimeoutError: the body did not arrive within ``timeout`` (a slow or stalled client, 408).
    """
    length = request.content_length
    if length is not None and length > max_bytes:
        raise RequestTooLargeError(f"request body of {length} bytes exceeds the limit of {max_bytes} bytes")
    chunks: list[bytes] = []
    total = 0
    try:
        async with asyncio.timeout(timeout):
            while True:
                chunk = await request.content.read(65536)
                if not chunk:
                    break
                total += len(chunk)
                if total > max_bytes:
                    raise RequestTooLargeError(f"request body exceeds the limit of {max_bytes} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeoutError(f"the request body did not arrive within {timeout:g} s ({total} bytes came)") from None
    return b"".join(chunks)


async def read_json(request: web.Request, max_bytes: int, timeout: float | None = None) -> Any:
    """Read and parse a JSON request body of at most ``max_bytes``.

    Raises:
        RequestTooLargeError: the body is too large.
        DecodeError: the body is not UTF-8 JSON (including nesting too deep to parse).
    """
    body = await read_body(request, max_bytes, timeout)
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise DecodeError(f"request body is not UTF-8: {e.reason} at byte {e.start}") from e
    except json.JSONDecodeError as e:
        raise DecodeError(f"request body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from e
    except (ValueError, RecursionError) as e:  # int too long to convert, nesting too deep
        raise DecodeError("request body is not acceptable JSON: too deeply nested or a number too long") from e

