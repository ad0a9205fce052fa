"""Slow clients do not stall finality (Trust II item 4), on real node processes.

Hundreds of connections that send the headers of a POST and then stall its body used to take every request
slot of a node, so that witnessing answered 503 as well and a log with two such witnesses could not become
final. Now a body that does not arrive in time is refused (408), one client address gets a share of the
slots, and slots are kept for member nodes (peer requests signed with node keys): the anchor becomes final
within seconds.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.integration.conftest import Net

pytestmark = pytest.mark.integration
SLOW = 300  # connections per attacked node, more than its 256 request slots


def _stall(url: str, count: int) -> list[socket.socket]:
    """``count`` connections to ``url``, each with a POST whose body never comes."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    socks = []
    for _ in range(count):
        s = socket.create_connection((host, int(port)), timeout=5)
        s.sendall(b"POST /witness/add-checkpoint HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                  b"Content-Length: 100000\r\n\r\n\x81")
        socks.append(s)
    return socks


@pytest.fixture
def attacked(net: Net) -> Iterator[list[str]]:
    socks = _stall(net.url("KH"), SLOW) + _stall(net.url("LA"), SLOW)
    try:
        yield ["KH", "LA"]
    finally:
        for s in socks:
            s.close()


def test_slow_clients_do_not_stall_finality(net: Net, attacked: list[str]) -> None:
    issuer, key, entries = net.register_issuer("VN", "slowloris")
    time.sleep(0.5)  # the stalled requests hold their slots
    for node in attacked:
        # The attacker's address has used its share: another public request from it is refused at once ...
        resp = net.get(node, "/status")
        assert resp.status == 503 and "requests from addr:127.0.0.1" in resp.json()["message"], (node, resp)
        # ... while the node as a whole is not saturated, and says so (the saturated case: tests/node).
        assert net.get(node, "/healthz").json()["status"] == "ok"
    start = time.monotonic()
    answer = net.submit("VN", entries + net.anchors("VN", issuer, key, 1))  # waits for finality
    elapsed = time.monotonic() - start
    assert answer["final_size"] >= answer["size"] and elapsed < 8, (answer, elapsed)
    # One log line per refusal kind at most, and no tracebacks for what clients did.
    for node in attacked:
        assert "Traceback" not in net.node_log(node), net.node_log(node)[-2000:]
