"""The limiter's contract where the mutation audit of ``catalog/api/pacing.py`` found it unpinned
(docs in /work/notes/s24_mut_pacing.md): what ``acquire`` returns, holds that end before a slot,
several workers on one schedule, the per-window bound, and how a refusal's rate is counted.

All on fake clocks; several workers run as real threads on one virtual clock, one at a time.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable

import pytest

from catalog.api.pacing import RateLimiter
from tests.test_rate_adaptive import (
    InFlight,
    at_a_bisection_raise,
    drive,
    drive_in_flight,
    limiter_on,
    refused_after,
    refused_again_after_a_hold,
    succeed,
    went_with_a_late_wake,
    within_5pct_from,
)
from tests.test_retry import FakeTime

# --- small contract points ---------------------------------------------------------------------


def test_repr_names_the_ceiling_and_the_pace() -> None:
    fake = FakeTime()
    limiter = limiter_on(fake, 10.0, margin=0.0)
    limiter.acquire()
    limiter.feedback(fake.now, throttled=True)
    assert repr(limiter) == "RateLimiter(qps=10, rate=7)"


def test_now_is_the_limiters_own_clock() -> None:
    """The client reports send times read from ``now``: they must be on the clock the limiter
    counts with, or no answer would fall in the second before a refusal."""
    fake = FakeTime(5.0)
    assert limiter_on(fake, 10.0).now() == 5.0


def test_acquire_returns_every_second_slept_across_a_hold() -> None:
    """A caller asleep on its slot when a hold comes sleeps again until the hold's end; what it
    reports is the whole wait, not the last sleep."""
    fake = FakeTime()
    limiter: RateLimiter

    def sleep(seconds: float) -> None:
        if not fake.sleeps:
            limiter.hold(3.0)
        fake.sleep(seconds)

    limiter = RateLimiter(10.0, margin=0.0, clock=fake.clock, sleep=sleep)
    limiter.acquire()
    assert limiter.acquire() == pytest.approx(3.0)
    assert sum(fake.sleeps) == pytest.approx(3.0)


def test_a_hold_that_ended_before_a_callers_slot_does_not_delay_it() -> None:
    """Holds stop callers until their end, not beyond: one asleep on a slot past a short hold
    goes at its slot."""
    fake = FakeTime()
    limiter: RateLimiter

    def sleep(seconds: float) -> None:
        if not fake.sleeps:
            limiter.hold(0.2)  # ends long before the slot at +1.0
        fake.sleep(seconds)

    limiter = RateLimiter(1.0, margin=0.0, clock=fake.clock, sleep=sleep)
    start = fake.now
    limiter.acquire()
    assert limiter.acquire() == pytest.approx(1.0)
    assert fake.now - start == pytest.approx(1.0)


def test_a_zero_hold_does_not_count_as_a_hold_for_the_next_cut() -> None:
    """Refused again at a plateau after a ``Retry-After: 0``: no hold was made, so this is the
    lone refusal at a window's edge (the margin step), not one soon after a hold (1 - beta)."""
    fake = FakeTime()
    limiter = limiter_on(fake, 50.0)
    refused_after(limiter, fake, 49)
    limiter.hold(0)
    succeed(limiter, fake, fake.now + 2.5)
    pace = limiter.rate
    refused_after(limiter, fake, 0)
    assert limiter.rate == pytest.approx(pace * 0.98, rel=0.01)


# --- the per-window bound ----------------------------------------------------------------------


def test_a_late_call_after_a_refusal_keeps_the_refused_rate_in_any_window() -> None:
    """After the server refused 30/s the window bound is 30 calls, not the ceiling's 50: a
    caller that woke 50 ms late must not let the 30th call after it go within a second."""
    fake = FakeTime()
    late: set[int] = set()

    def sleep(seconds: float) -> None:
        fake.sleep(seconds + (0.05 if len(fake.sleeps) in late else 0.0))

    limiter = RateLimiter(50.0, clock=fake.clock, sleep=sleep)
    refused_after(limiter, fake, 30)
    succeed(limiter, fake, fake.now + 3.0)  # at the plateau, 29.4/s
    assert limiter.rate == pytest.approx(29.4)
    late.add(len(fake.sleeps) + 5)
    went = []
    for _ in range(80):
        limiter.acquire()
        limiter.feedback(fake.now, throttled=False)
        went.append(fake.now)
    assert min(went[i + 30] - went[i] for i in range(len(went) - 30)) >= 1.0


