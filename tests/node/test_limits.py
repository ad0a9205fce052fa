"""Rate and concurrency limiters (node/limits.py, specs/api.md section A.3)."""

from __future__ import annotations

import pytest

from node.limits import ConcurrencyLimiter, TokenBucketLimiter
from node.middleware import OverloadedError, RateLimitedError


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_token_bucket_refills_at_rate() -> None:
    clock = Clock()
    tb = TokenBucketLimiter(rate=10, burst=20, clock=clock)
    tb.take("a", 20)
    with pytest.raises(RateLimitedError) as info:
        tb.take("a", 5)
    assert info.value.retry_after == pytest.approx(0.5)
    assert info.value.headers["Retry-After"] == "1"
    clock.t += 0.5
    tb.take("a", 5)  # refused attempts spend nothing
    clock.t += 100
    tb.take("a", 20)  # refills to the burst, no further
    with pytest.raises(RateLimitedError):
        tb.take("a", 1)
    tb.take("b", 20)  # other keys are independent


def test_token_bucket_cost_over_burst_never_fits() -> None:
    tb = TokenBucketLimiter(rate=1, burst=5, clock=Clock())
    with pytest.raises(RateLimitedError) as info:
        tb.take("a", 6)
    assert info.value.retry_after is None and "Retry-After" not in info.value.headers
    tb.take("a", 5)
    tb.take("a", 0)


def test_token_bucket_forgets_least_recently_used() -> None:
    clock = Clock()
    tb = TokenBucketLimiter(rate=1, burst=1, max_keys=3, clock=clock)
    for key in "abcd":
        tb.take(key)
    assert len(tb) == 3
    tb.take("a")  # "a" was dropped first, so it starts again full
    with pytest.raises(RateLimitedError):
        tb.take("d")


def test_bad_limiter_arguments() -> None:
    for kwargs in ({"rate": 0, "burst": 1}, {"rate": 1, "burst": 0}, {"rate": 1, "burst": 1, "max_keys": 0}):
        with pytest.raises(ValueError):
            TokenBucketLimiter(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        TokenBucketLimiter(1, 1).take("a", -1)
    with pytest.raises(ValueError):
        ConcurrencyLimiter(0)


def test_concurrency_limiter() -> None:
    lim = ConcurrencyLimiter(2)
    lim.acquire()
    lim.acquire()
    with pytest.raises(OverloadedError, match="2 concurrent"):
        lim.acquire()
    lim.release()
    lim.acquire()
    lim.release()
    lim.release()
    lim.release()
    assert lim.active == 0


def test_concurrency_limiter_keeps_slots_for_member_nodes_and_caps_each_client() -> None:
    lim = ConcurrencyLimiter(4, reserved=2, per_client=1)
    lim.acquire("addr:a")
    with pytest.raises(OverloadedError, match="1 requests from addr:a"):
        lim.acquire("addr:a")  # one client, one slot
    lim.acquire("addr:b")
    assert lim.saturated
    with pytest.raises(OverloadedError, match="2 kept for member nodes"):
        lim.acquire("addr:c")  # the public slots are taken ...
    lim.acquire("peer:VN", peer=True)  # ... the reserved ones are not
    lim.acquire("peer:TH", peer=True)
    with pytest.raises(OverloadedError):
        lim.acquire("peer:KH", peer=True)  # all four taken
    lim.release("addr:a")
    assert not lim.saturated
    lim.acquire("addr:c")
    for c, p in (("addr:b", False), ("addr:c", False), ("peer:VN", True), ("peer:TH", True)):
        lim.release(c, p)
    assert (lim.active, lim.active_public) == (0, 0)
    with pytest.raises(ValueError):
        ConcurrencyLimiter(2, reserved=2)
