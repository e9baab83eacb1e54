"""What a person sees while a sync runs, and what everyone sees when it ends.

A one-line progress display on stderr, redrawn in place, only when stderr is a terminal: per kind
the records done, as done/total once the total is known, API calls per second and an ETA.

Totals: no listing says how long it is, so a total is known only when the run says so with a
``("total", {"kind": ..., "total": n})`` event (e.g. the number of model sets once their
listings ended). The versions' total is then the sum of the sets' ``modelIds``, but only once
every counted set has been recorded or has failed (an ``error`` event with ``kind`` model_set):
a sum over the sets seen so far is not a total.

The ETA is the custom versions' calls still to make (one DescribeModel and one
DescribeModelExportTask each, the README's largest term, less a kind the run leaves out) at the
pace of the last ``RATE_WINDOW`` seconds. Calls, not records: the walk interleaves the
compression-task listing and its detail calls with the versions' calls, and an ETA from the
versions (or sets) recorded per second read several times the time left while the tasks took
the pace, and 0:00 from the sets with most of the run ahead. What it leaves out (task pages and
details, the fine-tuning, evaluation and service calls) runs beside it, so it is the least time
left, and shown only once the versions' total is known.

Calls per second: the calls made over the last ``RATE_WINDOW`` seconds, from the client's count
sampled at each record, shown (else ``…``) once the samples span ``MIN_RATE_SPAN``. Calls since
``run_start`` over the time since is wrong early: the walk starts before the run is recorded
(its calls go on during the migrations), and those calls divided by the first second of the run
read several times the pace. A difference of two samples of the count counts only calls
made between them; the window makes it the pace now, not the average since a start, and
``MIN_RATE_SPAN`` keeps one burst (the first records drained at once) from being the figure.

Too long for the terminal, the line drops whole fields, least useful first, rather than cutting
its end (which lost the rate and the ETA first). Kept longest: the ETA (what a person watching
asks), then the error count (a run going wrong; the error lines logged above may have scrolled
away), the rate (alive, paced or held), the versions' then the sets' counts (what the ETA
counts, and where their total comes from), the retries (a symptom the rate shows too), and
last the other kinds' counts, later kinds first (the summary line gives them all).

Under cron or a pipe there is nothing of it (no carriage returns in mail or log files).
``--quiet`` turns it off on a terminal too. The one summary line goes to stdout either way.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import IO, Any

from catalog.kinds import KINDS, REGISTRY
from catalog.output import is_tty
from catalog.schema import RUN_COUNTS

LABELS = {name: kind.short for name, kind in REGISTRY.items()}
#: The kinds always shown and kept longest: the versions (what the ETA counts), then the sets
#: (where the versions' total comes from).
LEADING_KINDS = ("model_version", "model_set")
#: The kinds that each cost one call per custom version (README, "What a sync calls").
PER_VERSION_KINDS = ("model_version", "model_export")
#: Redraws per second at most: enough to look alive, few enough to cost nothing.
MAX_REDRAWS_PER_SECOND = 10
#: Seconds of calls the rate is over: long enough to smooth pacing and holds, short enough to
#: follow a change of pace.
RATE_WINDOW = 5.0
#: Seconds the samples must span before a rate is shown: less is one burst, not a pace.
MIN_RATE_SPAN = 2.0
#: Seconds between the samples kept: enough for the window's edge, few to keep.
RATE_SAMPLE_STEP = 0.1
#: The width when the stream is not a terminal that says its size (and ``COLUMNS`` is unset):
#: guessing wider than the terminal wraps the line, and a wrapped line is not redrawn in place.
FALLBACK_WIDTH = 80
SEPARATOR = "  "


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
        self.done: Counter[str] = Counter()
        self.totals: dict[str, int] = {}
        self.version_total = 0  # the sets' modelIds so far: a total once every set is counted
        self.sets_failed = 0
        self.calls_per_version = len(PER_VERSION_KINDS)  # until the run says its kinds
        self.api_calls = 0
        self._samples: deque[tuple[float, int]] = deque()  # (when, calls made by then)
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
                    self._sample(data["api_calls"])
            elif name == "total":
                self.totals[str(data.get("kind"))] = int(data.get("total") or 0)
            elif name == "retry":
                self.retries += 1
            elif name == "error":
                self.errors += 1
                if data.get("kind") == "model_set" and data.get("entity_id"):
                    self.sets_failed += 1  # counted, though it has no record
            elif name == "run_start":
                kinds = data.get("kinds")
                if isinstance(kinds, (list, tuple)):
                    self.calls_per_version = sum(1 for k in PER_VERSION_KINDS if k in kinds)
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

    def eta(self) -> float | None:
        """Seconds left for the versions' calls at the current pace (the module docstring says
        what it leaves out); ``None`` until the versions' total and the pace are known."""
        total, rate = self.total("model_version"), self.rate()
        if total is None or not rate or not self.calls_per_version:
            return None
        left = total - self.done["model_version"]
        return left * self.calls_per_version / rate if left > 0 else None

    def _sample(self, calls: int) -> None:
        """Note the client's call count now; keep one sample at least ``RATE_WINDOW`` old."""
        now = self.clock()
        self.api_calls = calls
        if not self._samples or now - self._samples[-1][0] >= RATE_SAMPLE_STEP:
            self._samples.append((now, calls))
        while len(self._samples) > 1 and now - self._samples[1][0] >= RATE_WINDOW:
            self._samples.popleft()

    def rate(self) -> float | None:
        """Calls per second over about the last ``RATE_WINDOW`` seconds; ``None`` while the
        samples span less than ``MIN_RATE_SPAN``."""
        if not self._samples:
            return None
        since, calls = self._samples[0]
        span = self.clock() - since
        if span < MIN_RATE_SPAN:
            return None
        return (self.api_calls - calls) / span

    def fields(self) -> list[tuple[int, bool, str]]:
        """The line's fields in order: (priority, in the tail, text); the lowest priority
        number is kept longest (see the module docstring)."""
        out: list[tuple[int, bool, str]] = []
        for n, kind in enumerate(KINDS):  # the kinds under way, and the leading ones
            total = self.total(kind)
            if not self.done[kind] and total is None and kind not in LEADING_KINDS:
                continue
            shown = f"{self.done[kind]}" if total is None else f"{self.done[kind]}/{total}"
            priority = 3 + LEADING_KINDS.index(kind) if kind in LEADING_KINDS else 6 + n
            out.append((priority, False, f"{LABELS[kind]} {shown}"))
        rate = self.rate()
        out.append((2, True, f"{'…' if rate is None else f'{rate:.1f}'} calls/s"))
        eta = self.eta()
        if eta is not None:
            out.append((0, True, f"ETA {format_eta(eta)}"))
        if self.retries:
            out.append((5, True, f"{self.retries} retries"))
        if self.errors:
            out.append((1, True, f"{self.errors} errors"))
        return out

    def line(self, width: int | None = None) -> str:
        """The status line, within ``width`` columns (default: the stream's, less one, so a
        terminal does not wrap it) by leaving out the least useful fields."""
        width = self.columns() - 1 if width is None else width
        fields = self.fields()
        while True:
            counts = SEPARATOR.join(text for _, in_tail, text in fields if not in_tail)
            tail = SEPARATOR.join(text for _, in_tail, text in fields if in_tail)
            text = f"{counts}{SEPARATOR}| {tail}" if counts and tail else counts or tail
            if len(text) <= width or len(fields) <= 1:
                return text[: max(width, 10)]
            drop = max(range(len(fields)), key=lambda i: (fields[i][0], i))
            del fields[drop]

    def columns(self) -> int:
        """The stream's width: ``width`` if given, ``COLUMNS``, the terminal's (stderr's, not
        stdout's: stdout may be a file while the line is drawn on a terminal), else 80."""
        if self.width:
            return self.width
        env = os.environ.get("COLUMNS", "")
        if env.isdigit() and int(env) > 0:
            return int(env)
        try:
            return os.get_terminal_size(self.stream.fileno()).columns or FALLBACK_WIDTH
        except (AttributeError, ValueError, OSError):
            return FALLBACK_WIDTH

    def _maybe_draw(self, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._last_draw < 1.0 / MAX_REDRAWS_PER_SECOND:
            return
        self._last_draw = now
        self.stream.write("\r" + self.line() + "\x1b[K")
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
        #: Only a display counts each answer recorded: without one (cron, --quiet) the run
        #: does not route its pages record by record to tell the logs of answers they ignore.
        self.counts_records = progress is not None

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
            counts.get(f"{kind}_{w}", 0) for w in RUN_COUNTS
        )
        lines.append(f"  {kind:<{width}}  {seen:>7}  {ins:>7}  {upd:>7}  {dele:>7}")
    return lines
