"""Rendering ``(columns, rows)`` as a table, CSV or JSON for the CLI.

The table form is for people: it is as wide as the terminal stdout is (``COLUMNS`` first, as
:func:`shutil.get_terminal_size` reads it), because a fixed 80 columns cut values a wider terminal
had room for. Piped, there is no terminal to measure, so it is ``COLUMNS`` when set, else 80: the
same text whichever terminal a cron job or script happens to start from. Scripts that need every
value whole read ``--format csv`` or ``json``, which never cut anything.

When the natural widths do not fit, columns go one space apart instead of two if that cuts fewer
of them, and only free text (names, messages, states) is cut, with an ellipsis, widest first.
Times, ids (``id``, ``*_id``, ``*_ref``) and numbers are never cut: a cut one is not shorter but
wrong, and a person copies them into other commands (a run's ``started_at`` into ``as-of``, an
id into ``history``). When those alone do not fit, or most columns would be cut, each row is
shown as a block of ``column: value`` lines instead, where such values are still whole (a line
may then wrap rather than lose characters).

Every time printed anywhere (table, CSV, JSON, the HTML report) is ISO 8601 in UTC with ``Z``, to
the second (:func:`iso_time`), so a value copied from one output matches another; ``as-of``
reads such a time as the whole of that second.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import re
import shutil
import sys
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from typing import IO, Any

from catalog.errors import CatalogError

FORMATS = ("table", "csv", "json")
#: The width without a terminal to measure and without ``COLUMNS``.
DEFAULT_WIDTH = 80
#: Narrower than this, not even a time and its label fit a line: lines wrap instead.
MIN_WIDTH = 40
MIN_COLUMN = 8
#: Column names whose values are ids: what a person copies into another command.
ID_COLUMN = re.compile(r"^(id|.*_id|.*_ref)$")
#: A cell in :func:`iso_time`'s form (a time already turned to text is still a time).
ISO_CELL = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
ELLIPSIS = "…"
#: A table's cells are kept in memory up to this many bytes of text, in a temporary file past it.
SPOOL_BYTES = 8 * 2**20
SEPARATOR = "  "
NARROW_SEPARATOR = " "


def iso_time(value: dt.datetime) -> str:
    """The one printed form of a time: ``2024-06-01T12:00:00Z``."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def text_value(value: Any) -> str:
    """One cell as text: times by :func:`iso_time`, NULL as empty, JSON kept compact."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return iso_time(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 1 or value == 0 else f"{value:.3g}"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return " ".join(str(value).split()) if "\n" in str(value) else str(value)


def json_value(value: Any) -> Any:
    """A JSON-ready value: times by :func:`iso_time`, Decimals as floats, the rest as is."""
    if isinstance(value, dt.datetime):
        return iso_time(value)
    if isinstance(value, Decimal):
        return float(value)
    return value


def display_width(text: str) -> int:
    """Terminal columns ``text`` takes: wide East Asian characters (CJK names) take two."""
    if text.isascii():  # most cells: ids, times, numbers (a character each, looked up fast)
        return len(text)
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def _cut(text: str, width: int) -> str:
    """``text`` cut to at most ``width`` terminal columns, with an ellipsis when cut."""
    if display_width(text) <= width:
        return text
    out, used = [], 0
    for ch in text:
        w = display_width(ch)
        if used + w > width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + ELLIPSIS


def _pad(text: str, width: int) -> str:
    cut = _cut(text, width)
    return cut + " " * (width - display_width(cut))


def is_tty(stream: Any) -> bool:
    """Whether ``stream`` is a terminal; a closed stream or a stand-in without ``isatty`` is not."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def table_width(stream: Any = None) -> int:
    """The width a table is rendered to on ``stream`` (stdout): see the module docstring."""
    stream = sys.stdout if stream is None else stream
    if is_tty(stream):
        width = shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns
    else:
        env = os.environ.get("COLUMNS", "")
        width = int(env) if env.isdigit() and int(env) > 0 else DEFAULT_WIDTH
    return max(width, MIN_WIDTH)


