"""The shared rate limiter: pacing, holds, and the adaptive rate, all on fake clocks.

The convergence tests drive the real limiter against the fake server's limiter shapes
(``catalog.fake.limiters``) on the same fake clock, one call at a time, so they are exact and
take no wall time.
"""

from __future__ import annotations

import heapq
import random
import threading
from collections.abc import Callable

import pytest

from catalog.api.pacing import RateLimiter
from catalog.api.retry import is_throttling
from catalog.fake.limiters import make_limiter
from tests.test_retry import FakeTime


def limiter_on(fake: FakeTime, qps: float, **kw: float) -> RateLimiter:
    return RateLimiter(qps, clock=fake.clock, sleep=fake.sleep, **kw)


def refused_after(limiter: RateLimiter, fake: FakeTime, accepted: int) -> None:
    """``accepted`` calls at the limiter's pace go through, then one is refused."""
    for _ in range(accepted):
        limiter.acquire()
        limiter.feedback(fake.now, throttled=False)
    limiter.acquire()
    limiter.feedback(fake.now, throttled=True)


# --- which answers are throttling ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (429, "", True),
        (429, "Whatever", True),
        (400, "RequestLimitExceeded", True),
        (503, "TooManyRequests", True),
        (400, "QPSLimitReached", True),
        (503, "ServerHighLoad", True),
        (200, "18", True),  # QPS limit reached
        (200, "4", True),  # cluster request limit reached
        (200, "336100", True),  # server high load
        (500, "InternalError", False),  # retried, but a failure, not a pace
        (503, "ServiceUnavailable", False),
        (503, "", False),
        (200, "2", False),
        (200, "17", False),  # daily quota: no pace fixes that
        (404, "ResourceNotFound", False),
    ],
)
def test_which_answers_are_throttling(status: int, code: str, expected: bool) -> None:
    assert is_throttling(status=status, code=code) is expected


# --- pacing ------------------------------------------------------------------------------------


def test_spaces_requests_by_qps() -> None:
    fake = FakeTime()
    limiter = limiter_on(fake, 2.0, margin=0.0)
    assert [limiter.acquire() for _ in range(4)] == [0.0, 0.5, 0.5, 0.5]
    assert fake.now == pytest.approx(1001.5)


def test_paces_a_margin_below_the_ceiling() -> None:
    """qps calls per second at the server, jitter included: qps evenly spaced calls would put
    qps + 1 into some closed second."""
    fake = FakeTime()
    limiter = limiter_on(fake, 50.0)
    assert limiter.rate == pytest.approx(49.0)
    limiter.acquire()
    assert limiter.acquire() == pytest.approx(1 / 49.0)
    sends = []
    for _ in range(200):
        limiter.acquire()
        sends.append(fake.now)
    # 50 calls in a second, but the 51st a full 20 ms past it: room for the network's jitter
    assert max(sum(1 for s in sends if t <= s <= t + 1.0 + 1e-9) for t in sends) == 50
    assert max(sum(1 for s in sends if t <= s < t + 1.02) for t in sends) == 50


def test_idle_time_earns_no_burst() -> None:
    fake = FakeTime()
    limiter = limiter_on(fake, 4.0, margin=0.0)
    limiter.acquire()
    fake.now += 100.0  # a long lull
    assert [limiter.acquire() for _ in range(3)] == [0.0, 0.25, 0.25]


def test_unlimited_never_sleeps() -> None:
    fake = FakeTime()
    limiter = limiter_on(fake, 0)
    assert all(limiter.acquire() == 0.0 for _ in range(100))
    assert fake.sleeps == []
    assert limiter.settled_rate() is None


def test_loses_no_reservation_across_threads() -> None:
    """With a frozen clock every acquire reserves the next slot: the waits must be exactly
    0, 1/qps, 2/qps, ... whatever the interleaving; a lost update would repeat a value."""
    qps = 10.0
    limiter = RateLimiter(qps, margin=0.0, clock=lambda: 0.0, sleep=lambda s: None)
    waits: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(25):
            wait = limiter.acquire()
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(waits) == pytest.approx([k / qps for k in range(200)])


