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
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from typing import Any

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


def _is_whole(column: str, values: Sequence[Any], cells: Sequence[str]) -> bool:
    """Whether a column's values must never be cut: times, ids and numbers."""
    if ID_COLUMN.match(column):
        return True
    shown = [(v, c) for v, c in zip(values, cells, strict=True) if c != ""]
    return bool(shown) and all(
        isinstance(v, dt.datetime | dt.date | int | float | Decimal) or ISO_CELL.match(c)
        for v, c in shown
    )


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


def render_table(columns: Sequence[str], rows: Sequence[Sequence[Any]],
                 width: int | None = None) -> str:
    """``rows`` as a table ``width`` columns wide (by default :func:`table_width`)."""
    if not rows:
        return "(no rows)"
    width = table_width() if width is None else width
    cells = [[text_value(v) for v in row] for row in rows]
    whole = [_is_whole(col, [row[i] for row in rows], [r[i] for r in cells])
             for i, col in enumerate(columns)]
    longest = [max(display_width(r[i]) for r in cells) for i in range(len(columns))]
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
        return _render_blocks(columns, cells, whole, width)
    _, _, sep, widths = min(layouts)
    lines = [sep.join(_pad(c, w) for c, w in zip(columns, widths, strict=True))]
    lines.append(sep.join("-" * w for w in widths))
    for r in cells:
        lines.append(sep.join(_pad(c, w) for c, w in zip(r, widths, strict=True)))
    return "\n".join(line.rstrip() for line in lines)


def _render_blocks(columns: Sequence[str], cells: list[list[str]], whole: list[bool],
                   width: int) -> str:
    """One ``column: value`` line per field, rows separated by a rule: for many columns."""
    label = min(max(display_width(c) for c in columns), width // 3)
    room = width - label - 2
    blocks = []
    for n, r in enumerate(cells, 1):
        lines = [f"-- row {n} " + "-" * max(0, width - 10 - len(str(n)))]
        for col, value, keep in zip(columns, r, whole, strict=True):
            lines.append(f"{_pad(col, label)}: {value if keep else _cut(value, room)}")
        blocks.append("\n".join(line.rstrip() for line in lines))
    return "\n".join(blocks)


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


def render_csv(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    return "".join(iter_csv(columns, rows)).rstrip("\n")


def render_json(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    return "".join(iter_json(columns, rows)).rstrip("\n")


def render(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str = "table",
           width: int | None = None) -> str:
    if fmt == "table":
        return render_table(columns, rows, width)
    if fmt == "csv":
        return render_csv(columns, rows)
    if fmt == "json":
        return render_json(columns, rows)
    raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")


def iter_rendered(columns: Sequence[str], rows: Iterable[Sequence[Any]], fmt: str) -> Iterator[str]:
    """``render``'s text in pieces, reading ``rows`` only as CSV and JSON go; a table needs every
    row first, to size its columns."""
    if fmt == "csv":
        yield from iter_csv(columns, rows)
    elif fmt == "json":
        yield from iter_json(columns, rows)
    else:
        yield render(columns, list(rows), fmt) + "\n"
