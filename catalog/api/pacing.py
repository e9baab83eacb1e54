"""How fast to send: one pace for every worker together, learnt from the server's answers.

Kept apart from ``retry.py``, which decides whether a failed call is tried again and after how
long: this module decides when any call may go at all. The client reports every answer here
(``RateLimiter.feedback``) and applies a throttling answer's ``Retry-After`` to every worker
(``RateLimiter.hold``); which answers are throttling is ``retry.is_throttling``'s to say.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections import deque
from collections.abc import Callable

#: How much of the margin a call keeps, in time, from the call a window's worth of calls before
#: it, when that one went late (``RateLimiter._window_opens``): 0.9 of 20 ms at a margin of 2%.
#: The send times are the client's, the count the server's, and between them lie a network and
#: two processes' scheduling; half the margin left a sliding-window server at the ceiling's rate
#: a 429 now and then (docs/benchmark-history.md, "Limiter shapes"). The other tenth is
#: lateness absorbed without moving the next calls.
_WINDOW_KEPT = 0.9

#: Fewer accepted calls than this in the measuring window say nothing about a server's limit
#: (the first calls of a run, a lull): the cut is then the plain multiplicative one.
_MIN_MEASURED = 3

#: Window phases tried by the estimate (``RateLimiter._window_bounds``): 5 ms apart at 1 s.
_PHASES = 200
#: Answers whose latencies tell how far a call's time at the server may be from its send time.
_LATENCIES = 64
#: Refusals the estimate keeps (the latest; none older than ``_HORIZON``).
_REFUSALS_KEPT = 8
#: Seconds of send times kept: an answer may come back that much after its call was sent, and
#: the estimate counts accepted calls around refusals this recent.
_HORIZON = 30.0


class RateLimiter:
    """The pace of every worker together: ``qps`` is a ceiling, the server's answers set the rate.

    Nobody knows the console's rate limit for an account, nor how the server counts it (a token
    bucket with a burst, fixed or sliding one-second windows), so the pace is learnt. The models
    are the AWS SDKs' adaptive retry mode (a CUBIC-style client rate) and the client-side
    throttling of Google's SRE book (the client counts what the server accepts):

    * It starts at ``qps * (1 - margin)``. Sending exactly ``qps`` evenly spaced calls a second
      puts ``qps + 1`` calls into some closed second, and a millisecond of jitter then trips a
      sliding window; the margin (20 ms a second at 2%) keeps ``qps`` calls per second true at the
      server as well.
    * On a throttling answer (:func:`is_throttling`) it counts the calls the server accepted in
      the second before the refused one was sent. Clearly fewer than the pace: that count is the
      server's limit. Otherwise the pace itself was refused. The first cut is multiplicative, to
      ``beta`` (0.7, the AWS SDKs' value) times the refused rate; answers to calls sent before a
      cut are the same overload seen again and do not cut twice (TCP's rule), nor do refusals
      that came with no hold, of calls sent within a ``window`` after the refused one before
      any call since was accepted (``_same_overload``); slots already handed out at the old
      pace are taken back.
    * While calls succeed it climbs back, CUBIC-style: a concave approach that flattens out over
      ``recovery`` seconds at a plateau ``margin`` below the refused rate, then a convex probe so
      slow (``probe`` seconds to reach the refused rate again) that a server whose limit was
      found is not knocked on every few seconds, while one whose limit rose is found again. Each
      refused probe costs a ``Retry-After`` hold of every worker, more than it could win.
    * Refused again at a plateau (the pace had reached it, or was set to it at once), there is
      no dip: the plateau moves, by the first of these rules that applies (``_cut``):

      1. A pace held (``confirm`` seconds at a plateau) since the last quiet spell: a refused
         bisection raise (below) goes straight to the next midpoint down; any other refusal,
         back to that pace (or to the margin below the refused rate, if that is lower).
      2. The server accepted clearly fewer calls than the pace: to that count, less the margin;
         times ``beta`` instead when the refusal came soon after a hold and no pace has held.
      3. The pace itself was refused: a step down by the margin (jitter at a window's edge)
         when the refusal came alone or a pace has held; by ``1 - beta`` when refusals go on,
         or this one came soon after a hold (the plateau started above the limit).

      The count cannot always say how far to go: a bucket's saved tokens inflate it (with no
      hold since the last refusal, what was accepted since then is the count), and a fixed
      window out of phase with the holds shows about as many accepted calls as were sent,
      whatever its limit. Hence ``beta`` soon after a hold, and the bisection after it.
    * Where rules 2 and 3 would cut by ``beta`` or ``1 - beta`` for want of a count to trust,
      a window estimate may bracket the limit instead (``_window_bounds``, ``_bracket``):
      fixed windows refuse the call after their limit's worth, so the phase the server's
      windows would have is the one at which every refusal of the search (two at least) had
      the same count of accepted calls before it in its window, and no window more; the
      counts at the phases that fit bound the limit. The pace goes to the middle of that
      bracket, its floor counts as a pace that held and its top as a refused one, and the
      bisection goes on from there; any later refusal moves the floor up to the estimate's.
      It assumes no shape: a server that counts otherwise (a sliding window, a bucket) fits
      no phase, and the estimate never cuts deeper than the rule it stands in for. A wrong
      fit is not free: a top above the limit is ended by the next refusal, as any bracket
      is, but a top below it fences the bisection there until the slow probe climbs past
      it (``probe`` seconds to gain the margin). A call's time at the server is taken as
      known to within half the spread of the latest answers' latencies.
    * Once a pace holds, the pace moves half way up to the lowest refused one (or the window
      estimate's top, if lower) while that is more than twice the margin away (bisection,
      ``_confirmed``). A quiet spell (``quiet`` seconds without a throttle) forgets what was
      refused and what held: the limit may have moved.

    ``hold(seconds)`` (a ``Retry-After``) stops every caller until then, including those already
    asleep on a reserved slot; the first call after it goes exactly at its end and the rest keep
    the pace, because idle time never accumulates credit (no burst after a hold or a lull).
    Slots are reserved under the lock and slept off outside it, so waiters are served in arrival
    order and nobody sleeps holding the lock. ``clock`` and ``sleep`` are injectable for tests.

    ``qps <= 0`` means no ceiling: calls are not paced until the server throttles, and then are.
    """

    def __init__(
        self,
        qps: float,
        *,
        margin: float = 0.02,
        beta: float = 0.7,
        recovery: float = 2.0,
        probe: float = 60.0,
        quiet: float = 10.0,
        confirm: float = 2.0,
        window: float = 1.0,
        min_rate: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 0 <= margin < 1 or not 0 < beta < 1:
            raise ValueError("margin must be within [0, 1) and beta within (0, 1)")
        if min(recovery, probe, quiet, confirm, window, min_rate) <= 0:
            raise ValueError("recovery, probe, quiet, confirm, window and min_rate must be > 0")
        self.qps = qps
        self.margin = margin
        self.beta = beta
        self.recovery = recovery
        self.probe = probe
        self.quiet = quiet
        self.confirm = confirm
        self.window = window
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        #: The fastest pace allowed: the ceiling less the margin (infinite without a ceiling).
        self.max_rate = qps * (1 - margin) if qps > 0 else math.inf
        #: The slowest pace the adaptive rate goes down to: ``min_rate``, or the ceiling's pace
        #: when that is slower (``--qps 0.05`` is one call in 20 s, not one in 10).
        self.min_rate = min(min_rate, self.max_rate)
        self._rate = self.max_rate
        self._next = -math.inf  # the earliest time the next slot may be handed out
        self._last = -math.inf  # the slot of the latest caller that went
        self._went: deque[float] = deque()  # when the latest callers actually went
        self._pending = 0  # callers with a slot, not gone yet
        self._hold_until = -math.inf
        self._hold_epoch = 0
        self._cut_epoch = 0
        self._accepted: deque[float] = deque()  # send times of recently accepted calls
        # The curve: since when (a cut, or a raise towards a lower bad pace), from which rate,
        # towards which plateau; and when the last cut was.
        self._moved_at = -math.inf
        self._cut_at = -math.inf
        self._cut_sent = -math.inf  # the refused call's send time, at the last cut
        self._gentle = False  # the last cut was at a plateau (no dip)
        self._hold_since_cut = False
        self._start = self.max_rate
        self._plateau: float | None = None
        self._refused: float | None = None
        # The bracket: the lowest pace refused since the last quiet spell, and the highest one
        # that held (the plateau for ``confirm`` seconds without a throttle) below it.
        self._bad: float | None = None
        self._good: float | None = None
        self._raised = False  # the curve is on its way up to a bisected plateau
        #: Throttling answers seen, and how many of them cut the rate.
        self.throttles = 0
        self.cuts = 0
        self._steps = 0  # steps down at a plateau in a row, each soon after the last
        # What the window estimate reads: when the refusals that cut were sent (this search),
        # the latest answers' latencies, and the highest limit it found possible.
        self._refusals: list[float] = []
        self._latencies: deque[float] = deque(maxlen=_LATENCIES)
        self._window_hi: float | None = None

    def __repr__(self) -> str:
        return f"RateLimiter(qps={self.qps:g}, rate={self.rate:.4g})"

    # -- what the summary reports ---------------------------------------------------------

    @property
    def rate(self) -> float:
        """The current pace in calls per second (``inf``: not paced)."""
        with self._lock:
            return self._rate

    @property
    def refused_rate(self) -> float | None:
        """The rate the server last refused (``None``: never throttled)."""
        with self._lock:
            return self._refused

    def settled_rate(self) -> float | None:
        """The rate the client settled on: a stable figure for the summary and ``sync_runs``.

        Not the instantaneous rate, which dips after every cut: the plateau after the last cut,
        or the probe's rate once it has gone above it; the starting pace when never throttled.
        ``None`` when there is neither a ceiling nor a throttle (nothing was learnt).
        """
        with self._lock:
            if self._plateau is None:
                return None if math.isinf(self._rate) else self._rate
            return max(self._rate, self._plateau)

    def now(self) -> float:
        """The limiter's clock, for callers that report a send time back."""
        return self._clock()

    # -- pacing ---------------------------------------------------------------------------

    def acquire(self) -> float:
        """Block until a request may be sent; returns the seconds slept."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                slot = max(now, self._hold_until, self._next, self._window_opens())
                self._next = slot + self._step()
                self._pending += 1
                hold_epoch, cut_epoch = self._hold_epoch, self._cut_epoch
            wait = slot - now
            if wait > 0:
                self._sleep(wait)
                waited += wait
            with self._lock:
                self._pending -= 1
                # A hold or a cut while this caller slept applies to it too: a slot reserved at
                # the old pace would otherwise still go at it, and be refused all the same.
                now = self._clock()
                held = hold_epoch != self._hold_epoch and now < self._hold_until
                if not held and cut_epoch == self._cut_epoch:
                    self._last = max(self._last, slot)
                    self._went.append(now)
                    while len(self._went) > max(self._per_window(), 1):
                        self._went.popleft()
                    return waited

    def _per_window(self) -> int:
        """Calls one ``window`` may hold (0: no bound): the ceiling's or the refused rate's,
        or the pace's own while it probes above them."""
        limit = min(self.qps if self.qps > 0 else math.inf, self._refused or math.inf)
        if math.isinf(limit) and math.isinf(self._rate):
            return 0
        pace = 0.0 if math.isinf(self._rate) else self._rate / (1 - self.margin)
        return int(max(0.0 if math.isinf(limit) else limit, pace) * self.window + 1e-6)

    def _window_opens(self) -> float:
        """The earliest time the next call keeps the ceiling (or the refused rate) in any window.

        The even pace keeps it by itself, with the margin to spare, as long as every call goes
        on time. One that woke late (a busy CPU, the GIL) would eat the margin of the call a
        window after it: so the call ``n`` places on goes no sooner than a window (and most of
        the margin, ``_WINDOW_KEPT``) after the time that one actually went.
        """
        n = self._per_window()
        back = n - self._pending  # the call n places back, among those that went
        if n == 0 or not 0 < back <= len(self._went):
            return -math.inf
        return self._went[-back] + self.window * (1 + _WINDOW_KEPT * self.margin)

    def _step(self) -> float:
        return 1.0 / self._rate if self._rate < math.inf else 0.0

    def hold(self, seconds: float) -> None:
        """Stop every caller for ``seconds`` from now (the server's ``Retry-After``).

        Holds overlap rather than add up: a hold never ends later than the latest one asked for.
        One that ends inside a longer one still counts as the server's wait being kept since
        the last cut (``_same_overload``, rule 3's ``repeated``).
        """
        if seconds <= 0:
            return
        with self._lock:
            self._hold_since_cut = True
            now = self._clock()
            until = now + seconds
            if until <= self._hold_until:
                return
            self._hold_until = until
            self._hold_epoch += 1

    # -- feedback -------------------------------------------------------------------------

    def feedback(self, sent_at: float, throttled: bool) -> None:
        """Report the answer to a call sent at ``sent_at`` (the limiter's :meth:`now`).

        Any answer but a throttling one counts as accepted by the server's limiter, errors
        included: the limiter let it through. A call that got no answer is not reported.
        """
        with self._lock:
            now = self._clock()
            if throttled:
                self.throttles += 1
                if sent_at > self._cut_at and not self._same_overload(sent_at):
                    self._cut(now, sent_at)
                return
            self._accepted.append(sent_at)
            self._latencies.append(now - sent_at)
            horizon = now - self.window - _HORIZON
            while self._accepted and self._accepted[0] < horizon:
                self._accepted.popleft()
            if self._plateau is not None:
                self._rate = self._curve(now - self._moved_at)
                # A plateau the pace climbs to holds once it was kept ``confirm`` seconds
                # after the climb; one set at once (a bisection's raise, a step down at a
                # plateau), after ``confirm`` seconds. Seconds of a hold confirm nothing: no
                # call went (a fixed window found a pace "held" that a refusal ended right
                # after, most of its confirmation having been the hold).
                climb = self.recovery if self._start < self._plateau else 0.0
                if now - max(self._moved_at, self._hold_until) >= climb + self.confirm:
                    self._confirmed(now)

    def _same_overload(self, sent_at: float) -> bool:
        """A refusal of a call sent less than a ``window`` after the one that cut, with no hold
        since and no call sent in between accepted: the server's window may still count the
        calls sent before the cut, so it says nothing of the new pace.

        A server that throttles without ``Retry-After`` (a body-coded ``error_code`` 18, a bare
        429) leaves the callers sending into a window already full, and when each such refusal
        cut again, fixed windows took the pace far under their limit within a fraction of a
        second (README, *Fixed windows with no Retry-After*). With a hold, the calls after it go
        in a window of their own; an accepted call says the window has room again (a bucket's
        refusals come between acceptances, and each is news): the rules apply then.
        """
        if self._hold_since_cut or sent_at - self._cut_sent >= self.window:
            return False
        return not any(self._cut_sent < t < sent_at for t in self._accepted)

    def _confirmed(self, now: float) -> None:
        """The plateau held ``confirm`` seconds: a good pace. Half way up to the lowest bad
        one, if that is far.

        After steps down from a plateau that started above the limit (see :meth:`_cut`) the
        pace that stopped the throttling may be well below the limit; bisecting between it and
        the last pace refused finds the limit in a few steps, each a ``confirm`` long, instead of
        waiting for the slow probe.
        """
        assert self._plateau is not None
        self._good = max(self._good or 0.0, self._plateau)
        midpoint = self._midpoint()
        if midpoint is not None:
            # At once, not by the curve: the midpoint is below the lowest pace refused, and a
            # climb to it only put off the next step by ``recovery`` (fixed windows out of
            # phase with the holds need several steps: docs/benchmark-history.md, "Limiter
            # shapes").
            self._plateau = self._start = midpoint
            self._moved_at = now
            self._raised = True

    def _midpoint(self) -> float | None:
        """Bisection's next pace: half way between the pace that held and the lowest refused
        one, while those are more than twice the margin apart (else None: the limit is found)."""
        good, bad = self._good, self._bad
        if bad is not None and self._window_hi is not None:
            bad = min(bad, self._window_hi)  # no window phase explains a higher limit
        if good is None or bad is None or good >= bad * (1 - 2 * self.margin):
            return None
        return (good + bad) / 2

    def _curve(self, t: float) -> float:
        """The rate ``t`` seconds after the curve last moved, by a cut or a bisection's raise
        (CUBIC's shape, scaled to the plateau)."""
        assert self._plateau is not None
        plateau = self._plateau
        if t < self.recovery:
            rate = plateau - (plateau - self._start) * (1 - t / self.recovery) ** 3
        else:
            # Reach the refused rate again ``probe`` seconds after the plateau, then faster.
            gain = (1 / (1 - self.margin) - 1) / self.probe**3
            rate = plateau * (1 + gain * (t - self.recovery) ** 3)
        return min(max(rate, self.min_rate), self.max_rate)

    def _accepted_before(self, start: float, sent_at: float) -> int:
        """Calls the server accepted that were sent after ``start``, up to ``sent_at``.

        Over the ``window`` before a call, held time counts like any other: a window-shaped
        server counts the second before each call, whether anything was sent in it or not.
        """
        return sum(1 for t in self._accepted if start < t <= sent_at)

    def _refused_rate(self, sent_at: float) -> float:
        """The rate a throttling answer to a call sent at ``sent_at`` refused: what the server
        accepted in the window before it, when that was clearly less than the pace (the
        server's limit), else the pace itself."""
        count = self._accepted_before(sent_at - self.window, sent_at)
        measured = count / self.window if count >= _MIN_MEASURED else None
        span = sent_at - self._cut_sent
        if self._gentle and not self._hold_since_cut and self.window <= span <= self.quiet:
            # Refused again at a plateau, with no hold since: a bucket, empty at both refusals
            # and never full between, took exactly its rate in between; the second before this
            # one may have spent tokens saved before. (A hold would have wasted time a window
            # server cannot give back, so this is only for refusals without one.)
            since = self._accepted_before(self._cut_sent, sent_at) / span
            measured = since if measured is None else min(measured, since)
        if math.isinf(self._rate):  # no ceiling: what the server accepted is all there is
            return measured if measured is not None else max(count, 1) / self.window
        if measured is not None and measured < self._rate * (1 - 2 * self.margin):
            return measured  # the server accepted clearly less than was sent: its limit
        # Refused at about the pace sent (jitter at the edge of a window, a bucket's burst just
        # spent), or too little seen to measure: the pace itself was too much. A count one call
        # short of the pace is noise, not a lower limit.
        return self._rate

    def _window_bounds(self) -> tuple[float, float] | None:
        """The lowest and highest limit with which fixed windows of some phase explain every
        refusal of this search, or None (fewer than two refusals, or no phase does).

        A fixed window refuses the call after its ``limit``-th accepted one and never holds
        more, so for the right phase every refused call's window holds the same count of
        accepted calls before it, and no window more. Phases 5 ms apart are tried over the
        send times; a call's time at the server is taken as known to within half the spread
        of the latest latencies, so a count is a range (the calls that may lie on either side
        of an edge). Only an estimate: the server may count otherwise (``_bracket`` never cuts
        deeper than the rules; the class docstring says what a wrong fit costs).
        """
        refusals = self._refusals
        if len(refusals) < 2:
            return None
        sent = sorted(self._accepted)
        lats = self._latencies
        eps = (max(lats) - min(lats)) / 2 + 1e-9 if lats else 1e-9
        w = self.window

        def count(start: float, end: float) -> int:
            return bisect.bisect_left(sent, end) - bisect.bisect_left(sent, start)

        lowest = highest = None
        for k in range(_PHASES):
            phase = k * w / _PHASES
            low, high = 0, math.inf
            for t in refusals:  # the refused call's window: exactly the limit before it
                edge = math.floor((t - phase) / w) * w + phase
                high = min(high, count(edge - eps, t + eps))
                low = max(low, count(edge + eps, t - eps))
            edge = math.floor((refusals[0] - 2 * w - phase) / w) * w + phase
            while edge <= refusals[-1] and low <= high:  # no window holds more than the limit
                low = max(low, count(edge + eps, edge + w - eps))
                edge += w
            if low <= high:
                lowest = low if lowest is None else min(lowest, low)
                highest = high if highest is None else max(highest, high)
        if lowest is None or highest is None:
            return None
        return lowest / w, highest / w

    def _bracket(self, refused: float, low: float, high: float) -> None:
        """Instead of the cut to ``beta`` times the refused rate that rules 2 and 3 make when
        the count is suspect: bisection between the window estimate's bounds
        (``_window_bounds``), from their midpoint, and never below that cut."""
        assert self._bad is not None
        self._bad = min(self._bad, high, refused)
        good = low * (1 - self.margin)
        if good >= self._bad * (1 - 2 * self.margin):
            plateau = good  # the bounds are tight: the limit is found
        else:
            self._good = good
            plateau = (good + self._bad) / 2
            self._raised = True
        self._plateau = max(plateau, refused * self.beta, self.min_rate)

    def _cut(self, now: float, sent_at: float) -> None:
        """A throttling answer to a call sent at ``sent_at``: the new plateau, and the pace
        from which the curve climbs to it (the class docstring tells the rules)."""
        refused = self._refused_rate(sent_at)
        # Not settled at a plateau (the first refusal, or one while the curve climbs after a
        # dip): nothing is learnt yet, the full cut. Settled: the rules 1-3 of the class
        # docstring, which move the plateau without a dip.
        raised = self._raised
        settled = self._plateau is not None and (
            raised or self._rate >= self._plateau * (1 - self.margin)
        )
        self._raised = False
        if self._bad is None or now - self._cut_at > self.quiet:
            self._bad = self._good = None  # a quiet spell: the limit may have moved
            self._refusals = []
        self._bad = refused if self._bad is None else min(self._bad, refused)
        self._refusals = [t for t in self._refusals if t >= now - _HORIZON][1 - _REFUSALS_KEPT :]
        self._refusals.append(sent_at)
        bounds = self._window_bounds()
        self._window_hi = bounds[1] if bounds is not None else None
        confirmed = self._good is not None  # a pace held since the last quiet spell
        if self._good is not None and self._good >= self._bad:
            self._good = None  # refused at the pace that held: it no longer does
        repeated = now - self._cut_at <= self.quiet and self._hold_since_cut
        if not settled:
            self._steps = 0
            self._plateau = max(refused * (1 - self.margin), self.min_rate)
        elif self._good is not None:  # rule 1: a pace held
            self._steps = 0
            if bounds is not None:  # the estimate's floor, if above what held
                floor = min(bounds[0] * (1 - self.margin), self._bad * (1 - 2 * self.margin))
                self._good = max(self._good, floor)
            midpoint = self._midpoint() if raised else None
            if midpoint is not None:
                # A bisection's raise refused: the next midpoint below it at once. The pace
                # that held still does; going back to it first cost a ``confirm`` per refused
                # raise (docs/benchmark-history.md, "Limiter shapes").
                self._plateau = midpoint
                self._raised = True
            else:
                self._plateau = max(min(self._good, self._bad * (1 - self.margin)), self.min_rate)
        elif refused < self._rate * (1 - 2 * self.margin):
            # Rule 2: counted clearly below the pace. Soon after a refusal that made everyone
            # hold, the count is suspect (a fixed window out of phase): by 1 - beta, the
            # bisection after. Not when a pace held since: the second counted was sent at a
            # steady pace (a bisection's raise refused), and beta would take a fixed window at
            # 30 down to 21.
            self._steps = int(repeated)
            suspect = repeated and not confirmed
            factor = self.beta if suspect else 1 - self.margin
            self._plateau = max(refused * factor, self.min_rate)
            if suspect and bounds is not None:
                self._bracket(refused, *bounds)
        else:
            if now - self._cut_at > self.quiet:
                self._steps = 0
            # Rule 3. The margin step is for jitter at a window's edge, which comes alone; refused
            # again soon after a hold, at a plateau no pace confirmed, the plateau itself was
            # too high (a fixed window out of phase), and the margin step only cost a refusal.
            # Once a pace held, though, the limit is near it: refused at about a pace set just
            # under a raise that was refused, the margin step (1 - beta would take 30 down to 21).
            alone = self._steps == 0 and not repeated
            too_high = not (alone or confirmed)
            step = 1 - self.beta if too_high else self.margin
            self._steps += 1
            self._plateau = max(refused * (1 - step), self.min_rate)
            if too_high and bounds is not None:
                self._bracket(refused, *bounds)
        self._refused = refused
        self._start = self._plateau if settled else max(refused * self.beta, self.min_rate)
        self._rate = min(self._start, self.max_rate)
        self._cut_at = self._moved_at = now
        self._cut_sent, self._gentle, self._hold_since_cut = sent_at, settled, False
        self.cuts += 1
        # The new pace starts from the last call that went; slots handed out at the old pace
        # to callers still asleep are taken back (they reserve again when they wake).
        self._next = self._last + self._step()
        self._cut_epoch += 1