def _shrink(out: list[int], floor: list[int], which: Sequence[int], excess: int) -> int:
    """Take up to ``excess`` columns from the ``which`` columns, widest first; what is left."""
    while excess > 0:
        live = [i for i in which if out[i] > floor[i]]
        if not live:
            break
        widest = max(live, key=lambda i: out[i])
        second = max((out[i] for i in live if i != widest), default=0)
        step = min(max(1, min(excess, out[widest] - second)), out[widest] - floor[widest])
        out[widest] -= step
        excess -= step
    return excess


def _fit(natural: list[int], floor: list[int], whole: list[bool], total: int,
         separator: str) -> list[int] | None:
    """Column widths within ``total``, cutting free text first; ``None`` if none fit.

    ``floor`` is how narrow each column may go: a whole column's widest value (its name may be
    cut, down to ``MIN_COLUMN``), a free one's ``MIN_COLUMN``.
    """
    sep = len(separator) * (len(natural) - 1)
    if sum(floor) + sep > total:
        return None
    out = list(natural)
    excess = sum(out) + sep - total
    excess = _shrink(out, floor, [i for i, w in enumerate(whole) if not w], excess)
    _shrink(out, floor, [i for i, w in enumerate(whole) if w], excess)
    return out


class _Measured:
    """What a table's layout needs of every row's cells, measured as the rows go by into a
    spool (:func:`iter_table`): a table must see every row before it can size its columns, and
    a large answer held as rows (the database's values, then their text) took hundreds of
    megabytes."""

    def __init__(self, columns: Sequence[str], rows: Iterable[Sequence[Any]], spool: IO[str]):
        n = len(columns)
        self.count = 0
        self.longest = [0] * n
        shown, exact = [False] * n, [True] * n  # exact: every shown value a time or a number
        for row in rows:
            cells = [text_value(v) for v in row]
            for i, (value, cell) in enumerate(zip(row, cells, strict=True)):
                if cell == "":
                    continue
                self.longest[i] = max(self.longest[i], display_width(cell))
                shown[i] = True
                if exact[i] and not (
                    isinstance(value, dt.datetime | dt.date | int | float | Decimal)
                    or ISO_CELL.match(cell)
                ):
                    exact[i] = False
            spool.write(json.dumps(cells, ensure_ascii=False) + "\n")
            self.count += 1
        #: Columns never cut: ids, and times and numbers.
        self.whole = [bool(ID_COLUMN.match(col)) or (s and e)
                      for col, s, e in zip(columns, shown, exact, strict=True)]


def iter_table(columns: Sequence[str], rows: Iterable[Sequence[Any]],
               width: int | None = None) -> Iterator[str]:
    """``rows`` as a table ``width`` columns wide (by default :func:`table_width`), a line at a
    time (each without its newline). The rows are read once, before the first line, and kept
    only as text: in memory up to ``SPOOL_BYTES``, in a temporary file past it."""
    with tempfile.SpooledTemporaryFile(SPOOL_BYTES, mode="w+", encoding="utf-8") as spool:
        try:
            measured = _Measured(columns, rows, spool)
        except OSError as exc:  # the spool's file: TMPDIR missing, read-only or full
            raise CatalogError(
                f"cannot keep the table's rows in a temporary file in {tempfile.gettempdir()} "
                f"({exc.strerror or exc}): set TMPDIR to a writable directory, or use "
                "--format csv or json, which need none"
            ) from None
        if not measured.count:
            yield "(no rows)"
            return
        spool.seek(0)
        cells: Iterator[list[str]] = (json.loads(line) for line in spool)
        yield from _layout(columns, measured, cells, table_width() if width is None else width)


