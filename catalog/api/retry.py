"""Which failures are worth another attempt, and how long to wait before it (how fast to send
at all is ``pacing.py``'s).

Retrying is only safe here because every call the catalog makes is a read (``Describe*``, the eval
export ``info``): a request that timed out after the server acted on it does no harm when repeated.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
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
    # 501 (not implemented) and 505 (version not supported) say what the server is, not how
    # it is doing: asked again, it answers the same (a --base-url that is another server).
    if status is None or status in (501, 505):
        return False
    return status in (408, 429) or 500 <= status <= 599


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


def _gave_up(err: ApiError, why: str) -> None:
    """Say in ``err``'s message why it is not tried again."""
    err.message = f"{err.message} ({why})"
    err.args = (str(err),)


#: Set when the process is asked to stop outside a sync's run (``catalog/entry.py``): no call
#: is tried again, in any thread (``eval track``'s check runs in a worker thread of its own).
STOPPING = threading.Event()


class RetryPolicy:
    """Bounded retries: at most ``max_attempts`` tries and ``max_total`` seconds per call.

    Full jitter (a uniform draw from ``[0, min(max_delay, base * 2**(n-1))]``) keeps many workers
    that failed together from retrying together. ``sleep``, ``rng`` and ``clock`` are injectable
    so tests assert on the delays chosen instead of on wall time. ``stop``, once set (a signal
    asked the run to stop), ends the waits: a failed call is not tried again, so a stop is not
    held up by a minute of retries.
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
        stop: threading.Event | None = None,
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
        self.stop = stop

    def _stopping(self) -> bool:
        """A stop was asked: of the run (``stop``) or of the process (``STOPPING``)."""
        return STOPPING.is_set() or (self.stop is not None and self.stop.is_set())

    def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` before the next attempt, or less if a stop comes; True if one did."""
        if self.stop is not None:
            self.stop.wait(seconds)
        elif self.sleep is time.sleep:
            STOPPING.wait(seconds)
        else:
            self.sleep(seconds)  # injected by a test
        return self._stopping()

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(max_attempts={self.max_attempts}, base_delay={self.base_delay}, "
            f"max_delay={self.max_delay}, max_total={self.max_total})"
        )

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        The server's ``Retry-After`` wins over our own guess, but is floored (no busy loop on 0)
        and capped by ``max_delay``: a server asking for an hour is asked again after that cap,
        and the call fails when its attempts run out instead of hanging the run for the hour.
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
                    _gave_up(err, f"gave up after {tries}{why}")
                    raise
                if self._stopping():
                    _gave_up(err, "not tried again: the run is stopping")
                    raise
                if on_retry is not None:
                    on_retry(attempt, wait, err)
                if self._wait(wait):
                    _gave_up(err, "not tried again: the run is stopping")
                    raise
                attempt += 1
