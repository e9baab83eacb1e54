"""Retry classification and backoff, on fake clocks: no test waits for real (the rate limiter's
tests are in test_rate_adaptive.py)."""

from __future__ import annotations

import email.utils
import random
from collections.abc import Callable

import pytest
import requests

from catalog.api import retry
from catalog.api.retry import (
    MIN_RETRY_AFTER,
    RetryPolicy,
    classify,
    parse_retry_after,
)
from catalog.errors import ApiError


class FakeTime:
    """A clock that only moves when something sleeps on it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class MaxRandom(random.Random):
    """Always draws the top of the range, to check the ceilings exactly."""

    def uniform(self, a: float, b: float) -> float:
        return b


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (429, "", True),
        (500, "", True),
        (502, "", True),
        (503, "ServiceUnavailable", True),
        (504, "", True),
        (400, "", False),
        (400, "InvalidParameter", False),
        (404, "ResourceNotFound", False),
        (409, "", False),
        (200, "", False),
        (None, "", False),
        # auth problems are never retried, whatever status carries them
        (401, "", False),
        (403, "AccessDenied", False),
        (403, "SignatureDoesNotMatch", False),
        (500, "SignatureDoesNotMatch", False),
        (400, "RequestExpired", False),
        (403, "InvalidAccessKeyId", False),
        # /v2 throttling and overload names, even with an unexpected status
        (400, "RequestLimitExceeded", True),
        (400, "TooManyRequests", True),
        (400, "QpsLimitReached", True),
        (400, "InternalError", True),
        (400, "ServiceUnavailable", True),
        (400, "Throttling", True),
        # /wenxinworkshop codes arrive inside HTTP 200
        (200, "4", True),
        (200, "18", True),
        (200, "336100", True),
        (200, "500000", True),
        (200, "1", True),
        (200, "2", True),
        (200, "336000", True),  # internal error
        (200, "17", False),  # daily quota: does not recover within a retry budget
        (200, "19", False),  # total quota
        (200, "110", False),
        (200, "336003", False),
        (200, "500001", False),
        (200, "500002", False),
        # not how the server is doing, but what it is: another server at the base URL
        (501, "", False),
        (505, "", False),
        (600, "", False),  # not an HTTP status at all: nothing says it passes
    ],
)
def test_classify_answers(status: int | None, code: str, expected: bool) -> None:
    assert classify(status=status, code=code) is expected


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (requests.ConnectionError("refused"), True),
        (requests.ConnectTimeout("slow connect"), True),
        (requests.ReadTimeout("slow answer"), True),
        (requests.exceptions.ChunkedEncodingError("cut short"), True),
        (requests.exceptions.SSLError("bad certificate"), False),
        (requests.exceptions.InvalidURL("nope"), False),
        (ValueError("not transport"), False),
    ],
)
def test_classify_transport_errors(exc: BaseException, expected: bool) -> None:
    assert classify(exc=exc) is expected


@pytest.mark.parametrize("seed", range(5))
def test_backoff_stays_within_full_jitter_bounds(seed: int) -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0, rng=random.Random(seed))
    for attempt in range(1, 12):
        ceiling = min(8.0, 0.5 * 2 ** (attempt - 1))
        for _ in range(20):
            assert 0.0 <= policy.delay(attempt) <= ceiling


def test_backoff_ceiling_doubles_then_caps() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=5.0, rng=MaxRandom())
    assert [policy.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_jitter_is_full_not_partial() -> None:
    """Full jitter draws from [0, ceiling]: over many draws some land in the lower half."""
    policy = RetryPolicy(base_delay=1.0, max_delay=100.0, rng=random.Random(7))
    draws = [policy.delay(4) for _ in range(200)]
    assert min(draws) < 2.0 < 4.0 < max(draws) <= 8.0
    assert len(set(draws)) > 150


def test_retry_after_wins_floored_and_capped() -> None:
    policy = RetryPolicy(max_delay=30.0, rng=MaxRandom())
    assert policy.delay(1, retry_after=7.0) == 7.0
    assert policy.delay(5, retry_after=0.0) == MIN_RETRY_AFTER
    assert policy.delay(1, retry_after=0.001) == MIN_RETRY_AFTER
    assert policy.delay(1, retry_after=3600.0) == 30.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3", 3.0), (" 1.5 ", 1.5), ("0", 0.0), ("-4", 0.0), (None, None), ("", None),
     ("soon", None), ("nan", None)],
)
def test_parse_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_date_without_a_zone_is_gmt(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP dates are GMT (RFC 9110); one without a zone is read as GMT too, not as the host's
    local time (a host in UTC+8 would otherwise wait 8 hours less, or not at all)."""
    import time

    now = email.utils.parsedate_to_datetime("Sun, 06 Nov 1994 08:49:07 GMT").timestamp()
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    try:
        assert parse_retry_after("Sun, 06 Nov 1994 08:49:37", now=now) == pytest.approx(30.0)
        assert parse_retry_after("Sun, 06 Nov 1994 08:49:37 -0000", now=now) == pytest.approx(30.0)
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_retry_after_of_forever_waits_the_cap() -> None:
    """A server asking for longer than ``max_delay`` (even "inf") waits the cap, not our own
    shorter backoff: it said it is busy for a while."""
    policy = RetryPolicy(max_delay=30.0, rng=MaxRandom())
    assert policy.delay(1, parse_retry_after("inf")) == 30.0
    assert policy.delay(1, parse_retry_after("86400")) == 30.0


