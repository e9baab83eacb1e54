"""Server-side rate limits for the fake console, in the shapes a real gateway might use.

INVENTED, all of it: the documents say nothing about the console API's rate limit, neither its
rate nor how it counts (REFERENCE §10). The client must therefore cope with any usual shape, and
the fake offers three so that tests and the benchmark can show it does:

``bucket``   a token bucket refilled at ``rate`` per second holding ``max(1, rate)`` tokens, so a
             client that was idle may send a one-second burst; refusals carry no ``Retry-After``.
``fixed``    at most ``rate`` calls in each one-second window ``[n, n + 1)`` of the clock.
``sliding``  at most ``rate`` calls in the second before each call.

``fixed-bare`` ``fixed``, its refusals with no ``Retry-After``: a refusal the client cannot
             tell when it ends, as a body-coded ``error_code`` 18 (HTTP 200) would be.

The window shapes answer a refusal with ``Retry-After: 1``, as a sliding-window gateway may:
the client must honour a hold as well as cope without one (``bucket``, ``fixed-bare``). A
refused call is not counted against the window: otherwise a client that keeps being refused
would keep itself refused.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

Clock = Callable[[], float]


class ServerLimiter(Protocol):
    """What the fake's request handler asks before answering a call."""

    rate: float
    #: Seconds to put in ``Retry-After`` on a refusal, or ``None`` to send no such header.
    retry_after: float | None
    #: Calls refused so far (the benchmark reports them).
    refused: int

    def try_acquire(self) -> bool: ...


class _Base:
    retry_after: float | None = None

    def __init__(self, rate: float, clock: Clock = time.monotonic) -> None:
        if not rate > 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        self.refused = 0
        self._clock = clock
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rate={self.rate:g})"

    def try_acquire(self) -> bool:
        with self._lock:
            if self._admit(self._clock()):
                return True
            self.refused += 1
            return False

    def _admit(self, now: float) -> bool:
        raise NotImplementedError


class TokenBucket(_Base):
    """``rate`` calls/s with a burst of ``max(1, rate)``: an idle client may send a second's
    worth at once."""

    def __init__(self, rate: float, clock: Clock = time.monotonic) -> None:
        super().__init__(rate, clock)
        self.capacity = max(1.0, rate)
        self._tokens = self.capacity
        self._stamp = clock()

    def _admit(self, now: float) -> bool:
        elapsed = max(now - self._stamp, 0.0)
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


def _per_second(rate: float) -> int:
    """Calls a one-second window holds: a fractional rate rounds down, but never to none."""
    return max(1, math.floor(rate))


class FixedWindow(_Base):
    """At most ``rate`` calls in each window ``[n, n + 1)`` of the clock's seconds."""

    retry_after: float | None = 1.0

    def __init__(self, rate: float, clock: Clock = time.monotonic) -> None:
        super().__init__(rate, clock)
        self.limit = _per_second(rate)
        self._window = -1
        self._count = 0

    def _admit(self, now: float) -> bool:
        window = math.floor(now)
        if window != self._window:
            self._window, self._count = window, 0
        if self._count < self.limit:
            self._count += 1
            return True
        return False


class BareFixedWindow(FixedWindow):
    """``FixedWindow`` without ``Retry-After``: the client learns neither when the window ends
    nor that the calls it sends meanwhile are refused for the calls before them."""

    retry_after: float | None = None


class SlidingWindow(_Base):
    """At most ``rate`` calls admitted in ``(now - 1, now]``: no window edge to exploit."""

    retry_after: float | None = 1.0

    def __init__(self, rate: float, clock: Clock = time.monotonic) -> None:
        super().__init__(rate, clock)
        self.limit = _per_second(rate)
        self._admitted: deque[float] = deque()

    def _admit(self, now: float) -> bool:
        while self._admitted and self._admitted[0] <= now - 1.0:
            self._admitted.popleft()
        if len(self._admitted) < self.limit:
            self._admitted.append(now)
            return True
        return False


SHAPES: dict[str, Callable[[float, Clock], ServerLimiter]] = {
    "bucket": TokenBucket,
    "fixed": FixedWindow,
    "fixed-bare": BareFixedWindow,
    "sliding": SlidingWindow,
}


def make_limiter(shape: str, rate: float, clock: Clock = time.monotonic) -> ServerLimiter:
    """The limiter named ``shape`` (one of :data:`SHAPES`) at ``rate`` calls per second."""
    try:
        factory = SHAPES[shape]
    except KeyError:
        known = ", ".join(sorted(SHAPES))
        raise ValueError(f"unknown limit shape {shape!r}; expected one of {known}") from None
    return factory(rate, clock)