def test_a_probe_up_to_a_ceiling_whose_pace_rounds_below_it_keeps_every_call() -> None:
    """At --qps 7 the pace is 6.86/s and a window may hold 7 calls: once the probe is back at
    the ceiling after a refusal, float rounding of 7 * 0.98 / 0.98 must not make the bound 6
    (6 calls in every 1.018 s)."""
    fake = FakeTime()
    limiter = limiter_on(fake, 7.0)
    refused_after(limiter, fake, 3)  # the server took 3 a second
    assert limiter.refused_rate == pytest.approx(3.0)
    cut_at = fake.now
    sends = []
    while fake.now < cut_at + 300:
        limiter.acquire()
        limiter.feedback(fake.now, throttled=False)
        sends.append(fake.now)
    assert limiter.rate == pytest.approx(7 * 0.98)
    assert sum(1 for t in sends if t > cut_at + 290) == pytest.approx(68.6, abs=1)


def test_lateness_within_the_tenth_of_the_margin_moves_no_call() -> None:
    """The window bound keeps 0.9 of the margin; the other tenth absorbs lateness: a call 1 ms
    late at 10/s (2 ms of margin) moves no later call off its slot."""
    went = went_with_a_late_wake(0.001)
    step = 1 / 9.8
    assert [round(t - went[0] - i * step, 9) for i, t in enumerate(went)] == [
        0.001 if i == 4 else 0.0 for i in range(30)
    ]


# --- several workers on one schedule ------------------------------------------------------------


class Workers:
    """Workers as real threads on one virtual clock, run one at a time: the clock moves to the
    earliest wake-up only once every worker sleeps or is done, so a run is exact and the same
    every time. ``late(n)`` is how late the ``n``-th sleep (from 0) wakes."""

    def __init__(self, start: float = 1000.0, late: Callable[[int], float] = lambda n: 0.0):
        self.now = start
        self.late = late
        self.sleeps = 0
        self._cv = threading.Condition()
        self._queue: list[tuple[float, int, int]] = []  # (wake-up, order, worker)
        self._turn = -1
        self._ids = threading.local()
        self.errors: list[BaseException] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        me = self._ids.n
        with self._cv:
            wake = self.now + seconds + self.late(self.sleeps)
            self.sleeps += 1
            heapq.heappush(self._queue, (wake, self.sleeps, me))
            self._next()
            self._cv.wait_for(lambda: self._turn == me)

    def _next(self) -> None:
        if self._queue:
            wake, _, who = heapq.heappop(self._queue)
            self.now = max(self.now, wake)
            self._turn = who
        else:
            self._turn = -1
        self._cv.notify_all()

    def run(self, *jobs: Callable[[], None]) -> None:
        def body(n: int, job: Callable[[], None]) -> None:
            self._ids.n = n
            with self._cv:
                self._cv.wait_for(lambda: self._turn == n)
            try:
                job()
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                self.errors.append(exc)
            with self._cv:
                self._next()

        threads = [threading.Thread(target=body, args=(n, job)) for n, job in enumerate(jobs)]
        for t in threads:
            t.start()
        with self._cv:
            for n in range(len(jobs)):
                heapq.heappush(self._queue, (self.now, -len(jobs) + n, n))
            self._next()
        for t in threads:
            t.join(timeout=10)
        assert not any(t.is_alive() for t in threads)
        if self.errors:
            raise self.errors[0]


def test_several_workers_keep_the_window_bound_after_a_late_call() -> None:
    """Three workers share the pace, so two slots are always taken by callers still asleep when
    the next one reserves: the call a window's worth after one that went 50 ms late is still
    kept a window (and 0.9 of the margin) after it."""
    workers = Workers(late=lambda n: 0.05 if n == 6 else 0.0)
    limiter = RateLimiter(10.0, margin=0.02, clock=workers.clock, sleep=workers.sleep)
    went: list[float] = []

    def job() -> None:
        for _ in range(12):
            limiter.acquire()
            went.append(workers.now)

    workers.run(job, job, job)
    went.sort()
    assert len(went) == 36
    assert min(went[i + 10] - went[i] for i in range(len(went) - 10)) >= 1.018 - 1e-9
    # and the window bound costs no more than the late call's own shift
    assert went[-1] - went[0] == pytest.approx(35 / 9.8 + 0.05, abs=0.06)


