"""Keeping what clients do wrong out of the node's error log (Trust II item 5).

aiohttp's server logs every malformed request and every dropped connection at ERROR with a traceback, so a
hostile client could write thousands of lines a minute into an operator's log. :class:`ClientNoiseFilter`
turns those records into one WARNING line per kind and interval, with how many there were, and counts every
one (``mekong_client_errors_total`` in /metrics, specs/api.md A.5); the node's own failures keep their
tracebacks (the error middleware logs them, spec A.3.3).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp.http_exceptions import HttpProcessingError

__all__ = ["ClientNoiseFilter", "install", "totals"]

#: Exceptions that a client causes, not the node.
CLIENT_ERRORS: tuple[type[BaseException], ...] = (HttpProcessingError, ConnectionResetError, BrokenPipeError,
                                                  TimeoutError)


class ClientNoiseFilter(logging.Filter):
    """Drop log records caused by clients; let one WARNING per kind through every ``interval`` seconds."""

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self._clock = clock
        self._seen: dict[str, tuple[float, int]] = {}  # kind -> (last line written, records dropped since)
        self.totals: dict[str, int] = {}  # kind -> every record seen, logged or not (for /metrics)

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, CLIENT_ERRORS):
            return True
        kind = type(exc).__name__
        self.totals[kind] = self.totals.get(kind, 0) + 1
        now = self._clock()
        last, dropped = self._seen.get(kind, (float("-inf"), 0))
        if now - last < self.interval:
            self._seen[kind] = (last, dropped + 1)
            return False
        self._seen[kind] = (now, 0)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg = f"client error {kind}: {exc}" + (f" ({dropped} more since the last line)" if dropped else "")
        record.args = ()
        record.exc_info = record.exc_text = None
        return True


_installed: list[ClientNoiseFilter] = []


def install(interval: float = 60.0) -> ClientNoiseFilter:
    """Attach one filter to aiohttp's server and access loggers, in place of one installed before; return it."""
    f = ClientNoiseFilter(interval)
    for name in ("aiohttp.server", "aiohttp.access", "aiohttp.web"):
        for old in _installed:
            logging.getLogger(name).removeFilter(old)
        logging.getLogger(name).addFilter(f)
    _installed[:] = [f]
    return f


def totals() -> dict[str, int]:
    """Client errors seen by the installed filter since it was installed, by kind (none if not installed)."""
    return dict(_installed[0].totals) if _installed else {}