def _layout(columns: Sequence[str], measured: _Measured, cells: Iterator[list[str]],
            width: int) -> Iterator[str]:
    whole, longest = measured.whole, measured.longest
    natural = [max(display_width(col), n) for col, n in zip(columns, longest, strict=True)]
    floor = [max(n, min(w, MIN_COLUMN)) if keep else min(w, MIN_COLUMN)
             for n, w, keep in zip(longest, natural, whole, strict=True)]
    # One space between columns where it cuts fewer columns than two, or saves the table from
    # blocks: several accounts' runs fit 80 columns so, every time whole.
    layouts = []
    for rank, sep in enumerate((SEPARATOR, NARROW_SEPARATOR)):
        fitted = _fit(natural, floor, whole, width, sep)
        if fitted is not None:
            cut = sum(w < n for w, n in zip(fitted, natural, strict=True))
            layouts.append((cut, rank, sep, fitted))
    # Cutting most columns makes a table nobody can read: then one block per row instead.
    if not layouts or 2 * min(layouts)[0] >= len(columns):
        yield from _iter_blocks(columns, cells, whole, width)
        return
    _, _, sep, widths = min(layouts)
    yield sep.join(_pad(c, w) for c, w in zip(columns, widths, strict=True)).rstrip()
    yield sep.join("-" * w for w in widths).rstrip()
    for r in cells:
        yield sep.join(_pad(c, w) for c, w in zip(r, widths, strict=True)).rstrip()


def render_table(columns: Sequence[str], rows: Iterable[Sequence[Any]],
                 width: int | None = None) -> str:
    """``rows`` as a table ``width`` columns wide (by default :func:`table_width`)."""
    return "\n".join(iter_table(columns, rows, width))


def _iter_blocks(columns: Sequence[str], cells: Iterable[list[str]], whole: list[bool],
                 width: int) -> Iterator[str]:
    """One ``column: value`` line per field, rows separated by a rule: for many columns."""
    label = min(max(display_width(c) for c in columns), width // 3)
    room = width - label - 2
    labels = [_pad(col, label) + ": " for col in columns]
    for n, r in enumerate(cells, 1):
        yield (f"-- row {n} " + "-" * max(0, width - 10 - len(str(n)))).rstrip()
        for name, value, keep in zip(labels, r, whole, strict=True):
            yield (name + (value if keep else _cut(value, room))).rstrip()


def iter_csv(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    """CSV text a line at a time (each with its newline), reading ``rows`` only as it goes."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")

    def line(values: Sequence[Any]) -> str:
        writer.writerow(values)
        text = buf.getvalue()
        buf.seek(0)
        buf.truncate()
        return text

    yield line(columns)
    for row in rows:
        yield line([json_value(v) if not isinstance(v, dict | list | bool) else text_value(v)
                    for v in row])


def iter_json(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    """A JSON array of objects keyed by column name, an object at a time (the same text as
    ``json.dumps`` of the whole list with ``indent=2``), reading ``rows`` only as it goes."""
    first = True
    for row in rows:
        item = {c: json_value(v) for c, v in zip(columns, row, strict=True)}
        text = json.dumps(item, ensure_ascii=False, indent=2).replace("\n", "\n  ")
        yield ("[\n  " if first else ",\n  ") + text
        first = False
    yield "[]\n" if first else "\n]\n"


def render(columns: Sequence[str], rows: Iterable[Sequence[Any]], fmt: str = "table",
           width: int | None = None) -> str:
    """The whole answer as one text, without its last newline."""
    if fmt == "table":
        return render_table(columns, rows, width)
    return "".join(iter_rendered(columns, rows, fmt)).rstrip("\n")


def in_chunks(pieces: Iterable[str], size: int = 1 << 16) -> Iterator[str]:
    """``pieces`` joined into strings of about ``size`` characters: a write (and click's flush)
    per line of a large answer cost more than rendering it."""
    buf: list[str] = []
    held = 0
    for piece in pieces:
        buf.append(piece)
        held += len(piece)
        if held >= size:
            yield "".join(buf)
            buf, held = [], 0
    if buf:
        yield "".join(buf)


def iter_rendered(columns: Sequence[str], rows: Iterable[Sequence[Any]], fmt: str) -> Iterator[str]:
    """``render``'s text in pieces, reading ``rows`` only as CSV and JSON go; a table reads every
    row before its first line, to size its columns, but holds them as text in a spool
    (:class:`_Measured`), not in memory."""
    if fmt == "csv":
        yield from iter_csv(columns, rows)
    elif fmt == "json":
        yield from iter_json(columns, rows)
    elif fmt == "table":
        for line in iter_table(columns, rows):
            yield line + "\n"
    else:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