def test_after_a_cut_the_schedule_never_moves_back() -> None:
    """Worker 0's call (slot +0.1) wakes late, after worker 1's (slot +0.2) went, and is refused:
    the new pace, 7/s, starts from the latest slot that went (+0.2), not from the late caller's
    earlier one."""
    workers = Workers(late=lambda n: 0.15 if n == 0 else 0.0)
    limiter = RateLimiter(10.0, margin=0.0, clock=workers.clock, sleep=workers.sleep)
    start = workers.now
    sent: dict[int, list[float]] = {0: [], 1: []}

    def worker0() -> None:
        limiter.acquire()  # +0.0
        limiter.feedback(workers.now, throttled=False)
        limiter.acquire()  # slot +0.1, wakes at +0.25
        sent[0].append(workers.now - start)
        limiter.feedback(workers.now, throttled=True)

    def worker1() -> None:
        for _ in range(2):
            limiter.acquire()
            sent[1].append(workers.now - start)
            limiter.feedback(workers.now, throttled=False)

    workers.run(worker0, worker1)
    assert sent[0] == pytest.approx([0.25])
    assert limiter.cuts == 1
    assert sent[1] == pytest.approx([0.2, 0.2 + 1 / 7])


# --- how a refusal's rate is counted ------------------------------------------------------------


def accepted_at(limiter: RateLimiter, fake: FakeTime, times: list[float]) -> None:
    for t in times:
        fake.now = t
        limiter.feedback(t, throttled=False)


def test_a_call_exactly_a_window_before_the_refused_one_is_not_in_its_window() -> None:
    """The second before a refused call is (t - 1, t], as a sliding window counts it: a call
    exactly a second older has left it."""
    fake = FakeTime()
    limiter = limiter_on(fake, 0)
    accepted_at(limiter, fake, [1000.0, 1000.25, 1000.5, 1000.75])
    fake.now = 1001.0
    limiter.feedback(1001.0, throttled=True)
    assert limiter.refused_rate == pytest.approx(3.0)


@pytest.mark.parametrize(("accepted", "refused"), [(2, 49.0), (3, 3.0)])
def test_three_accepted_calls_are_the_least_that_measure_a_limit(
    accepted: int, refused: float
) -> None:
    """Fewer than three accepted calls in the second before a refusal say nothing of the
    server's limit (the start of a run, a lull): the pace itself was refused."""
    fake = FakeTime()
    limiter = limiter_on(fake, 50.0)
    accepted_at(limiter, fake, [1000.0 + 0.1 * k for k in range(accepted)])
    fake.now += 0.1
    limiter.feedback(fake.now, throttled=True)
    assert limiter.refused_rate == pytest.approx(refused)


def test_without_a_ceiling_a_throttle_at_the_first_call_paces_at_beta() -> None:
    """Nothing accepted yet, no ceiling: the refused rate is taken as one call a second, not 0
    (which would put the pace on its floor)."""
    fake = FakeTime()
    limiter = limiter_on(fake, 0)
    limiter.acquire()
    limiter.feedback(fake.now, throttled=True)
    assert limiter.refused_rate == pytest.approx(1.0)
    assert limiter.rate == pytest.approx(0.7)


def at_a_plateau_after_a_margin_step() -> tuple[FakeTime, RateLimiter]:
    """Refused at 30/s (plateau 29.4), climbed back, refused again at the plateau with no hold:
    a margin step (the lone refusal at a window's edge), to 28.81, with no dip."""
    fake = FakeTime()
    limiter = limiter_on(fake, 50.0)
    refused_after(limiter, fake, 30)
    succeed(limiter, fake, fake.now + 3.0)
    refused_after(limiter, fake, 0)
    assert limiter.settled_rate() == pytest.approx(29.4 * 0.98)
    return fake, limiter


def refused_after_a_lull(limiter: RateLimiter, fake: FakeTime, lull: float, busy: float) -> int:
    """Nothing sent for ``lull`` seconds, then ``busy`` seconds of calls at the pace, then one
    refused; returns how many were accepted."""
    fake.now += lull
    before = fake.now
    sent = 0
    while fake.now < before + busy:
        limiter.acquire()
        limiter.feedback(fake.now, throttled=False)
        sent += 1
    limiter.acquire()
    limiter.feedback(fake.now, throttled=True)
    return sent


