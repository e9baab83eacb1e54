"""The fake server's limiter shapes, counted on an injected clock, and served over HTTP."""

from __future__ import annotations

import pytest
import requests

from catalog.api.auth import BceAuth
from catalog.fake.catalog import FakeCatalog
from catalog.fake.limiters import FixedWindow, SlidingWindow, TokenBucket, make_limiter
from catalog.fake.server import FakeServer


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def admitted(limiter: TokenBucket | FixedWindow | SlidingWindow, clock: Clock,
             times: list[float]) -> list[bool]:
    out = []
    for t in times:
        clock.now = t
        out.append(limiter.try_acquire())
    return out


def test_token_bucket_allows_a_one_second_burst_then_the_rate() -> None:
    clock = Clock(100.0)
    bucket = TokenBucket(5.0, clock)
    assert admitted(bucket, clock, [100.0] * 6) == [True] * 5 + [False]
    # refills at 5/s: one token per 0.2 s, never more than the capacity
    assert admitted(bucket, clock, [100.1, 100.2, 100.4]) == [False, True, True]
    assert admitted(bucket, clock, [110.0] * 6) == [True] * 5 + [False]
    assert bucket.refused == 3
    assert bucket.retry_after is None


def test_fixed_window_resets_on_the_second() -> None:
    clock = Clock()
    window = FixedWindow(3.0, clock)
    # three in [100, 101), whatever their spacing; the fourth is refused
    assert admitted(window, clock, [100.0, 100.5, 100.99, 100.995]) == [True, True, True, False]
    # a new window at 101.0 even though the last call was 5 ms ago: the edge a fixed window has
    assert admitted(window, clock, [101.0, 101.001, 101.002, 101.003]) == [True, True, True, False]
    assert window.refused == 2
    assert window.retry_after == 1.0


def test_sliding_window_counts_the_second_before_each_call() -> None:
    clock = Clock()
    window = SlidingWindow(3.0, clock)
    assert admitted(window, clock, [100.0, 100.5, 100.9, 100.95]) == [True, True, True, False]
    # at 101.0 the call of 100.0 is exactly one second old and out of the window; 100.5 is not
    assert admitted(window, clock, [101.0, 101.2, 101.5]) == [True, False, True]
    assert window.refused == 2
    assert window.retry_after == 1.0


def test_refused_calls_do_not_count_against_a_window() -> None:
    clock = Clock()
    window = SlidingWindow(2.0, clock)
    assert admitted(window, clock, [100.0, 100.1] + [100.2 + i / 100 for i in range(50)])[:3] == [
        True, True, False]
    clock.now = 101.05  # 100.0 has left the window; 50 refusals meanwhile changed nothing
    assert window.try_acquire()


def test_fractional_rate_never_allows_zero_per_window() -> None:
    clock = Clock()
    assert admitted(FixedWindow(0.5, clock), clock, [100.0, 100.1]) == [True, False]
    assert admitted(SlidingWindow(2.9, clock), clock, [200.0, 200.1, 200.2]) == [True, True, False]


def test_make_limiter_picks_the_shape_and_refuses_unknown_ones() -> None:
    assert isinstance(make_limiter("bucket", 5), TokenBucket)
    assert isinstance(make_limiter("fixed", 5), FixedWindow)
    assert isinstance(make_limiter("sliding", 5), SlidingWindow)
    with pytest.raises(ValueError, match="unknown limit shape"):
        make_limiter("leaky", 5)
    with pytest.raises(ValueError):
        make_limiter("sliding", 0)


@pytest.mark.parametrize(("shape", "retry_after"),
                         [("bucket", None), ("fixed", "1"), ("sliding", "1")])
def test_fake_server_answers_429_in_each_shape(shape: str, retry_after: str | None) -> None:
    catalog = FakeCatalog.generate(seed=1, model_sets=1, versions_per_set=1, comp_tasks=0,
                                   eval_exports=0, system_sets=0)
    with FakeServer(catalog, rate_limit=2.0, limit_shape=shape) as server:
        session = requests.Session()
        session.auth = BceAuth(server.access_key, "fake-sk")
        url = f"{server.url}/v2/model?Action=DescribeCustomModelSets"
        answers = [session.post(url, json={}, timeout=5) for _ in range(3)]
        session.close()
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].json()["code"] == "RequestLimitExceeded"
    assert answers[2].headers.get("Retry-After") == retry_after
    assert server.limiter is not None and server.limiter.refused == 1
