"""Which failures are worth another attempt, how long to wait, and how fast to send at all.

Retrying is only safe here because every call the catalog makes is a read (``Describe*``, the eval
export ``info``): a request that timed out after the server acted on it does no harm when repeated.
"""

from __future__ import annotations

import email.utils
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC
from typing import TypeVar

import requests

from catalog.errors import AUTH_CODES, ApiError

T = TypeVar("T")

#: Never wait less than this between attempts, even when told ``Retry-After: 0``: a server that
#: sheds load with "retry now" must not be answered with a busy loop.
MIN_RETRY_AFTER = 0.05

#: /wenxinworkshop ``error_code`` values that mean "busy, try again". From the Qianfan error table
#: (cloud.baidu.com/doc/WENXINWORKSHOP/s/tlmyncueh) and the Qianfan SDK's ``APIErrorCode`` /
#: ``ConsoleRetryErrCodes`` (baidubce/bce-qianfan-sdk python/qianfan/consts.py):
#: 1 Unknown error and 2 Service temporarily unavailable ("please request again"), 4 cluster request
#: limit reached, 18 QPS limit reached, 336000 internal error, 336100 server high load, 500000
#: console internal error. Deliberately NOT 17 (daily quota) or 19 (total quota): those last until
#: billing is changed or the day rolls over, so retrying only burns the time budget.
RETRYABLE_V1_CODES = frozenset({"1", "2", "4", "18", "336000", "336100", "500000"})

#: /v2 ``code`` values that mean the same. ``InternalError`` and ``ServiceUnavailable`` are BCE's
#: common error codes; the throttling names are the spellings BCE services use for HTTP 429. The
#: status check catches these anyway when they arrive with 429/5xx; the names matter when a gateway
#: reports them with an unexpected status.
RETRYABLE_V2_CODES = frozenset(
    {
        "InternalError",
        "ServiceUnavailable",
        "RequestLimitExceeded",
        "TooManyRequests",
        "QpsLimitReached",
        "QPSLimitReached",
        "Throttling",
        "ServerHighLoad",
    }
)


#: The retryable answers that say "too fast" rather than "broken": they also slow the shared
#: limiter down (see :class:`RateLimiter`). /wenxinworkshop: 4 cluster request limit reached,
#: 18 QPS limit reached, 336100 server high load; /v2: the throttling spellings above; and
#: HTTP 429 whatever its code says.
THROTTLING_CODES = frozenset({"4", "18", "336100"}) | (
    RETRYABLE_V2_CODES - {"InternalError", "ServiceUnavailable"}
)


def is_throttling(*, status: int | None = None, code: str = "") -> bool:
    """Is this answer the server refusing the pace (rather than failing)?"""
    return status == 429 or code in THROTTLING_CODES

def classify(
    *, status: int | None = None, code: str = "", exc: BaseException | None = None
) -> bool:
    """The single answer to "is this failure transient?", so client and tests cannot disagree.

    ``exc`` is a transport exception (no answer was received); ``status``/``code`` describe an
    answer. Credential and signature problems are never transient, whatever status carries them.
    """
    if exc is not None:
        if isinstance(exc, requests.exceptions.SSLError):
            return False  # a certificate problem does not fix itself between attempts
        return isinstance(
            exc,
            requests.ConnectionError | requests.Timeout | requests.exceptions.ChunkedEncodingError,
        )
    if code in AUTH_CODES:
        return False
    if code in RETRYABLE_V1_CODES or code in RETRYABLE_V2_CODES:
        return True
    return status is not None and (status == 429 or 500 <= status <= 599)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), else ``None``.

    A date in the past yields 0.0 (the policy applies its floor); garbage yields ``None`` so the
    normal backoff applies instead of trusting a header we could not read.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if seconds == seconds else None  # NaN is not a delay
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(when.timestamp() - current, 0.0)