def test_refused_again_at_a_plateau_without_a_hold_counts_what_was_accepted_since() -> None:
    """A bucket refills in a lull and its saved tokens inflate the second before the next
    refusal; with no hold since the last refusal, what it accepted since then is its rate."""
    fake, limiter = at_a_plateau_after_a_margin_step()
    last = fake.now
    sent = refused_after_a_lull(limiter, fake, 1.5, 1.0)
    since = sent / (fake.now - last)
    assert since < 0.5 * 28.81
    assert limiter.refused_rate == pytest.approx(since)
    assert limiter.settled_rate() == pytest.approx(since * 0.98)


def test_with_a_hold_since_the_last_refusal_the_count_is_the_second_before() -> None:
    """A hold wasted time a window server cannot give back: the count since the last refusal
    says nothing then, and a refusal at about the pace is the pace refused."""
    fake, limiter = at_a_plateau_after_a_margin_step()
    limiter.hold(0.5)
    refused_after_a_lull(limiter, fake, 1.5, 1.0)
    assert limiter.refused_rate == pytest.approx(29.4 * 0.98, rel=1e-3)


def test_after_a_dip_the_count_since_the_cut_is_not_a_rate() -> None:
    """After a first cut the pace dips and climbs: what was accepted since then is the climb,
    not a bucket's rate; the refusal is counted over its own second (the pace refused)."""
    fake = FakeTime()
    limiter = limiter_on(fake, 50.0)
    refused_after(limiter, fake, 30)
    refused_after_a_lull(limiter, fake, 1.5, 1.0)
    assert limiter.refused_rate == pytest.approx(limiter.settled_rate() / 0.98)  # type: ignore[operator]
    assert limiter.refused_rate > 28.0  # type: ignore[operator]


@pytest.mark.parametrize(("lull", "busy"), [(0.3, 0.3), (12.0, 1.0)])
def test_the_count_since_the_last_refusal_needs_a_window_and_no_quiet_spell(
    lull: float, busy: float
) -> None:
    """Less than a window since the last refusal, or more than a quiet spell, the count since it
    is not used: the second before the refusal is (here the pace itself, or about it)."""
    fake, limiter = at_a_plateau_after_a_margin_step()
    refused_after_a_lull(limiter, fake, lull, busy)
    refused = limiter.refused_rate
    assert refused is not None
    if lull > 10.0:
        assert refused == pytest.approx(29.4 * 0.98, rel=1e-3)
    else:  # the second before: the calls after the lull and the last ones before it
        assert refused == pytest.approx(20.0)


def test_a_ceiling_below_the_floor_is_still_the_ceiling() -> None:
    """``--qps 0.05`` (one call in 20 s) is below the default floor of the adaptive pace (0.1/s):
    the ceiling wins, with its margin, before and after a throttle."""
    fake = FakeTime()
    limiter = limiter_on(fake, 0.05)
    assert limiter.rate == pytest.approx(0.049)
    assert [limiter.acquire() for _ in range(3)] == pytest.approx([0.0, 1 / 0.049, 1 / 0.049])
    limiter.feedback(fake.now, throttled=True)
    for _ in range(20):
        limiter.acquire()
        limiter.feedback(fake.now, throttled=False)
        assert limiter.rate <= 0.049
    settled = limiter.settled_rate()
    assert settled is not None and settled <= 0.049


# --- the cut rules -------------------------------------------------------------------------------


def test_a_cut_paces_from_the_last_call_that_went_not_from_the_answer() -> None:
    """A refusal answered 50 ms after its call went: the new pace (7/s) counts from that call,
    so the caller asleep on the next slot goes 1/7 s after it, not 1/7 s after the answer."""
    fake = InFlight(1000.0)
    limiter = RateLimiter(10.0, margin=0.0, clock=fake.clock, sleep=fake.sleep)
    limiter.acquire()
    sent = fake.now
    fake.at(sent + 0.05, lambda: limiter.feedback(sent, throttled=True))
    limiter.acquire()
    assert limiter.cuts == 1
    assert fake.now - sent == pytest.approx(1 / 7)