def test_parse_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    future = email.utils.formatdate(now + 30, usegmt=True)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after(future, now=now) == pytest.approx(30.0)
    assert parse_retry_after(past, now=now) == 0.0


def _failing(errors: list[ApiError], calls: list[int]) -> Callable[[int], str]:
    def attempt(number: int) -> str:
        calls.append(number)
        if errors:
            raise errors.pop(0)
        return "done"

    return attempt


def transient(retry_after: float | None = None) -> ApiError:
    return ApiError("busy", call="DescribeModel", code="18", status=200, retryable=True,
                    retry_after=retry_after)


def test_run_sleeps_the_seeded_delays_then_succeeds() -> None:
    fake = FakeTime()
    policy = RetryPolicy(sleep=fake.sleep, clock=fake.clock, rng=random.Random(42))
    calls: list[int] = []
    result = policy.run(_failing([transient(), transient(), transient()], calls))
    assert result == "done"
    assert calls == [1, 2, 3, 4]
    reference = random.Random(42)
    expected = [reference.uniform(0, 0.5 * 2 ** (n - 1)) for n in (1, 2, 3)]
    assert fake.sleeps == expected


def test_run_gives_up_after_max_attempts() -> None:
    fake = FakeTime()
    policy = RetryPolicy(max_attempts=4, sleep=fake.sleep, clock=fake.clock, rng=random.Random(1))
    calls: list[int] = []
    with pytest.raises(ApiError) as info:
        policy.run(_failing([transient() for _ in range(10)], calls))
    assert calls == [1, 2, 3, 4]
    assert len(fake.sleeps) == 3
    assert "gave up after 4 attempts" in str(info.value)


def test_run_does_not_retry_permanent_errors() -> None:
    fake = FakeTime()
    policy = RetryPolicy(sleep=fake.sleep, clock=fake.clock)
    denied = ApiError("no", code="AccessDenied", status=403, retryable=False)
    calls: list[int] = []
    with pytest.raises(ApiError) as info:
        policy.run(_failing([denied], calls))
    assert info.value is denied
    assert calls == [1]
    assert fake.sleeps == []


@pytest.mark.parametrize(
    ("base_delay", "max_total", "sleeps", "words"),
    [
        # 4 s after the first failure fits; 8 s more would end at 12 s > 10 s: it stops there
        (4.0, 10.0, [4.0], "budget"),
        # 2 + 4 = 6 s ends exactly at the budget, which bounds the call: within it
        (2.0, 6.0, [2.0, 4.0], "the next wait would pass the 6s budget"),
    ],
)
def test_run_respects_the_total_time_budget(
    base_delay: float, max_total: float, sleeps: list[float], words: str
) -> None:
    fake = FakeTime()
    policy = RetryPolicy(max_attempts=50, base_delay=base_delay, max_delay=100.0,
                         max_total=max_total, sleep=fake.sleep, clock=fake.clock,
                         rng=MaxRandom())
    calls: list[int] = []
    with pytest.raises(ApiError) as info:
        policy.run(_failing([transient() for _ in range(50)], calls))
    assert fake.sleeps == sleeps
    assert calls == list(range(1, len(sleeps) + 2))
    assert words in str(info.value)


