"""The node's two cross-cutting middlewares: error mapping and request metrics.

:func:`error_middleware` is the one place where exceptions become HTTP
responses (specs/api.md section A.1). It maps the ledger's exception root to
statuses, turns aiohttp's own HTTP errors (404, 405, 413) into the same JSON
body, and answers anything unexpected with a generic 500 that leaks nothing:
the details go to the log, not to the client. Handlers stay thin because they
only raise.

The node's own refusals (not found, too large, rate limited, overloaded) are
the :class:`HttpRefusal` family defined here; :mod:`node.limits` and
:mod:`node.tiles` raise them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import ClassVar

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ledger.errors import (
    AuthorizationError,
    ConflictError,
    DecodeError,
    DuplicateEntryError,
    EquivocationError,
    MekongError,
    StorageError,
    StorageFullError,
    StorageReadOnlyError,
    VerificationError,
)
from node.metrics import NodeMetrics

__all__ = [
    "HttpRefusal", "NotFoundError", "OverloadedError", "RateLimitedError", "RequestTimeoutError",
    "RequestTooLargeError", "TryAgainSoon",
    "classify", "error_body", "error_middleware", "error_response", "metrics_middleware", "route_label",
]  # fmt: skip

log = logging.getLogger(__name__)

#: Longest ``message`` sent back; longer messages are cut.
MAX_MESSAGE_CHARS = 1000


class HttpRefusal(MekongError):
    """A request the node refuses for a reason of its own (not a ledger rule).

    Attributes:
        status: the HTTP status.
        kind: the ``error`` field of the JSON body.
        headers: extra response headers (for example ``Retry-After``).
    """

    status: ClassVar[int] = 400
    kind: ClassVar[str] = "bad_request"

    def __init__(self, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.headers = dict(headers or {})


class NotFoundError(HttpRefusal):
    """The resource does not exist (yet): 404."""

    status = 404
    kind = "not_found"


class RequestTooLargeError(HttpRefusal):
    """The request body, or a batch in it, exceeds a limit: 413."""

    status = 413
    kind = "request_too_large"


class RateLimitedError(HttpRefusal):
    """The submitter sent more than its rate allows: 429 with ``Retry-After``.

    Attributes:
        retry_after: seconds until the request would be accepted, or None if it never would.
    """

    status = 429
    kind = "rate_limited"

    def __init__(self, message: str, retry_after: float | None) -> None:
        headers = {} if retry_after is None else {"Retry-After": str(max(1, int(retry_after + 0.999)))}
        super().__init__(message, headers=headers)
        self.retry_after = retry_after


class RequestTimeoutError(HttpRefusal):
    """The request body did not arrive in time: 408 (a slow or stalled client)."""

    status = 408
    kind = "request_timeout"


class TryAgainSoon(HttpRefusal):
    """A refusal that passes: 503 with ``Retry-After: 1``."""

    status = 503

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "1"})


class OverloadedError(TryAgainSoon):
    """The node is handling as many requests as it allows: 503 with ``Retry-After: 1``."""

    kind = "overloaded"


# spec A.1: the ledger's exception root, most specific class first.
_LEDGER_ERRORS: tuple[tuple[type[MekongError], int, str], ...] = (
    (DuplicateEntryError, 409, "duplicate"),
    (AuthorizationError, 403, "not_authorized"),
    (VerificationError, 422, "verification_failed"),
    (DecodeError, 400, "bad_request"),
    (EquivocationError, 409, "equivocation"),
    (ConflictError, 409, "conflict"),
)

_HTTP_KINDS = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}
_STORAGE_MESSAGE = "the node's storage failed; the request was not completed"
_INTERNAL_MESSAGE = "internal error"


def error_body(kind: str, message: str) -> dict[str, str]:
    """The JSON error body: ``{"error": kind, "message": message}``, message cut to 1000 characters."""
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 3] + "..."
    return {"error": kind, "message": message}


def error_response(status: int, kind: str, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """A JSON error response that no cache keeps."""
    resp = web.json_response(error_body(kind, message), status=status)
    resp.headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        resp.headers[name] = value
    return resp


def _from_http_exception(e: web.HTTPException) -> tuple[int, str, str, dict[str, str]]:
    kind = _HTTP_KINDS.get(e.status, "bad_request" if e.status < 500 else "internal_error")
    message = e.text if e.status == 413 and e.text else e.reason
    keep = {k: v for k, v in e.headers.items() if k.lower() in ("allow", "retry-after")}
    return e.status, kind, message or kind, keep


def classify(e: BaseException) -> tuple[int, str, str]:
    """``(status, kind, message)`` for an exception raised by a handler (spec A.1).

    Storage and unknown errors get a fixed message: their text may describe
    the node's internals.
    """
    if isinstance(e, HttpRefusal):
        return e.status, e.kind, str(e)
    for cls, status, kind in _LEDGER_ERRORS:
        if isinstance(e, cls):
            return status, kind, str(e) or kind
    if isinstance(e, StorageFullError):
        return 507, "storage_full", "the node's disk is full: it refuses writes and keeps serving reads"
    if isinstance(e, StorageReadOnlyError):
        return 503, "read_only", "the node's database is read-only: it refuses writes and keeps serving reads"
    if isinstance(e, StorageError):
        return 500, "storage_error", _STORAGE_MESSAGE
    return 500, "internal_error", _INTERNAL_MESSAGE


def error_middleware(metrics: NodeMetrics | None = None) -> Middleware:
    """Build the middleware that turns every exception into a JSON error response.

    Args:
        metrics: when given, every error response counts in ``metrics.errors`` by kind.
    """

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        headers: Mapping[str, str] | None
        try:
            return await handler(request)
        except web.HTTPException as e:
            if e.status < 400:
                raise  # redirects and other non-errors pass through
            status, kind, message, headers = _from_http_exception(e)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the one place that catches everything
            status, kind, message = classify(e)
            if isinstance(e, (StorageFullError, StorageReadOnlyError)):  # a condition the operator must fix
                log.warning("%s %s refused: %s", request.method, request.path, e)
            elif status >= 500 and not isinstance(e, HttpRefusal):  # a traceback only for the node's own failures;
                log.error("%s %s failed: %s", request.method, request.path, type(e).__name__, exc_info=e)
                # refusals (503 overloaded, ...) are counted in the metrics below, not logged one by one
            headers = e.headers if isinstance(e, HttpRefusal) else None
        if metrics is not None:
            metrics.errors.inc(kind=kind)
        return error_response(status, kind, message, headers)

    return errors


def route_label(request: web.Request) -> str:
    """The route template of a request (``/logs/{member}/tile/{path}``), or ``unmatched``.

    Never the raw path, so metric series stay bounded.
    """
    try:
        resource = request.match_info.route.resource
    except AttributeError:  # pragma: no cover - match_info is always set once routed
        return "unmatched"
    return "unmatched" if resource is None else resource.canonical


def metrics_middleware(metrics: NodeMetrics, clock: Callable[[], float] = time.perf_counter) -> Middleware:
    """Build the middleware counting requests and latencies by route, method and status.

    Put it first (outermost), so it sees the status the error middleware chose.
    """

    @web.middleware
    async def measure(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = clock()
        status = "500"
        metrics.in_flight.inc()
        try:
            resp = await handler(request)
            status = str(resp.status)
            return resp
        except web.HTTPException as e:
            status = str(e.status)
            raise
        except asyncio.CancelledError:
            status = "cancelled"
            raise
        finally:
            metrics.in_flight.dec()
            route = route_label(request)
            metrics.requests.inc(route=route, method=request.method, status=status)
            metrics.request_seconds.observe(clock() - start, route=route, method=request.method)

    return measure