def test_after_a_quiet_spell_a_refusal_steps_down_from_where_it_was_refused() -> None:
    """The limit rose: the slow probe went past the old refused rate (30) without a throttle for
    two minutes. A refusal now starts a new search from its own pace (the margin step), not
    back to the pace that held under the old limit."""
    fake = FakeTime()
    limiter = limiter_on(fake, 50.0)
    refused_after(limiter, fake, 30)
    succeed(limiter, fake, fake.now + 130.0)
    pace = limiter.rate
    assert pace > 34.0
    refused_after(limiter, fake, 0)
    assert limiter.rate == pytest.approx(pace * 0.98, rel=1e-3)


def test_bisection_stops_within_twice_the_margin_of_the_lowest_refused_pace() -> None:
    """From 33.6 held and 48.02 refused, at 40.8: 44.4, then 46.2 (within 4% of 48.02): the limit is
    found, and the pace stays there instead of raising again into a likely refusal."""
    fake, limiter = at_a_bisection_raise()
    rates = []
    for _ in range(5):
        succeed(limiter, fake, fake.now + 2.5)
        rates.append(limiter.rate)
    assert rates[:2] == pytest.approx([44.42, 46.22], rel=1e-3)
    assert rates[-1] == pytest.approx(rates[1], rel=1e-4)
    assert rates[1] >= 48.02 * 0.96


def test_a_plateau_climbed_to_holds_only_confirm_seconds_after_the_climb_and_the_hold() -> None:
    """After a dip the pace climbs for ``recovery`` (2 s) and must then be kept ``confirm`` (2 s)
    of sending, the hold's seconds not counted: refused 3.5 s after the cut (0.5 s held), it
    has not held, and a refusal soon after a hold at a plateau no pace confirmed cuts by
    1 - beta."""
    fake = FakeTime()
    limiter = limiter_on(fake, 50.0)
    refused_after(limiter, fake, 30)
    limiter.hold(0.5)
    succeed(limiter, fake, fake.now + 3.5)
    assert limiter.rate == pytest.approx(29.4, rel=1e-4)
    refused_after(limiter, fake, 0)
    assert limiter.rate == pytest.approx(29.4 * 0.7, rel=1e-3)


def test_refused_at_about_the_pace_once_a_pace_held_is_a_margin_step_even_after_a_hold() -> None:
    """29.4 held, then refused (back under it, to 28.81); refused again at 28.81 soon after a
    hold: a pace held since the last quiet spell, so the limit is near: the margin step, not
    1 - beta."""
    fake = FakeTime()
    limiter = limiter_on(fake, 50.0)
    refused_after(limiter, fake, 30)
    limiter.hold(1.0)
    succeed(limiter, fake, fake.now + 6.0)
    refused_after(limiter, fake, 0)
    assert limiter.rate == pytest.approx(29.4 * 0.98, rel=1e-3)
    limiter.hold(1.0)
    succeed(limiter, fake, fake.now + 2.6)
    refused_after(limiter, fake, 0)
    assert limiter.rate == pytest.approx(29.4 * 0.98 * 0.98, rel=1e-3)


def test_refusals_that_go_on_after_a_margin_step_cut_by_one_minus_beta() -> None:
    """The margin step is for a lone refusal at a window's edge. Refused again at the pace half
    a second after it, with no hold and no pace held: the plateau itself is too high."""
    fake = FakeTime()
    limiter = limiter_on(fake, 200.0)
    refused_after(limiter, fake, 150)
    succeed(limiter, fake, fake.now + 3.0)
    refused_after(limiter, fake, 0)  # alone: the margin step
    pace = limiter.rate
    assert pace == pytest.approx(147.0 * 0.98, rel=1e-3)
    succeed(limiter, fake, fake.now + 0.5)
    refused_after(limiter, fake, 0)
    assert limiter.refused_rate == pytest.approx(pace)
    assert limiter.rate == pytest.approx(pace * 0.7, rel=1e-3)


