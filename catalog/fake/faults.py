"""Fault injection for the fake console server.

The real service throttles, fails, drops connections and (rarely) pages inconsistently; the sync
must survive all of it. A :class:`FaultPlan` decides, per call, whether that call misbehaves:
queued faults (:meth:`FaultPlan.once`) make a test's scenario exact, random faults
(:meth:`FaultPlan.rate`) drawn from a seeded generator make chaos runs reproducible. A fault only
ever changes the answer to the call it was drawn for; the catalog itself is never touched.

INVENTED: the documents state no throttling answer, no 502/503 codes and no paging failures for
the console (REFERENCE §10). The faults are what a robust client must survive, in plausible
shapes (the server's ``_transport_fault`` says which code each uses), not facts about the service.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

#: Faults that change how (or whether) a call is answered.
TRANSPORT_FAULTS: tuple[str, ...] = ("429", "5xx", "drop", "slow", "malformed", "v1_rate_limit")
#: Faults that corrupt one page of a marker-paged listing; only drawn for paged calls.
PAGE_FAULTS: tuple[str, ...] = ("page_loop", "dup_items", "truncated_no_marker", "empty_page_more")
FAULTS: tuple[str, ...] = TRANSPORT_FAULTS + PAGE_FAULTS

_DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "429": {"retry_after": None},
    "5xx": {"status": 503},
    "slow": {"seconds": 1.0},
}


def _check(fault: str, params: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults and reject nonsense in the test that wrote it, not in a server thread."""
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; expected one of {FAULTS}")
    merged = {**_DEFAULT_PARAMS.get(fault, {}), **params}
    unknown = set(merged) - set(_DEFAULT_PARAMS.get(fault, {}))
    if unknown:
        raise ValueError(f"fault {fault!r} takes no parameter(s) {sorted(unknown)}")
    if fault == "429":
        value = merged["retry_after"]
        valid = (
            value is None
            or value == "http-date"
            or (isinstance(value, int | float) and not isinstance(value, bool) and value >= 0)
        )
        if not valid:
            raise ValueError("retry_after must be None, seconds >= 0 or 'http-date'")
    if fault == "5xx" and merged["status"] not in (500, 502, 503):
        raise ValueError("5xx status must be 500, 502 or 503")
    if fault == "slow" and not (
        isinstance(merged["seconds"], int | float) and merged["seconds"] >= 0
    ):
        raise ValueError("slow seconds must be >= 0")
    return merged


@dataclass(frozen=True)
class Fault:
    """One fault drawn for one call."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def is_page_fault(self) -> bool:
        return self.name in PAGE_FAULTS


@dataclass
class _Queued:
    target: str
    fault: str
    remaining: int
    params: dict[str, Any]


@dataclass(frozen=True)
class _Rate:
    fault: str
    probability: float
    actions: frozenset[str] | None
    params: dict[str, Any]


class FaultPlan:
    """Which calls misbehave, and how. Thread-safe; draws in call order, so seeded runs repeat."""

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._queue: list[_Queued] = []
        self._rates: list[_Rate] = []
        #: Every fault handed out: ``{"action", "route", "fault", "params"}`` in order.
        self.injected: list[dict[str, Any]] = []

    def once(self, target: str, fault: str, times: int = 1, **params: Any) -> FaultPlan:
        """Queue ``fault`` for the next ``times`` calls matching ``target``.

        ``target`` is an action (``"DescribeModel"``), a route (the eval route's path) or ``"*"``.
        Page faults wait for the next matching *paged* call. Queued faults are used in the order
        they were queued and take precedence over random ones.
        """
        if times < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._queue.append(_Queued(target, fault, times, _check(fault, params)))
        return self

    def rate(
        self,
        fault: str,
        probability: float,
        actions: Iterable[str] | None = None,
        **params: Any,
    ) -> FaultPlan:
        """Inject ``fault`` into each matching call with ``probability`` (seeded, reproducible)."""
        if not 0.0 <= probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        chosen = frozenset(actions) if actions is not None else None
        with self._lock:
            self._rates.append(_Rate(fault, probability, chosen, _check(fault, params)))
        return self

    def pending(self) -> int:
        """How many queued injections are still to come."""
        with self._lock:
            return sum(q.remaining for q in self._queue)

    def draw(self, action: str, route: str, *, paged: bool) -> Fault | None:
        """The fault for this call, or ``None``; recorded in :attr:`injected` when there is one."""
        with self._lock:
            chosen: tuple[str, dict[str, Any]] | None = None
            for queued in self._queue:
                if queued.target not in ("*", action, route):
                    continue
                if queued.fault in PAGE_FAULTS and not paged:
                    continue
                queued.remaining -= 1
                chosen = (queued.fault, queued.params)
                break
            self._queue = [q for q in self._queue if q.remaining > 0]
            if chosen is None:
                for rule in self._rates:
                    if rule.actions is not None and not {action, route} & rule.actions:
                        continue
                    if rule.fault in PAGE_FAULTS and not paged:
                        continue
                    if self._rng.random() < rule.probability:
                        chosen = (rule.fault, rule.params)
                        break
            if chosen is None:
                return None
            name, params = chosen
            self.injected.append(
                {"action": action, "route": route, "fault": name, "params": dict(params)}
            )
            return Fault(name, dict(params))


#: The faults a correct client retries through; chaos runs use only these.
RETRYABLE_FAULTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("429", {"retry_after": 0}),
    ("5xx", {"status": 503}),
    ("5xx", {"status": 502}),
    ("drop", {}),
    ("v1_rate_limit", {}),
)


def chaos_plan(fault_rate: float, seed: int = 0) -> FaultPlan:
    """A plan where about ``fault_rate`` of all calls get a retryable fault.

    Page faults are left out on purpose: they are not retryable, so a sync against a chaos
    server would fail instead of demonstrating recovery (malformed bodies are retried now, but
    stay out so the plan's figures keep their meaning).
    """
    if not 0.0 <= fault_rate <= 1.0:
        raise ValueError("fault_rate must be within [0, 1]")
    plan = FaultPlan(seed)
    remaining = 1.0
    share = fault_rate / len(RETRYABLE_FAULTS)
    for name, params in RETRYABLE_FAULTS:
        # Rules are tried in order; scale each so the overall chance per rule is ``share``.
        probability = min(1.0, share / remaining) if remaining > 0 else 0.0
        plan.rate(name, probability, **params)
        remaining -= share
    return plan