@pytest.mark.parametrize(
    "kw",
    [
        {"margin": 1.0},
        {"margin": -0.01},
        {"beta": 1.0},
        {"beta": 0.0},
        {"recovery": 0.0},
        {"probe": 0.0},
        {"quiet": 0.0},
        {"confirm": 0.0},
        {"window": 0.0},
        {"min_rate": 0.0},
    ],
)
def test_rejects_nonsense(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RateLimiter(10.0, **kw)


# --- holds (Retry-After) -----------------------------------------------------------------------


def test_hold_delays_the_next_call_exactly_as_asked_then_keeps_the_pace() -> None:
    fake = FakeTime()
    limiter = limiter_on(fake, 10.0, margin=0.0)
    limiter.acquire()
    start = fake.now
    limiter.hold(2.0)
    sends = []
    for _ in range(4):
        limiter.acquire()
        sends.append(fake.now - start)
    # no call before the end of the hold, the first one exactly at it, then no burst
    assert sends == pytest.approx([2.0, 2.1, 2.2, 2.3])


def test_holds_overlap_rather_than_add_up() -> None:
    fake = FakeTime()
    limiter = limiter_on(fake, 10.0, margin=0.0)
    limiter.hold(2.0)
    limiter.hold(1.0)  # a shorter one asked meanwhile does not extend, nor shorten, the first
    fake.now += 0.5
    limiter.hold(1.0)  # ends at 1.5 < 2.0
    assert limiter.acquire() == pytest.approx(1.5)


def test_hold_stops_a_caller_already_asleep_on_its_slot() -> None:
    """Worker A reserved the slot at +0.1 s and sleeps; meanwhile worker B's call is answered
    429 with Retry-After 3: A must not send at +0.1 s but at the end of the hold."""
    fake = FakeTime()
    limiter: RateLimiter

    def sleep(seconds: float) -> None:
        if not fake.sleeps:  # A's first sleep: B's throttled answer arrives during it
            limiter.hold(3.0)
        fake.sleep(seconds)

    limiter = RateLimiter(10.0, margin=0.0, clock=fake.clock, sleep=sleep)
    start = fake.now
    limiter.acquire()  # the slot at +0.0
    limiter.acquire()  # A: slot at +0.1, held
    assert fake.now - start == pytest.approx(3.0)


def test_a_cut_reschedules_callers_already_asleep_on_an_old_slot() -> None:
    """Worker A holds the slot at +0.1 s (10/s) and sleeps; meanwhile an answer throttles a call
    sent after the last cut. A must not go at the old pace but at the new one (7/s) from the
    last call that went."""
    fake = FakeTime()
    limiter: RateLimiter

    def sleep(seconds: float) -> None:
        if not fake.sleeps:
            limiter.feedback(fake.now, throttled=True)
        fake.sleep(seconds)

    limiter = RateLimiter(10.0, margin=0.0, clock=fake.clock, sleep=sleep)
    start = fake.now
    limiter.acquire()  # goes at +0.0
    limiter.acquire()  # A
    assert limiter.cuts == 1
    assert fake.now - start == pytest.approx(1 / 7.0)


def test_hold_applies_without_a_ceiling() -> None:
    fake = FakeTime()
    limiter = limiter_on(fake, 0)
    limiter.hold(1.5)
    assert limiter.acquire() == pytest.approx(1.5)
    assert limiter.acquire() == 0.0


def test_zero_hold_is_nothing() -> None:
    fake = FakeTime()
    limiter = limiter_on(fake, 1.0)
    limiter.hold(0)
    assert limiter.acquire() == 0.0


# --- the adaptive rate -------------------------------------------------------------------------


def succeed(limiter: RateLimiter, fake: FakeTime, until: float) -> None:
    """Send and succeed at the limiter's pace until ``until`` (fake time)."""
    while fake.now < until:
        limiter.acquire()
        limiter.feedback(fake.now, throttled=False)


def test_throttle_cuts_the_rate_multiplicatively() -> None:
    fake = FakeTime()
    limiter = limiter_on(fake, 10.0, margin=0.0)
    limiter.acquire()
    limiter.feedback(fake.now, throttled=True)  # the first call: nothing measured yet
    assert limiter.rate == pytest.approx(7.0)
    assert (limiter.throttles, limiter.cuts) == (1, 1)
    assert limiter.refused_rate == pytest.approx(10.0)


def test_throttle_cuts_below_what_the_server_accepted() -> None:
    """Sending 49/s, the server took 30 in the second before the refused call: its limit."""
    fake = FakeTime()
    limiter = limiter_on(fake, 50.0)
    refused_after(limiter, fake, 30)
    assert limiter.refused_rate == pytest.approx(30.0)
    assert limiter.rate == pytest.approx(0.7 * 30)
    assert limiter.settled_rate() == pytest.approx(30 * 0.98)


def test_answers_to_calls_sent_before_a_cut_do_not_cut_again() -> None:
    fake = FakeTime()
    limiter = limiter_on(fake, 20.0, margin=0.0)
    in_flight = []
    for _ in range(5):
        limiter.acquire()
        in_flight.append(fake.now)
    for sent in in_flight:  # all five come back throttled: one overload, seen five times
        limiter.feedback(sent, throttled=True)
    assert (limiter.throttles, limiter.cuts) == (5, 1)
    assert limiter.rate == pytest.approx(14.0)
    limiter.acquire()
    limiter.feedback(fake.now, throttled=False)  # sent after the cut, and accepted
    limiter.acquire()
    limiter.feedback(fake.now, throttled=True)  # then refused: a new signal
    assert limiter.cuts == 2
    refused = limiter.refused_rate  # the pace, a little up the curve from 14 by then
    assert refused is not None and 14.0 < refused < 15.0
    assert limiter.rate == pytest.approx(refused * 0.7)


def test_refusals_right_after_a_cut_without_a_hold_are_the_same_overload() -> None:
    """With no ``Retry-After`` (a body-coded error_code 18) nobody holds after a cut, and the
    calls sent next go into the server's window that the calls before the cut filled: their
    refusals say nothing of the new pace. A refusal after an accepted call, a hold, or a
    window after the cut does."""
    fake = FakeTime()
    limiter = limiter_on(fake, 20.0, margin=0.0)
    limiter.acquire()
    limiter.feedback(fake.now, throttled=True)
    for _ in range(5):  # a run of refusals, each sent after the cut
        limiter.acquire()
        limiter.feedback(fake.now, throttled=True)
    assert (limiter.throttles, limiter.cuts) == (6, 1)
    assert limiter.rate == pytest.approx(14.0)
    fake.now += 1.0  # a window after the refusal that cut: a window of calls at the new pace
    limiter.acquire()
    limiter.feedback(fake.now, throttled=True)
    assert limiter.cuts == 2
    limiter.hold(0.2)  # the server asked: the calls after the hold are a new signal at once
    limiter.acquire()
    limiter.feedback(fake.now, throttled=True)
    assert limiter.cuts == 3


def test_recovers_while_calls_succeed_and_only_then() -> None:
    fake = FakeTime()
    limiter = limiter_on(fake, 10.0, margin=0.0, recovery=2.0)
    limiter.acquire()
    limiter.feedback(fake.now, throttled=True)
    assert limiter.rate == pytest.approx(7.0)
    fake.now += 5.0  # nothing succeeds meanwhile: no recovery on time alone
    assert limiter.rate == pytest.approx(7.0)
    fake.now -= 5.0
    rates = []
    for _ in range(40):
        fake.now += 0.05
        limiter.feedback(fake.now, throttled=False)
        rates.append(limiter.rate)
    assert rates == sorted(rates)  # only ever up
    assert rates[0] > 7.0
    assert limiter.rate == pytest.approx(10.0)  # the plateau after the recovery time


def test_probes_above_the_plateau_slowly_and_never_past_the_ceiling() -> None:
    fake = FakeTime()
    limiter = limiter_on(fake, 50.0, recovery=2.0, probe=60.0)
    refused_after(limiter, fake, 30)  # the server refused 30/s
    cut_at = fake.now
    plateau = 30 * 0.98
    seen = []
    while fake.now < cut_at + 300:
        limiter.acquire()
        limiter.feedback(fake.now, throttled=False)
        seen.append((fake.now - cut_at, limiter.rate))
    assert all(rate <= 49.0 + 1e-9 for _, rate in seen)  # the ceiling less the margin
    # at the plateau for a long while: not above the refused rate within a minute ...
    assert all(rate <= 30.0 for t, rate in seen if t <= 2.0 + 60.0 - 1.0)
    assert any(rate >= plateau * 0.999 for t, rate in seen if t <= 2.5)
    # ... but a server whose limit rose is found again, up to the ceiling: in what is sent
    # too, not only in the rate (no window is held to the old refused rate)
    assert seen[-1][1] == pytest.approx(49.0)
    assert limiter.settled_rate() == pytest.approx(49.0)
    assert sum(1 for t, _ in seen if t > 290.0) == pytest.approx(490, abs=2)


def test_settled_rate_is_stable_across_the_dip_after_a_cut() -> None:
    fake = FakeTime()
    limiter = limiter_on(fake, 50.0)
    assert limiter.settled_rate() == pytest.approx(49.0)  # never throttled: its pace
    refused_after(limiter, fake, 40)
    refused = limiter.refused_rate
    assert refused is not None
    assert limiter.rate < refused * 0.98
    assert limiter.settled_rate() == pytest.approx(refused * 0.98)


def test_without_a_ceiling_a_throttle_starts_the_pacing() -> None:
    fake = FakeTime()
    limiter = limiter_on(fake, 0)
    for _ in range(20):
        fake.now += 0.01  # 100 calls/s accepted
        limiter.acquire()
        limiter.feedback(fake.now, throttled=False)
    limiter.acquire()
    limiter.feedback(fake.now, throttled=True)
    assert limiter.refused_rate == pytest.approx(20.0)  # 20 accepted in the last second
    assert limiter.rate == pytest.approx(14.0)
    # paced from the last call that went, at once
    assert limiter.acquire() == pytest.approx(1 / 14.0)
    assert limiter.acquire() == pytest.approx(1 / 14.0)


# --- against the fake server's limiter shapes --------------------------------------------------


def drive(
    shape: str, server_rate: float, qps: float, seconds: float, phase: float = 0.0,
    retry_after: bool = True,
) -> tuple[RateLimiter, list[tuple[float, bool, float]]]:
    """One caller at the limiter's pace against a server limiter on the same fake clock; a
    refusal is retried (the next send) and its Retry-After holds. Returns the limiter and the
    sends as (seconds since start, accepted, the limiter's rate after the answer). ``phase``:
    where in a fixed window's second the run starts; ``retry_after=False``: the server's
    refusals name no wait (a body-coded error_code 18)."""
    fake = FakeTime(1000.0 + phase)
    server = make_limiter(shape, server_rate, clock=fake.clock)
    if not retry_after:
        server.retry_after = None
    limiter = limiter_on(fake, qps)
    start = fake.now
    sends = []
    while fake.now - start < seconds:
        limiter.acquire()
        sent = fake.now
        accepted = server.try_acquire()
        limiter.feedback(sent, throttled=not accepted)
        if not accepted and server.retry_after is not None:
            limiter.hold(server.retry_after)
        sends.append((sent - start, accepted, limiter.rate))
    return limiter, sends


def most_in_a_second(times: list[float]) -> int:
    return max(sum(1 for s in times if t <= s < t + 1.0) for t in times)


@pytest.mark.parametrize("shape", ["bucket", "fixed", "sliding"])
def test_at_the_servers_own_rate_nothing_is_refused(shape: str) -> None:
    limiter, sends = drive(shape, 50.0, 50.0, 20.0)
    assert all(accepted for _, accepted, _ in sends)
    assert most_in_a_second([t for t, _, _ in sends]) <= 50  # the ceiling, in any second
    assert limiter.settled_rate() == pytest.approx(49.0)


@pytest.mark.parametrize("shape", ["bucket", "fixed", "sliding"])
def test_converges_to_a_server_slower_than_the_ceiling(shape: str) -> None:
    limiter, sends = drive(shape, 30.0, 50.0, 60.0)
    refused = [t for t, accepted, _ in sends if not accepted]
    # within 10 s the pace is within 5% of the server's rate, and stays there
    assert all(0.95 * 30 <= rate <= 1.05 * 30 for t, _, rate in sends if t >= 10.0)
    assert len(refused) <= 0.02 * len(sends)
    assert not [t for t in refused if t >= 10.0]
    # what was sent from 10 s on, per second: the server's rate less a few per cent
    late = [t for t, _, _ in sends if t >= 10.0]
    assert 0.95 * 30 <= len(late) / (60.0 - 10.0) <= 30.0
    settled = limiter.settled_rate()
    assert settled is not None and 0.95 * 30 <= settled <= 30.0
    # the ceiling is never exceeded, even at the start
    assert most_in_a_second([t for t, _, _ in sends]) <= 50


def test_rate_never_exceeds_the_ceiling_whatever_the_answers() -> None:
    fake = FakeTime()
    limiter = limiter_on(fake, 20.0)
    pattern: Callable[[int], bool] = lambda n: n % 97 == 0  # noqa: E731 - a rare throttle
    for n in range(5000):
        limiter.acquire()
        limiter.feedback(fake.now, throttled=pattern(n))
        assert limiter.rate <= 20.0


@pytest.mark.parametrize("phase", [0.4, 0.6, 0.8, 0.95])
def test_fixed_windows_out_of_phase_are_found_by_a_cut_then_bisection(phase: float) -> None:
    """The hard case: starting late in a fixed window, each Retry-After hold ends mid-window,
    so the second before every refusal holds as many calls as were sent, whatever the limit:
    the count says nothing. A second refusal at a plateau cuts by 1 - beta, and bisection up
    between the pace that held and the lowest refused one finds the limit: each step set at
    once and confirmed ``confirm`` seconds later (climbing to each one as after a cut took
    until 35 s at some phases)."""
    limiter, sends = drive("fixed", 30.0, 50.0, 90.0, phase=phase)
    refused = [t for t, accepted, _ in sends if not accepted]
    # What the search costs: refusals, each a one-second hold of every caller, and seconds
    # below the limit. A pace counts as held only for seconds it was sent at, not for a hold
    # (a hold's second "confirmed" paces that a refusal then ended: 8-9 refusals at 0.4-0.6).
    assert len(refused) <= 7
    assert len(sends) >= 0.92 * 30 * 90
    assert all(0.95 * 30 <= rate <= 1.05 * 30 for t, _, rate in sends if t >= 20.0)
    settled = limiter.settled_rate()
    assert settled is not None and 0.95 * 30 <= settled <= 1.05 * 30


def within_5pct_from(sends: list[tuple[float, bool, float]], server_rate: float) -> float:
    """Seconds from which the pace stays within 5% of the server's rate (the issue's measure):
    the last answer after which it was outside, or 0."""
    outside = [t for t, _, rate in sends if not 0.95 * server_rate <= rate <= 1.05 * server_rate]
    return max(outside, default=0.0)


def test_fixed_windows_are_found_within_ten_seconds_at_every_start_phase() -> None:
    """Issue 12's slower server (fixed windows at 30, ``--qps 50``) over 40 start phases: the
    pace is within 5% of the server's from 10 s at worst and 4 s at the median. Before the
    window estimate (``RateLimiter._window_bounds``) set the bisection's bracket: 7.1 s at the
    median, 10.4 s at worst (three phases over 10 s); before a refused raise went straight to
    the next midpoint: 8.2 s and 12.2 s; before that session's two rules: 10.1 s and 17.6 s."""
    found, refusals = [], []
    for n in range(40):
        _, sends = drive("fixed", 30.0, 50.0, 60.0, phase=n / 40)
        found.append(within_5pct_from(sends, 30.0))
        refusals.append(sum(1 for _, accepted, _ in sends if not accepted))
    assert max(found) <= 10.0
    assert sorted(found)[len(found) // 2] <= 4.0
    assert sum(refusals) / len(refusals) <= 3.0 and max(refusals) <= 5


class InFlight(FakeTime):
    """A fake clock on which answers arrive while callers sleep: each is delivered (feedback,
    and its hold) at its own time, as a worker's answer reaches the shared limiter while the
    others wait for their slots."""

    def __init__(self, start: float) -> None:
        super().__init__(start)
        self.due: list[tuple[float, int, Callable[[], None]]] = []

    def at(self, when: float, deliver: Callable[[], None]) -> None:
        heapq.heappush(self.due, (when, len(self.sleeps) + len(self.due), deliver))

    def sleep(self, seconds: float) -> None:
        until = self.now + seconds
        while self.due and self.due[0][0] <= until:
            when, _, deliver = heapq.heappop(self.due)
            self.now = max(self.now, when)
            deliver()
        self.sleeps.append(seconds)
        self.now = until


def drive_in_flight(
    shape: str, server_rate: float, seconds: float, phase: float, seed: int,
    retry_after: bool = True,
) -> list[tuple[float, bool, float]]:
    """``drive`` with answers 30-40 ms in flight (the benchmark's latency): calls go on at the
    pace while earlier ones are unanswered, so a refusal is learnt after more calls went, and
    its hold lands on callers already asleep on their slots."""
    rng = random.Random(seed)
    fake = InFlight(1000.0 + phase)
    server = make_limiter(shape, server_rate, clock=fake.clock)
    if not retry_after:
        server.retry_after = None
    limiter = limiter_on(fake, 50.0)
    start = fake.now
    sends: list[tuple[float, bool, float]] = []
    while fake.now - start < seconds:
        limiter.acquire()
        sent, latency = fake.now, rng.uniform(0.03, 0.04)
        fake.now = sent + latency / 2  # the server decides half way
        accepted, retry_after = server.try_acquire(), server.retry_after
        fake.now = sent

        def answer(sent: float = sent, accepted: bool = accepted,
                   retry_after: float | None = retry_after) -> None:
            limiter.feedback(sent, throttled=not accepted)
            if not accepted and retry_after is not None:
                limiter.hold(retry_after)
            sends.append((fake.now - start, accepted, limiter.rate))

        fake.at(sent + latency, answer)
    return sends


def test_fixed_windows_with_answers_in_flight() -> None:
    """The same search as above with 30-40 ms answers in flight, as in the benchmark: within 5%
    of the server's rate from 10 s at worst and 6 s at the median, over 40 start phases
    (before the window estimate: 6.5 s at the median, 12.7 s at worst, 10 phases over 10 s;
    before a refused raise went straight to the next midpoint: 14.2 s at worst)."""
    found = []
    for n in range(40):
        sends = drive_in_flight("fixed", 30.0, 60.0, phase=n / 40, seed=n)
        found.append(within_5pct_from(sends, 30.0))
        assert sum(1 for _, accepted, _ in sends if not accepted) <= 0.02 * len(sends)
    assert max(found) <= 10.0
    assert sorted(found)[len(found) // 2] <= 6.0


@pytest.mark.parametrize("server_rate", [10.0, 20.0, 40.0])
@pytest.mark.parametrize("in_flight", [False, True])
def test_fixed_windows_at_other_limits_are_found_within_ten_seconds(
    server_rate: float, in_flight: bool
) -> None:
    """The window estimate assumes nothing about how far below ``--qps`` the limit is: fixed
    windows at 10, 20 and 40 calls/s are found within 10 s at every one of 40 start phases,
    on both clocks, with at most 2% of calls refused (before it, 10.2-13.2 s at worst)."""
    for n in range(40):
        if in_flight:
            sends = drive_in_flight("fixed", server_rate, 60.0, phase=n / 40, seed=n)
        else:
            sends = drive("fixed", server_rate, 50.0, 60.0, phase=n / 40)[1]
        assert within_5pct_from(sends, server_rate) <= 10.0, n
        assert sum(1 for _, accepted, _ in sends if not accepted) <= 0.02 * len(sends)


@pytest.mark.parametrize("server_rate", [10.0, 20.0, 30.0, 40.0])
@pytest.mark.parametrize("in_flight", [False, True])
def test_fixed_windows_without_retry_after_are_not_undercut(
    server_rate: float, in_flight: bool
) -> None:
    """Fixed windows that refuse with no ``Retry-After``: the calls after a cut are refused
    until the window ends, whatever the new pace. When each of those refusals cut again, the
    pace fell 49 -> 34 -> 24 -> 17 within half a second and stayed 11-26% under the limit at
    some start phases; now what the server accepts from 10 s on is within 7% of its limit at
    every one of 40 phases, on both clocks, with at most 2% of calls refused."""
    for n in range(40):
        if in_flight:
            sends = drive_in_flight(
                "fixed", server_rate, 60.0, phase=n / 40, seed=n, retry_after=False
            )
        else:
            sends = drive("fixed", server_rate, 50.0, 60.0, phase=n / 40, retry_after=False)[1]
        late = sum(1 for t, accepted, _ in sends if accepted and t >= 10.0)
        assert late >= 0.93 * server_rate * 50.0, n
        assert sum(1 for _, accepted, _ in sends if not accepted) <= 0.02 * len(sends), n


@pytest.mark.parametrize("in_flight", [False, True])
def test_fixed_windows_out_of_phase_are_not_cut_to_beta(in_flight: bool) -> None:
    """A count a hold's phase made suspect used to be cut by 1 - beta (to about 21 at a limit
    of 30) and climbed back by bisection; the window estimate brackets the limit instead, so
    after the first refusals the pace stays within 10% under it at every start phase."""
    for n in range(40):
        if in_flight:
            sends = drive_in_flight("fixed", 30.0, 60.0, phase=n / 40, seed=n)
        else:
            sends = drive("fixed", 30.0, 50.0, 60.0, phase=n / 40)[1]
        assert min(rate for t, _, rate in sends if t >= 3.5) >= 0.9 * 30, n


def test_refused_again_right_after_a_hold_at_a_pace_never_held_cuts_by_one_minus_beta() -> None:
    """The second refusal of a search, soon after the first one's hold, at a plateau no pace
    confirmed: not the jitter at a window's edge the margin step is for (a fixed window out
    of phase refuses whatever the count says), so no margin step first."""
    fake = FakeTime()
    limiter = limiter_on(fake, 50.0)
    refused_after(limiter, fake, 49)  # the count is the pace: the pace itself was refused
    assert limiter.settled_rate() == pytest.approx(49.0 * 0.98)
    limiter.hold(1.0)
    succeed(limiter, fake, fake.now + 2.5)  # climbed to the plateau, not yet confirmed there
    pace = limiter.rate
    assert pace == pytest.approx(49.0 * 0.98, rel=0.01)
    refused_after(limiter, fake, 0)
    assert limiter.rate == pytest.approx(pace * 0.7, rel=0.01)


def refused_again_after_a_hold() -> tuple[FakeTime, RateLimiter]:
    """A limiter (ceiling 50) refused at the pace (plateau 48.02), held, then refused again
    soon after the hold (by 1 - beta, to 33.6) and held again."""
    fake = FakeTime()
    limiter = limiter_on(fake, 50.0)
    refused_after(limiter, fake, 49)
    limiter.hold(1.0)
    succeed(limiter, fake, fake.now + 2.5)
    refused_after(limiter, fake, 0)
    limiter.hold(1.0)
    return fake, limiter


def at_a_bisection_raise() -> tuple[FakeTime, RateLimiter]:
    """``refused_again_after_a_hold``, then 33.6 held and raised half way up to 48.02."""
    fake, limiter = refused_again_after_a_hold()
    succeed(limiter, fake, fake.now + 3.5)
    return fake, limiter


def test_a_count_below_the_pace_after_a_pace_held_is_taken_with_the_margin() -> None:
    """Refused at a bisection's raise, having held the pace below it: the second before the
    refusal was sent at a steady pace, so its count is the limit (not a count a hold's phase
    made suspect, which is cut by beta)."""
    fake, limiter = at_a_bisection_raise()
    assert limiter.rate == pytest.approx((33.6 + 48.02) / 2, rel=0.01)
    # The server takes 38 a second: a count clearly below the pace, with a pace held.
    fake.now += 1.0
    for _ in range(38):
        fake.now += 1 / 38
        limiter.acquire()
        limiter.feedback(fake.now, throttled=False)
    limiter.acquire()
    limiter.feedback(fake.now, throttled=True)
    assert limiter.settled_rate() == pytest.approx(38 * 0.98, rel=0.01)


def test_a_refused_raise_goes_straight_to_the_next_midpoint_down() -> None:
    """Bisection: the pace that held still holds, so a refused raise need not go back to it and
    wait ``confirm`` again before the next, lower raise; it goes to that raise at once."""
    fake, limiter = at_a_bisection_raise()
    raised = (33.6 + 48.02) / 2
    succeed(limiter, fake, fake.now + 1.0)  # a steady second at the raise: the count is the pace
    refused_after(limiter, fake, 0)
    assert limiter.rate == pytest.approx((33.6 + raised) / 2, rel=0.01)
    limiter.hold(1.0)
    succeed(limiter, fake, fake.now + 3.5)  # that held: half way up to the refused raise
    assert limiter.rate == pytest.approx((33.6 + raised) / 2 / 2 + raised / 2, rel=0.01)
    assert limiter.settled_rate() == pytest.approx(limiter.rate)


def test_a_quiet_spell_forgets_what_was_refused() -> None:
    """A refusal long after the last one starts a new search from the pace it hit, with the
    smallest step: the limit may have moved since."""
    fake = FakeTime()
    limiter = limiter_on(fake, 50.0)
    refused_after(limiter, fake, 30)  # limit 30: plateau 29.4
    succeed(limiter, fake, fake.now + 30.0)
    assert limiter.rate == pytest.approx(29.4, rel=0.01)
    limiter.acquire()
    limiter.feedback(fake.now, throttled=True)  # at the plateau, after a quiet spell
    assert limiter.rate == pytest.approx(limiter.refused_rate * 0.98)  # type: ignore[operator]
    assert limiter.settled_rate() == pytest.approx(limiter.rate)


def went_with_a_late_wake(lateness: float) -> list[float]:
    """When 30 calls at 10/s (margin 0.02) went, the fourth caller waking ``lateness`` s late."""
    fake = FakeTime()

    def sleep(seconds: float) -> None:
        fake.sleep(seconds + (lateness if len(fake.sleeps) == 3 else 0.0))

    limiter = RateLimiter(10.0, margin=0.02, clock=fake.clock, sleep=sleep)
    went = []
    for _ in range(30):
        limiter.acquire()
        went.append(fake.now)
    return went


def test_a_call_that_went_late_pushes_the_call_a_window_later() -> None:
    """The even pace keeps qps calls in any second only if every call goes on time; a caller
    that woke 50 ms late must not leave the margin of the call qps places later eaten up."""
    went = went_with_a_late_wake(0.05)
    for i in range(len(went) - 10):  # ten calls a second at most, with 18 ms to spare
        assert went[i + 10] - went[i] >= 1.018 - 1e-9
    # and the pace itself is kept: nothing else was delayed beyond the late call's own shift
    assert went[-1] - went[0] == pytest.approx(29 / 9.8 + 0.05, abs=0.06)