def test_refusals_that_go_on_after_a_cut_on_a_suspect_count_cut_by_one_minus_beta() -> None:
    """Soon after a hold the server's count was suspect (beta); refused again at that pace a
    second later with no hold: the refusals go on, by 1 - beta, not the margin step."""
    fake = FakeTime()
    limiter = limiter_on(fake, 50.0)
    refused_after(limiter, fake, 49)
    limiter.hold(1.0)
    succeed(limiter, fake, fake.now + 2.5)
    start = fake.now
    accepted_at(limiter, fake, [start + 0.5 + k / 60 for k in range(30)])
    fake.now += 0.01
    limiter.feedback(fake.now, throttled=True)  # 30 after a pause, and the last one before it
    assert limiter.refused_rate == pytest.approx(31.0)
    succeed(limiter, fake, fake.now + 1.2)
    refused_after(limiter, fake, 0)
    refused = limiter.refused_rate
    assert refused is not None
    assert limiter.rate == pytest.approx(refused * 0.7, rel=1e-3)


def test_a_fixed_windows_estimate_sets_the_bracket_it_bisects() -> None:
    """Fixed windows at 30, a run started half way into a window: refused at the pace (49), then
    again soon after the hold, where the count says nothing. The window estimate fits phases
    where 28 to 47 calls make a window: the pace goes to the middle of that bracket, its
    floor (28, less the margin) counting as held and its top as refused, and the next refusal
    bisects between that floor and the next top (33) instead of starting over."""
    _, sends = drive("fixed", 30.0, 50.0, 6.0, phase=0.5)
    after_refusals = [rate for _, accepted, rate in sends if not accepted]
    assert after_refusals[:3] == pytest.approx(
        [49 * 0.7, (28 * 0.98 + 47) / 2, (28 * 0.98 + 33) / 2], rel=1e-3
    )


def test_the_count_since_the_last_refusal_runs_from_when_that_call_was_sent() -> None:
    """The last refusal's answer came back eight calls after the refused call went: the bucket
    took those eight calls after it was empty, so they count towards its rate."""
    fake = FakeTime()
    limiter = limiter_on(fake, 50.0)
    refused_after(limiter, fake, 30)
    succeed(limiter, fake, fake.now + 3.0)
    limiter.acquire()
    refused_sent = fake.now
    for _ in range(8):
        limiter.acquire()
        limiter.feedback(fake.now, throttled=False)
    limiter.feedback(refused_sent, throttled=True)  # answered late: the margin step
    assert limiter.rate == pytest.approx(29.4 * 0.98, rel=1e-3)
    sent = 8 + refused_after_a_lull(limiter, fake, 1.5, 1.0)
    assert limiter.refused_rate == pytest.approx(sent / (fake.now - refused_sent))


def test_a_refusal_right_at_a_bisection_raise_moves_the_plateau_without_a_dip() -> None:
    """A plateau set at once (a bisection's raise, 33.6 to 40.8) is a plateau from that moment:
    a refusal answered before any call went at the raise moves it, with no dip to beta."""
    fake, limiter = refused_again_after_a_hold()
    held = limiter.rate
    while (limiter.settled_rate() or 0.0) < held * 1.1:  # until the raise
        limiter.acquire()
        limiter.feedback(fake.now, throttled=False)
    assert limiter.settled_rate() == pytest.approx((33.6 + 48.02) / 2, rel=1e-3)
    refused_after(limiter, fake, 0)  # sent at the pace that held, answered right away
    assert limiter.rate == pytest.approx(held * 0.98, rel=1e-3)
    assert limiter.settled_rate() == pytest.approx(limiter.rate)


def test_going_back_to_a_pace_that_held_never_goes_below_the_floor() -> None:
    """Rule 1 goes back to the pace that held, or to the margin below the refused rate if that
    is lower: with the pace held at the floor (``min_rate``) and the slow probe just above it
    refused, the margin below the refused rate is under the floor, and the floor wins, as in
    every other rule."""
    fake = FakeTime()
    limiter = limiter_on(fake, 10.0, min_rate=9.7)
    refused_after(limiter, fake, 0)  # the pace, 9.8, refused: the plateau is the floor
    assert limiter.rate == pytest.approx(9.7)
    limiter.hold(1.0)
    succeed(limiter, fake, fake.now + 7.0)  # 9.7 held, and the probe has crept above it
    probe = limiter.rate
    assert 9.7 < probe < 9.7 / 0.98
    fake.now += 1.0  # a lull: the count says nothing, the probe's pace itself is refused
    refused_after(limiter, fake, 0)
    assert limiter.refused_rate == pytest.approx(probe)
    assert limiter.rate == pytest.approx(9.7)
    assert limiter.settled_rate() == pytest.approx(9.7)
    assert limiter.acquire() == pytest.approx(1 / 9.7)


