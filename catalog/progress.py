"""What a person sees while a sync runs, and what everyone sees when it ends.

A one-line progress display on stderr, redrawn in place, only when stderr is a terminal: per kind
the records done, as done/total once the total is known, API calls per second and an ETA.

Totals: no listing says how long it is, so a total is known only when the run says so with a
``("total", {"kind": ..., "total": n})`` event (e.g. the number of model sets once their
listings ended). The versions' total is then the sum of the sets' ``modelIds``, but only once
every counted set has been recorded or has failed (an ``error`` event with ``kind`` model_set):
a sum over the sets seen so far is not a total, and an ETA from it read "0:00" with most of a
run ahead. The ETA comes from the first kind with a
total (versions, else sets) and only after ``MIN_ETA_SHARE`` of it is done.
Under cron or a pipe there is nothing of it (no carriage returns in mail or log files).
``--quiet`` turns it off on a terminal too. The one summary line goes to stdout either way.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import IO, Any

from catalog.kinds import KINDS, REGISTRY

LABELS = {name: kind.short for name, kind in REGISTRY.items()}
#: The kinds an ETA is computed from, most precise first (versions outnumber sets).
ETA_KINDS = ("model_version", "model_set")
#: Redraws per second at most: enough to look alive, few enough to cost nothing.
MAX_REDRAWS_PER_SECOND = 10
#: Share of a total done before an ETA is shown: a rate from the first few items is noise.
MIN_ETA_SHARE = 0.05


def is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def format_eta(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Counts run events and redraws one status line on a terminal stream."""

    def __init__(
        self, stream: IO[str], clock: Callable[[], float] = time.monotonic, width: int | None = None
    ) -> None:
        self.stream = stream
        self.clock = clock
        self.width = width
        self.started = clock()
        self.done: Counter[str] = Counter()
        self.totals: dict[str, int] = {}
        self.version_total = 0  # the sets' modelIds so far: a total once every set is counted
        self.sets_failed = 0
        self.api_calls = 0
        self.retries = 0
        self.errors = 0
        self._last_draw = -1.0
        self._drawn = False
        self._lock = threading.Lock()

    @classmethod
    def for_stream(cls, stream: Any, quiet: bool = False) -> Progress | None:
        """A display when ``stream`` is a terminal and not ``quiet``; otherwise none at all."""
        if quiet or not is_tty(stream):
            return None
        return cls(stream)

    def __call__(self, name: str, data: dict[str, Any]) -> None:
        with self._lock:
            if name == "record":
                kind = str(data.get("kind"))
                self.done[kind] += 1
                row = data.get("row")
                if kind == "model_set" and isinstance(row, dict):
                    self.version_total += len(row.get("model_ids") or [])
                if isinstance(data.get("api_calls"), int):
                    self.api_calls = data["api_calls"]
            elif name == "total":
                self.totals[str(data.get("kind"))] = int(data.get("total") or 0)
            elif name == "retry":
                self.retries += 1
            elif name == "error":
                self.errors += 1
                if data.get("kind") == "model_set" and data.get("entity_id"):
                    self.sets_failed += 1  # counted, though it has no record
            elif name == "run_start":
                self.started = self.clock()
            self._maybe_draw(force=name not in ("record", "total"))

    def total(self, kind: str) -> int | None:
        """The known total of ``kind``, or ``None`` while it is not known."""
        if kind == "model_version" and kind not in self.totals:
            sets = self.totals.get("model_set")
            if sets is None or self.done["model_set"] + self.sets_failed < sets:
                return None
            return max(self.version_total, self.done[kind])
        total = self.totals.get(kind)
        return None if total is None else max(total, self.done[kind])

    def eta(self, elapsed: float) -> float | None:
        """Seconds left, from the first kind with a known total, once enough of it is done."""
        for kind in ETA_KINDS:
            total, done = self.total(kind), self.done[kind]
            if total is not None:
                if done >= total or done < MIN_ETA_SHARE * total:
                    return None
                return elapsed * (total - done) / done
        return None

    def line(self) -> str:
        elapsed = max(self.clock() - self.started, 1e-6)
        parts = []
        for kind in KINDS:  # the kinds under way (and sets, versions: the ETA's), so it fits
            total = self.total(kind)
            if not self.done[kind] and total is None and kind not in ETA_KINDS:
                continue
            shown = f"{self.done[kind]}" if total is None else f"{self.done[kind]}/{total}"
            parts.append(f"{LABELS[kind]} {shown}")
        tail = f"{self.api_calls / elapsed:.1f} calls/s"
        eta = self.eta(elapsed)
        if eta is not None:
            tail += f"  ETA {format_eta(eta)}"
        if self.retries:
            tail += f"  {self.retries} retries"
        if self.errors:
            tail += f"  {self.errors} errors"
        return "  ".join(parts) + "  | " + tail

    def _maybe_draw(self, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._last_draw < 1.0 / MAX_REDRAWS_PER_SECOND:
            return
        self._last_draw = now
        width = self.width or shutil.get_terminal_size((100, 20)).columns
        text = self.line()[: max(width - 1, 10)]
        self.stream.write("\r" + text + "\x1b[K")
        self.stream.flush()
        self._drawn = True

    def clear(self) -> None:
        """Erase the status line, so a log line or the summary starts on a clean line."""
        with self._lock:
            if self._drawn:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
                self._drawn = False


class RunObserver:
    """The sync observer the CLI passes: progress display (maybe) and logs, one callable."""

    def __init__(
        self, progress: Progress | None, log: Callable[[str, dict[str, Any]], None]
    ) -> None:
        self.progress = progress
        self.log = log

    def __call__(self, name: str, data: dict[str, Any]) -> None:
        if self.progress is not None:
            if name in ("record", "total"):
                self.progress(name, data)
                return
            self.progress.clear()
        self.log(name, data)
        if self.progress is not None:
            self.progress(name, data)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.clear()


def stderr_stream() -> IO[str]:
    """The stream the display draws on; a function so tests can hand in a fake terminal."""
    return sys.stderr


def plan_lines(summary: Any) -> list[str]:
    """A dry run's plan: per kind what a real run would insert, update and delete."""
    counts = summary.counts
    width = max(len(k) for k in KINDS)
    lines = [
        "planned changes (dry run, nothing written):",
        f"  {'kind':<{width}}  {'seen':>7}  {'insert':>7}  {'update':>7}  {'delete':>7}",
    ]
    for kind in KINDS:
        seen, ins, upd, dele = (
            counts.get(f"{kind}_{w}", 0) for w in ("seen", "inserted", "updated", "deleted")
        )
        lines.append(f"  {kind:<{width}}  {seen:>7}  {ins:>7}  {upd:>7}  {dele:>7}")
    return lines
