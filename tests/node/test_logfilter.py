"""node.logfilter: client-caused errors become one rate-limited WARNING line, the node's own keep tracebacks."""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import BadHttpMessage

from node import logfilter
from node.logfilter import ClientNoiseFilter


def _record(exc: BaseException) -> logging.LogRecord:
    return logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, "Error handling request", (),
                             (type(exc), exc, None))


def test_client_errors_are_one_warning_a_minute_with_a_count() -> None:
    now = [0.0]
    f = ClientNoiseFilter(60, clock=lambda: now[0])
    first = _record(BadHttpMessage("bad request line"))
    assert f.filter(first) and first.levelname == "WARNING" and first.exc_info is None
    assert "BadHttpMessage" in first.getMessage()
    assert not any(f.filter(_record(BadHttpMessage("again"))) for _ in range(500))
    assert f.filter(_record(ConnectionResetError("peer gone")))  # another kind: its own line
    now[0] = 61.0
    later = _record(BadHttpMessage("later"))
    assert f.filter(later) and "(500 more since the last line)" in later.getMessage()


def test_the_nodes_own_failures_pass_untouched() -> None:
    f = ClientNoiseFilter(60)
    bug = _record(KeyError("a bug"))
    assert f.filter(bug) and bug.levelno == logging.ERROR and bug.exc_info is not None
    plain = logging.LogRecord("aiohttp.server", logging.INFO, __file__, 1, "started", (), None)
    assert f.filter(plain)


def test_every_client_error_is_counted_logged_or_not() -> None:
    f = ClientNoiseFilter(60, clock=lambda: 0.0)
    for _ in range(5):
        f.filter(_record(BadHttpMessage("bad")))
    f.filter(_record(ConnectionResetError("gone")))
    f.filter(_record(KeyError("the node's own")))
    assert f.totals == {"BadHttpMessage": 5, "ConnectionResetError": 1}


def test_the_metric_follows_the_installed_filter() -> None:
    before = list(logfilter._installed)
    f = logfilter.install()
    try:
        assert logfilter.totals() == {}
        logging.getLogger("aiohttp.server").error("x", exc_info=(BadHttpMessage, BadHttpMessage("bad"), None))
        assert logfilter.totals() == {"BadHttpMessage": 1} == f.totals
    finally:  # as it was: another test's filter, or none
        for name in ("aiohttp.server", "aiohttp.access", "aiohttp.web"):
            logging.getLogger(name).removeFilter(f)
            for old in before:
                logging.getLogger(name).addFilter(old)
        logfilter._installed[:] = before