# --- refusals of the overload already cut for (``RateLimiter._same_overload``) -------------------


def answered(
    *answers: tuple[float, float, bool],
    limiter: RateLimiter | None = None,
    fake: FakeTime | None = None,
) -> tuple[FakeTime, RateLimiter]:
    """Answers given in order, each (when it came, when its call was sent, throttled), to
    ``limiter`` on ``fake`` (by default a new one: ceiling 20, no margin), with no hold."""
    fake = fake or FakeTime()
    limiter = limiter or limiter_on(fake, 20.0, margin=0.0)
    for at, sent, throttled in answers:
        fake.now = at
        limiter.feedback(sent, throttled=throttled)
    return fake, limiter


def test_the_same_overload_spans_less_than_a_window_from_the_refused_call() -> None:
    """With no hold and nothing accepted since the cut, a refusal of a call sent less than a
    window after the refused one is the overload already cut for; one sent a whole window
    after it went in a window of its own."""
    fake, limiter = answered((1000.0, 1000.0, True), (1000.999, 1000.999, True))
    assert (limiter.throttles, limiter.cuts) == (2, 1)
    answered((1001.0, 1001.0, True), limiter=limiter, fake=fake)
    assert (limiter.throttles, limiter.cuts) == (3, 2)


def test_the_same_overloads_window_runs_from_when_the_refused_call_was_sent() -> None:
    """The refusal that cut came back half a second after its call went: the server's window
    is counted from the send, so a call sent 1.25 s after that one is a new signal, although
    it went only 0.75 s after the answer."""
    _, limiter = answered((1000.5, 1000.0, True), (1001.25, 1001.25, True))
    assert limiter.cuts == 2


def test_a_call_accepted_while_the_refusal_that_cut_was_in_flight_ends_the_overload() -> None:
    """A call sent after the refused one, before its answer came, and accepted: the server's
    window had room again, so a later refusal is about the new pace."""
    _, limiter = answered(
        (1000.05, 1000.0, True), (1000.08, 1000.03, False), (1000.3, 1000.3, True)
    )
    assert limiter.cuts == 2


def test_a_call_accepted_after_the_refused_one_was_sent_does_not_make_it_new() -> None:
    """Answers may come back out of order: a call sent after the refused one and accepted
    first shows the server's window had room only after that refusal was sent."""
    fake, limiter = answered(
        (1000.0, 1000.0, True),
        (1000.25, 1000.22, False),
        (1000.3, 1000.2, True),  # sent before the accepted one: the same overload
    )
    assert (limiter.throttles, limiter.cuts) == (2, 1)
    answered((1000.3, 1000.3, True), limiter=limiter, fake=fake)  # sent after it: a new one
    assert (limiter.throttles, limiter.cuts) == (3, 2)


def test_any_call_accepted_between_ends_the_overload_whatever_was_answered_last() -> None:
    """Answers come back out of order: a call sent after the refused one that cut, and
    accepted, ends the overload for a refusal sent after it, even when the last answer that
    came was to a call sent later still."""
    _, limiter = answered(
        (1000.0, 1000.0, True),
        (1000.15, 1000.1, False),
        (1000.45, 1000.4, False),
        (1000.5, 1000.3, True),
    )
    assert limiter.cuts == 2


def test_an_accepted_call_on_the_same_clock_reading_as_a_refused_one_proves_nothing() -> None:
    """On a coarse clock (15.6 ms on Windows) two workers' calls share a reading, and which one
    the server counted first is unknown. A call accepted on the refused call's reading, or on
    the later refusal's, is not taken as a window that had room since: a missed cut costs a
    refusal more, a wrong one 30% of the pace."""
    _, limiter = answered(
        (1000.0, 1000.0, True),
        (1000.0, 1000.0, False),
        (1000.3, 1000.3, False),
        (1000.3, 1000.3, True),
    )
    assert (limiter.throttles, limiter.cuts) == (2, 1)