class RetryPolicy:
    """Bounded retries: at most ``max_attempts`` tries and ``max_total`` seconds per call.

    Full jitter (a uniform draw from ``[0, min(max_delay, base * 2**(n-1))]``) keeps many workers
    that failed together from retrying together. ``sleep``, ``rng`` and ``clock`` are injectable
    so tests assert on the delays chosen instead of on wall time.
    """

    def __init__(
        self,
        max_attempts: int = 6,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        max_total: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if base_delay < 0 or max_delay < 0 or max_total < 0:
            raise ValueError("delays must not be negative")
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_total = max_total
        self.sleep = sleep
        # A fresh generator per policy: a shared default instance would couple unrelated clients.
        self.rng = rng if rng is not None else random.Random()
        self.clock = clock

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(max_attempts={self.max_attempts}, base_delay={self.base_delay}, "
            f"max_delay={self.max_delay}, max_total={self.max_total})"
        )

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        The server's ``Retry-After`` wins over our own guess, but is floored (no busy loop on 0)
        and capped by ``max_delay`` (a server asking for an hour should fail the call, not hang it).
        """
        if retry_after is not None:
            return min(max(retry_after, MIN_RETRY_AFTER), self.max_delay)
        ceiling = min(self.max_delay, self.base_delay * 2 ** max(attempt - 1, 0))
        return self.rng.uniform(0.0, ceiling)

    def run(
        self,
        attempt_fn: Callable[[int], T],
        on_retry: Callable[[int, float, ApiError], None] | None = None,
    ) -> T:
        """Call ``attempt_fn(n)`` until it returns, raises a non-retryable error, or a bound is hit.

        ``on_retry(n, delay, error)`` runs before each sleep. A sleep that would carry the call past
        ``max_total`` is not taken: the last error is raised at once, marked with the attempt count.
        """
        start = self.clock()
        attempt = 1
        while True:
            try:
                return attempt_fn(attempt)
            except ApiError as err:
                if not err.retryable:
                    raise
                wait = self.delay(attempt, err.retry_after)
                out_of_attempts = attempt >= self.max_attempts
                out_of_time = self.clock() - start + wait > self.max_total
                if out_of_attempts or out_of_time:
                    tries = f"{attempt} attempt{'' if attempt == 1 else 's'}"
                    why = "" if out_of_attempts else (
                        f": the next wait would pass the {self.max_total:g}s budget"
                    )
                    err.message = f"{err.message} (gave up after {tries}{why})"
                    err.args = (str(err),)
                    raise
                if on_retry is not None:
                    on_retry(attempt, wait, err)
                self.sleep(wait)
                attempt += 1


#: Fewer accepted calls than this in the measuring window say nothing about a server's limit
#: (the first calls of a run, a lull): the cut is then the plain multiplicative one.
_MIN_MEASURED = 3


class RateLimiter:
    """The pace of every worker together: ``qps`` is a ceiling, the server's answers set the rate.

    Nobody knows the console's rate limit for an account, nor how the server counts it (a token
    bucket with a burst, fixed or sliding one-second windows), so the pace is learnt:

    * It starts at ``qps * (1 - margin)``. Sending exactly ``qps`` evenly spaced calls a second
      puts ``qps + 1`` calls into some closed second, and a millisecond of jitter then trips a
      sliding window; the margin (20 ms a second at 2%) keeps ``qps`` calls per second true at the
      server as well.
    * On a throttling answer (:func:`is_throttling`) it measures how many calls the server
      accepted in the second before the refused one was sent, takes the lower of that and its
      own rate as the refused rate, and cuts its rate to ``beta`` times that (0.7, as in the AWS
      SDKs' adaptive retry mode). Answers to calls sent before that cut are the same overload
      seen again and do not cut twice (TCP's rule: one decrease per round trip).
    * While calls succeed it climbs back, CUBIC-style: a concave approach that flattens out over
      ``recovery`` seconds at the plateau, ``margin`` below the refused rate, then a convex probe
      so slow (``probe`` seconds to reach the refused rate again) that a server whose limit was
      found is not knocked on every few seconds, while one whose limit rose is found again.
      Each probe that fails costs a ``Retry-After`` hold, so probing often would cost more than
      the few per cent it could win.

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
        window: float = 1.0,
        min_rate: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 0 <= margin < 1 or not 0 < beta < 1:
            raise ValueError("margin must be within [0, 1) and beta within (0, 1)")
        if recovery <= 0 or probe <= 0 or window <= 0 or min_rate <= 0:
            raise ValueError("recovery, probe, window and min_rate must be > 0")
        self.qps = qps
        self.margin = margin
        self.beta = beta
        self.recovery = recovery
        self.probe = probe
        self.window = window
        self.min_rate = min_rate
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        #: The fastest pace allowed: the ceiling less the margin (infinite without a ceiling).
        self.max_rate = max(qps * (1 - margin), min_rate) if qps > 0 else math.inf
        self._rate = self.max_rate
        self._next = -math.inf  # the earliest time the next slot may be handed out
        self._hold_until = -math.inf
        self._holds: deque[tuple[float, float]] = deque()  # recent (start, end) of holds
        self._hold_epoch = 0
        self._accepted: deque[float] = deque()  # send times of recently accepted calls
        # After the last cut: when, from which rate, towards which plateau.
        self._cut_at = -math.inf
        self._start = self.max_rate
        self._plateau: float | None = None
        self._refused: float | None = None
        #: Throttling answers seen, and how many of them cut the rate.
        self.throttles = 0
        self.cuts = 0

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
                slot = max(now, self._hold_until, self._next)
                self._next = slot + (1.0 / self._rate if self._rate < math.inf else 0.0)
                epoch = self._hold_epoch
            wait = slot - now
            if wait > 0:
                self._sleep(wait)
                waited += wait
            with self._lock:
                # A hold that began while this caller slept applies to it too.
                if self._hold_epoch == epoch or self._clock() >= self._hold_until:
                    return waited

    def hold(self, seconds: float) -> None:
        """Stop every caller for ``seconds`` from now (the server's ``Retry-After``).

        Holds overlap rather than add up: a hold never ends later than the latest one asked for.
        """
        if seconds <= 0:
            return
        with self._lock:
            now = self._clock()
            until = now + seconds
            if until <= self._hold_until:
                return
            self._forget_holds(now)
            self._holds.append((max(now, self._hold_until), until))
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
                if sent_at > self._cut_at:
                    self._cut(now, sent_at)
                return
            self._accepted.append(sent_at)
            horizon = now - self.window - 30.0  # answers may come back that much later
            while self._accepted and self._accepted[0] < horizon:
                self._accepted.popleft()
            if self._plateau is not None:
                self._rate = self._curve(now - self._cut_at)

    def _curve(self, t: float) -> float:
        """The rate ``t`` seconds after the last cut (CUBIC's shape, scaled to the plateau)."""
        assert self._plateau is not None
        plateau = self._plateau
        if t < self.recovery:
            rate = plateau - (plateau - self._start) * (1 - t / self.recovery) ** 3
        else:
            # Reach the refused rate again ``probe`` seconds after the plateau, then faster.
            gain = (1 / (1 - self.margin) - 1) / self.probe**3
            rate = plateau * (1 + gain * (t - self.recovery) ** 3)
        return min(max(rate, self.min_rate), self.max_rate)

    def _measured(self, sent_at: float) -> tuple[int, float]:
        """Calls the server accepted in the ``window`` before ``sent_at``, and the seconds of that
        window that were not held (a hold sends nothing, so it says nothing of the limit)."""
        start = sent_at - self.window
        held = sum(
            max(0.0, min(end, sent_at) - max(begin, start)) for begin, end in self._holds
        )
        count = sum(1 for t in self._accepted if start < t <= sent_at)
        return count, self.window - held

    def _cut(self, now: float, sent_at: float) -> None:
        count, span = self._measured(sent_at)
        measured = count / span if count >= _MIN_MEASURED and span >= self.window / 4 else None
        # At a plateau that was itself learnt, a throttle says the limit is just below it.
        settled = self._plateau is not None and now - self._cut_at >= self.recovery
        dip = True
        if math.isinf(self._rate):  # no ceiling: what the server accepted is all there is
            refused = measured if measured is not None else max(count, 1) / self.window
        elif measured is not None and measured < self._rate * (1 - 2 * self.margin):
            refused = measured  # the server accepted clearly less than was sent: its limit
        else:
            # Refused at about the pace sent (jitter at the edge of a window, a bucket's burst
            # just spent), or too little seen to measure: the pace itself was too much. A count
            # one call short of the pace is noise, not a lower limit. Settled, the pace steps
            # down by the margin; otherwise nothing is known yet and the cut is the full one.
            refused = self._rate
            dip = not settled
        self._refused = refused
        self._plateau = max(refused * (1 - self.margin), self.min_rate)
        self._start = max(refused * self.beta, self.min_rate) if dip else self._plateau
        self._rate = min(self._start, self.max_rate)
        self._cut_at = now
        self.cuts += 1

    def _forget_holds(self, now: float) -> None:
        while self._holds and self._holds[0][1] < now - self.window - 30.0:
            self._holds.popleft()
