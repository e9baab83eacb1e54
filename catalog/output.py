"""Rendering ``(columns, rows)`` as a table, CSV or JSON for the CLI.

The table form is for people at an 80-column terminal: wide cells are cut with an ellipsis and,
when even cut columns would not fit, each row is shown as a block of ``column: value`` lines
instead. CSV and JSON are for programs and keep every value whole, except times: every time printed
anywhere (table, CSV, JSON, the HTML report) is ISO 8601 in UTC with ``Z``, to the second
(:func:`iso_time`), so a value copied from one output matches another; ``as-of`` reads such a
time as the whole of that second.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import unicodedata
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

FORMATS = ("table", "csv", "json")
DEFAULT_WIDTH = 80
MIN_COLUMN = 8
ELLIPSIS = "…"
SEPARATOR = "  "


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


def _fit(widths: list[int], total: int) -> list[int] | None:
    """Shrink the widest columns until the row fits in ``total``; ``None`` if it cannot."""
    sep = len(SEPARATOR) * (len(widths) - 1)
    floor = [min(w, MIN_COLUMN) for w in widths]
    if sum(floor) + sep > total:
        return None
    out = list(widths)
    while sum(out) + sep > total:
        widest = max(range(len(out)), key=lambda i: out[i])
        over = sum(out) + sep - total
        second = max((w for i, w in enumerate(out) if i != widest), default=0)
        out[widest] = max(floor[widest], out[widest] - max(1, min(over, out[widest] - second)))
    return out


def render_table(columns: Sequence[str], rows: Sequence[Sequence[Any]],
                 width: int = DEFAULT_WIDTH) -> str:
    if not rows:
        return "(no rows)"
    cells = [[text_value(v) for v in row] for row in rows]
    natural = [max(display_width(col), *(display_width(r[i]) for r in cells))
               for i, col in enumerate(columns)]
    widths = _fit(natural, width)
    # Cutting most columns makes a table nobody can read: then one block per row instead.
    cut = 0 if widths is None else sum(w < n for w, n in zip(widths, natural, strict=True))
    if widths is None or 2 * cut >= len(widths):
        return _render_blocks(columns, cells, width)
    lines = [SEPARATOR.join(_pad(c, w) for c, w in zip(columns, widths, strict=True))]
    lines.append(SEPARATOR.join("-" * w for w in widths))
    for r in cells:
        lines.append(SEPARATOR.join(_pad(c, w) for c, w in zip(r, widths, strict=True)))
    return "\n".join(line.rstrip() for line in lines)


def _render_blocks(columns: Sequence[str], cells: list[list[str]], width: int) -> str:
    """One ``column: value`` line per field, rows separated by a rule: for many columns."""
    label = min(max(display_width(c) for c in columns), width // 3)
    blocks = []
    for n, r in enumerate(cells, 1):
        lines = [f"-- row {n} " + "-" * max(0, width - 10 - len(str(n)))]
        for col, value in zip(columns, r, strict=True):
            lines.append(f"{_pad(col, label)}: {_cut(value, width - label - 2)}")
        blocks.append("\n".join(line.rstrip() for line in lines))
    return "\n".join(blocks)


def render_csv(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(
            [json_value(v) if not isinstance(v, dict | list | bool) else text_value(v)
             for v in row]
        )
    return buf.getvalue().rstrip("\n")


def render_json(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A JSON array of objects keyed by column name."""
    data = [{c: json_value(v) for c, v in zip(columns, row, strict=True)} for row in rows]
    return json.dumps(data, ensure_ascii=False, indent=2)


def render(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str = "table",
           width: int = DEFAULT_WIDTH) -> str:
    if fmt == "table":
        return render_table(columns, rows, width)
    if fmt == "csv":
        return render_csv(columns, rows)
    if fmt == "json":
        return render_json(columns, rows)
    raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