def test_a_call_sent_on_the_clock_reading_of_the_cut_was_sent_before_it() -> None:
    """Held after a cut, the overload rule does not apply, but TCP's does: a refusal of a call
    sent on the very reading at which the cut was made was sent at the old pace."""
    fake, limiter = answered((1000.0, 1000.0, True))
    limiter.hold(1.0)
    answered((1000.0, 1000.0, True), limiter=limiter, fake=fake)
    assert (limiter.throttles, limiter.cuts) == (2, 1)


def test_a_cut_ends_what_the_hold_before_it_said() -> None:
    """Refused, held, refused again after the hold (a new signal), and this time no hold (the
    server mixes a Retry-After 429 with body-coded error_code 18): a refusal right after the
    second cut is the overload already cut for, whatever the first hold was."""
    fake, limiter = answered((1000.0, 1000.0, True))
    limiter.hold(1.0)
    answered((1001.0, 1001.0, True), limiter=limiter, fake=fake)
    assert limiter.cuts == 2
    answered((1001.2, 1001.2, True), limiter=limiter, fake=fake)
    assert (limiter.throttles, limiter.cuts) == (3, 2)


def test_a_retry_after_inside_a_longer_hold_still_counts_as_the_wait_kept() -> None:
    """A 503's long Retry-After holds everyone; a throttle answered meanwhile cuts and asks a
    shorter wait, which the longer hold already keeps. The calls after it go in a window of
    their own, so a refusal of one of them is news: it cuts (it is not the same overload)."""
    fake, limiter = answered()
    limiter.hold(0.5)  # the 503's, until 1000.5
    answered((1000.1, 999.98, True), limiter=limiter, fake=fake)  # sent before the hold
    limiter.hold(0.3)  # the throttle's own, until 1000.4: inside the longer hold
    assert limiter.cuts == 1
    fake.now = 1000.5
    limiter.acquire()  # the first call after the hold, within a window of the refused one
    assert fake.now == pytest.approx(1000.5)
    answered((1000.55, 1000.5, True), limiter=limiter, fake=fake)
    assert (limiter.throttles, limiter.cuts) == (2, 2)


# --- the window estimate ------------------------------------------------------------------------


@pytest.mark.parametrize(("phase", "seed", "within"), [(0.3, 12, 5.0), (0.75, 30, 7.0)])
def test_the_window_estimate_allows_for_the_spread_of_latencies(
    phase: float, seed: int, within: float
) -> None:
    """Answers 30-40 ms in flight, fixed windows at 40: a call's time at the server is known to
    within half the latencies' spread, so a call that near a window's edge may lie on either
    side of it. At these phases the pace is within 5% of the limit from 3.6 s and 6.2 s;
    taking the send times as exact (no spread kept) took until 7.6 s and 8.2 s, and so did
    counting a refused call's window, or the windows around it, to their very edges (8.2 s
    at the second phase), or from a spread before the edge (7.6 s and 8.2 s)."""
    sends = drive_in_flight("fixed", 40.0, 30.0, phase=phase, seed=seed)
    assert within_5pct_from(sends, 40.0) <= within


def test_tight_window_bounds_set_the_pace_the_margin_below_the_limit() -> None:
    """Fixed windows at 10, refused soon after a hold: the window estimate finds exactly 10
    calls a window, so the limit is found: the pace goes to it less the margin (9.8), not to
    the middle of the bracket or its top."""
    limiter, sends = drive("fixed", 10.0, 50.0, 6.0, phase=0.8)
    assert [rate for _, accepted, rate in sends if not accepted] == pytest.approx(
        [14.0, 9.8], rel=1e-3
    )
    assert limiter.rate == pytest.approx(9.8, rel=1e-3)


def test_a_count_at_a_steady_pace_without_holds_is_not_bracketed() -> None:
    """Fixed windows at 10 refusing with no Retry-After, answers in flight: no hold, so the
    count before the refusal was sent at a steady pace and is the limit (rule 2, less the
    margin: 9.8). The window estimate is for counts a hold made suspect; bracketing this one
    took the pace to 9.41, and 4 s instead of 1.9 to come within 5%."""
    sends = drive_in_flight("fixed", 10.0, 10.0, phase=0.925, seed=37, retry_after=False)
    assert [rate for _, accepted, rate in sends if not accepted][-1] == pytest.approx(9.8, rel=1e-3)
    assert within_5pct_from(sends, 10.0) <= 3.0