def test_retry_after_zero_never_busy_loops() -> None:
    fake = FakeTime()
    policy = RetryPolicy(max_attempts=6, sleep=fake.sleep, clock=fake.clock)
    calls: list[int] = []
    with pytest.raises(ApiError):
        policy.run(_failing([transient(retry_after=0.0) for _ in range(6)], calls))
    assert len(fake.sleeps) == 5
    assert all(s >= MIN_RETRY_AFTER for s in fake.sleeps)


def test_on_retry_is_told_before_each_sleep() -> None:
    log: list[tuple[str, object]] = []
    policy = RetryPolicy(sleep=lambda s: log.append(("sleep", s)), rng=MaxRandom())
    calls: list[int] = []

    def on_retry(attempt: int, delay: float, err: ApiError) -> None:
        log.append(("retry", (attempt, delay, err.code)))

    policy.run(_failing([transient(), transient(2.0)], calls), on_retry)
    assert log == [("retry", (1, 0.5, "18")), ("sleep", 0.5), ("retry", (2, 2.0, "18")),
                   ("sleep", 2.0)]


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    for negative in ({"base_delay": -1.0}, {"max_delay": -1.0}, {"max_total": -1.0}):
        with pytest.raises(ValueError):
            RetryPolicy(**negative)  # type: ignore[arg-type]


def test_a_stop_ends_the_retries_at_once() -> None:
    """Once a signal asked the run to stop, a failing call is not tried again, and a wait
    already begun ends (the stop is not held up by a retry budget of minutes)."""
    import threading
    import time

    stop = threading.Event()
    attempts: list[int] = []

    def attempt(n: int) -> None:
        attempts.append(n)
        if n == 2:
            threading.Timer(0.05, stop.set).start()  # the signal, during the next wait
        raise ApiError("busy", call="DescribeModel", status=503, retryable=True)

    policy = RetryPolicy(max_attempts=6, base_delay=10.0, max_delay=10.0,
                         rng=random.Random(1), stop=stop)
    policy.delay = lambda attempt, retry_after=None: 0.0 if attempt == 1 else 10.0  # type: ignore[method-assign]
    started = time.monotonic()
    with pytest.raises(ApiError) as info:
        policy.run(attempt)
    assert attempts == [1, 2] and time.monotonic() - started < 5
    assert "not tried again: the run is stopping" in str(info.value)
    again: list[int] = []

    def failing(n: int) -> None:
        again.append(n)
        raise ApiError("busy", call="DescribeModel", status=503, retryable=True)

    with pytest.raises(ApiError):  # stopped already: one attempt, no wait
        policy.run(failing)
    assert again == [1]


class SignalledEvent:
    """Stands in for ``retry.STOPPING``: records each wait, and a signal arrives during the
    first one (it is set, and the wait ends)."""

    def __init__(self, already: bool = False) -> None:
        self.waits: list[float] = []
        self._set = already

    def is_set(self) -> bool:
        return self._set

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self._set = True
        return True


def test_a_process_stop_is_seen_by_every_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """``STOPPING`` (a signal outside a sync's run, ``catalog/entry.py``) holds for policies
    with no ``stop`` of their own: a failed call is not tried again, nor waited for, and no
    retry is announced."""
    monkeypatch.setattr(retry, "STOPPING", SignalledEvent(already=True))
    fake = FakeTime()
    announced: list[int] = []
    policy = RetryPolicy(sleep=fake.sleep, clock=fake.clock, rng=MaxRandom())
    calls: list[int] = []
    with pytest.raises(ApiError) as info:
        policy.run(_failing([transient() for _ in range(6)], calls),
                   lambda n, delay, err: announced.append(n))
    assert calls == [1] and fake.sleeps == [] and announced == []
    assert "not tried again: the run is stopping" in str(info.value)


def test_a_real_wait_ends_when_the_process_is_asked_to_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The default sleep is a wait on ``STOPPING``, so a signal ends it (a plain
    ``time.sleep`` would hold the stop up for as long as the backoff)."""
    stopping = SignalledEvent()
    monkeypatch.setattr(retry, "STOPPING", stopping)
    policy = RetryPolicy(base_delay=0.001, max_delay=0.001, rng=MaxRandom())
    calls: list[int] = []
    with pytest.raises(ApiError) as info:
        policy.run(_failing([transient() for _ in range(6)], calls))
    assert stopping.waits == [0.001]
    assert calls == [1]
    assert "not tried again: the run is stopping" in str(info.value)
