"""Tables as wide as the terminal, times and ids never cut; the progress line's rate and width."""

from __future__ import annotations

import datetime as dt
import io
import os
import re
from typing import Any

import pytest

from catalog import output, progress
from tests.helpers import Clock, FakeTTY

MOMENT = dt.datetime(2026, 12, 3, 0, 40, 41, tzinfo=dt.UTC)
STAMP = "2026-12-03T00:40:41Z"
MESSAGE = "interrupted by SIGTERM while describing model versions of set am-4f2a; " * 3




def _runs() -> tuple[list[str], list[tuple[object, ...]]]:
    """`runs` of several accounts, a long free-text column last."""
    columns = ["run_id", "account", "started_at", "status", "errors", "error"]
    rows: list[tuple[object, ...]] = [
        (12, "production-eu", MOMENT, "interrupted", 3, MESSAGE),
        (11, "dev", MOMENT - dt.timedelta(hours=1), "success", 0, None),
    ]
    return columns, rows


# -- the table's width ---------------------------------------------------------------------------


def test_piped_width_is_columns_when_set_else_80(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    assert output.table_width(io.StringIO()) == 80
    monkeypatch.setenv("COLUMNS", "200")
    assert output.table_width(io.StringIO()) == 200
    monkeypatch.setenv("COLUMNS", "wide")
    assert output.table_width(io.StringIO()) == 80
    monkeypatch.setenv("COLUMNS", "12")
    assert output.table_width(io.StringIO()) == output.MIN_WIDTH


def test_a_terminal_is_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr(output.shutil, "get_terminal_size",
                        lambda fallback=(80, 24): os.terminal_size((132, 40)))
    assert output.table_width(FakeTTY()) == 132
    monkeypatch.undo()
    monkeypatch.setenv("COLUMNS", "200")  # shutil's own reading of COLUMNS, on a terminal too
    assert output.table_width(FakeTTY()) == 200


def test_render_defaults_to_stdout_terminal_width(monkeypatch: pytest.MonkeyPatch) -> None:
    columns, rows = _runs()
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr(output.sys, "stdout", FakeTTY())
    monkeypatch.setattr(output.shutil, "get_terminal_size",
                        lambda fallback=(80, 24): os.terminal_size((300, 40)))
    wide = output.render(columns, rows)
    assert MESSAGE.strip() in wide and "…" not in wide  # 300 columns: nothing cut
    monkeypatch.setattr(output.sys, "stdout", io.StringIO())  # piped: 80
    narrow = output.render(columns, rows)
    assert all(output.display_width(line) <= 80 for line in narrow.splitlines())
    assert MESSAGE.strip() not in narrow


# -- what is cut, and what never is ---------------------------------------------------------------


@pytest.mark.parametrize("width", [80, 100, 132])
def test_free_text_is_cut_times_and_ids_never(width: int) -> None:
    columns, rows = _runs()
    rendered = output.render_table(columns, rows, width)
    lines = rendered.splitlines()
    assert all(output.display_width(line) <= width for line in lines)
    assert lines[0].split()[:3] == ["run_id", "account", "started_at"]  # a table, not blocks
    assert lines[2].split()[:3] == ["12", "production-eu", STAMP]
    assert lines[3].split()[:3] == ["11", "dev", "2026-12-02T23:40:41Z"]
    assert "…" in lines[2] and MESSAGE.strip() not in rendered  # the message took the cut


def test_a_time_already_text_and_an_id_column_are_kept_whole() -> None:
    columns = ["entity_id", "export_ref", "changed_at", "old_value", "new_value"]
    ref = "ev-3f9a2b"
    rows = [("amv-9d8c7b6a5f4e", ref, STAMP, "x" * 60, "y" * 60)]
    rendered = output.render_table(columns, rows, 80)
    lines = rendered.splitlines()
    assert not rendered.startswith("-- row")
    assert lines[2].split()[:3] == ["amv-9d8c7b6a5f4e", ref, STAMP]
    assert lines[2].count("…") == 2  # both free columns gave, a little each
    assert all(output.display_width(line) <= 80 for line in lines)


def test_numbers_keep_their_digits_when_only_their_header_can_give() -> None:
    columns = ["name", "compression_tasks_as_source"]
    rows = [("n" * 100, 1234567)]
    rendered = output.render_table(columns, rows, 40)
    header, _, row = rendered.splitlines()
    assert row.endswith("1234567") and "…" in row
    assert output.display_width(header) <= 40


def test_one_space_between_columns_before_cutting_a_column_or_falling_back_to_blocks() -> None:
    columns = ["run_id", "account", "started_at", "status", "seconds", "new", "changed",
               "deleted", "errors"]
    rows = [(12, "prod-eu", MOMENT, "success", 0.4, 120, 4, 0, 3),
            (11, "dev", MOMENT, "success", 12.5, 0, 0, 0, 0)]  # 86 columns with two spaces
    lines = output.render_table(columns, rows, 80).splitlines()
    assert lines[0].split() == columns and "  " not in lines[1]  # one space between
    assert lines[2].split() == ["12", "prod-eu", STAMP, "success", "0.4", "120", "4", "0",
                                "3"]
    assert "…" not in "".join(lines) and max(map(len, lines)) <= 80
    # wide enough for two spaces: two spaces
    assert "run_id  account" in output.render_table(columns, rows, 90)


def test_blocks_when_the_whole_columns_do_not_fit_and_still_nothing_whole_is_cut() -> None:
    columns = ["run_id", "account", "started_at", "finished_at", "status", "error"]
    rows = [(12, "production-eu", MOMENT, MOMENT, "interrupted", MESSAGE)]
    rendered = output.render_table(columns, rows, 40)  # two times alone are 42 columns
    assert rendered.startswith("-- row 1")
    assert f"started_at : {STAMP}" in rendered and f"finished_at: {STAMP}" in rendered
    error = next(line for line in rendered.splitlines() if line.startswith("error"))
    assert error.endswith("…") and output.display_width(error) <= 40


def test_csv_and_json_ignore_the_width(monkeypatch: pytest.MonkeyPatch) -> None:
    columns, rows = _runs()
    monkeypatch.setenv("COLUMNS", "40")
    assert MESSAGE in output.render(columns, rows, "csv")
    assert MESSAGE in output.render(columns, rows, "json")


# -- the progress line's rate -------------------------------------------------------------------


def _rate(line: str) -> float | None:
    found = re.search(r"(\S+) calls/s", line)
    assert found is not None, line
    return None if found[1] == "…" else float(found[1])


def test_calls_made_before_the_run_started_do_not_inflate_the_rate() -> None:
    clock = Clock()
    display = progress.Progress(FakeTTY(), clock=clock, width=300)
    display("run_start", {"run_id": 1})
    calls = 180  # the walk ran at 60 calls/s for 3 s while the schema was created
    shown = []
    for _ in range(600):  # 10 s at 60 calls/s, a record per call
        clock.now += 1 / 60
        calls += 1
        display("record", {"kind": "model_version", "row": {}, "api_calls": calls})
        shown.append(_rate(display.line()))
    early = shown[: int(60 * progress.MIN_RATE_SPAN) - 1]
    assert set(early) == {None}  # no figure from a window too short to mean anything
    later = [r for r in shown if r is not None]
    assert later and all(59.0 <= r <= 60.5 for r in later)  # was 302, 184, 143...


def test_the_rate_is_the_recent_pace_not_the_average_since_the_start() -> None:
    clock = Clock()
    display = progress.Progress(FakeTTY(), clock=clock, width=300)
    display("run_start", {"run_id": 1})
    for calls in range(1, 1200 + 100 + 1):  # 20 s at 60 calls/s, then 10 s at 10 calls/s
        clock.now += 1 / 60 if calls <= 1200 else 1 / 10
        display("record", {"kind": "model_version", "row": {}, "api_calls": calls})
    rate = _rate(display.line())
    assert rate is not None and 9.5 <= rate <= 10.5  # the average since the start is 43
    assert len(display._samples) <= progress.RATE_WINDOW / progress.RATE_SAMPLE_STEP + 2


def test_the_rate_falls_while_no_calls_are_made() -> None:
    clock = Clock()
    display = progress.Progress(FakeTTY(), clock=clock, width=300)
    for n in range(1, 601):
        clock.now += 1 / 60
        display("record", {"kind": "model_set", "row": {}, "api_calls": n})
    before = _rate(display.line())
    clock.now += 30  # a Retry-After hold: no answers, no records
    after = _rate(display.line())
    assert before is not None and after is not None and after < before / 4


# -- the progress line's width -------------------------------------------------------------------


def _busy(width: int | None) -> progress.Progress:
    """A display with every field: many kinds, an ETA, a rate, retries and errors."""
    clock = Clock()
    display = progress.Progress(FakeTTY(), clock=clock, width=width)
    display("run_start", {"run_id": 1})
    display("total", {"kind": "model_set", "total": 40})
    kinds = [k for k in progress.KINDS if k not in progress.LEADING_KINDS]
    for n in range(1, 301):
        clock.now += 0.05
        display("record", {"kind": "model_set" if n <= 40 else "model_version",
                           "row": {"model_ids": ["a"] * 10}, "api_calls": 2 * n})
        display("record", {"kind": kinds[n % len(kinds)], "row": {}, "api_calls": 2 * n})
    display("retry", {"call": "DescribeModel", "attempt": 1, "delay": 0.1, "error": "x"})
    display("error", {"kind": "model_export", "call": "x", "message": "bad"})
    return display


def test_at_80_columns_the_rate_and_eta_stay_and_counts_of_other_kinds_go() -> None:
    display = _busy(80)
    full = display.line(10_000)
    assert len(full) > 80  # otherwise this tests nothing
    drawn = display.stream.getvalue().split("\r")  # type: ignore[attr-defined]
    last = drawn[-1].removesuffix("\x1b[K")
    assert len(last) <= 79 and last == display.line()
    assert "calls/s" in last and "ETA" in last and "1 errors" in last
    assert "versions 260/400" in last
    assert "eval units" in full and "eval units" not in last


@pytest.mark.parametrize("width", range(10, 200, 6))
def test_fields_are_left_out_in_the_documented_order(width: int) -> None:
    line = _busy(None).line(width)
    assert len(line) <= width
    order = ["ETA", "1 errors", "calls/s", "versions", "sets", "1 retries"]
    kept = [field in line for field in order]
    assert kept == sorted(kept, reverse=True), (width, line)  # once one is gone, so are the rest
    if width >= 24:
        assert "ETA" in line and "errors" in line


def test_the_line_is_as_wide_as_the_stream_or_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    display = _busy(None)
    assert display.columns() == progress.FALLBACK_WIDTH  # a StringIO has no size to tell
    monkeypatch.setattr(progress.os, "get_terminal_size", lambda fd: os.terminal_size((132, 40)))
    monkeypatch.setattr(display.stream, "fileno", lambda: 2)
    assert display.columns() == 132 and len(display.line()) <= 131
    monkeypatch.setenv("COLUMNS", "100")
    assert display.columns() == 100


# -- a table of a large answer -----------------------------------------------------------------


class _Row(list):  # type: ignore[type-arg]
    """A row a weak reference can follow, to see whether the renderer kept it."""


def test_a_table_keeps_its_rows_as_text_not_as_rows() -> None:
    """A table reads every row before its first line (to size its columns) but keeps only their
    text, in a spool: the rows themselves (the database's values, raw JSON and all) go as they
    are read, so an `as-of` of every task does not hold them all in memory."""
    import weakref

    refs: list[weakref.ref[_Row]] = []

    def rows() -> object:
        for n in range(2000):
            row = _Row((n, f"set-{n}", MOMENT, {"raw": "x" * 100}))
            refs.append(weakref.ref(row))
            yield row

    lines = output.iter_table(["id", "name", "at", "raw"], rows(), 200)  # type: ignore[arg-type]
    assert next(lines).split() == ["id", "name", "at", "raw"]
    assert len(refs) == 2000  # every row read before the first line
    assert sum(ref() is not None for ref in refs) <= 1  # and none kept (the loop's last at most)
    body = list(lines)[1:]
    assert len(body) == 2000 and body[1999].split()[:2] == ["1999", "set-1999"]


def test_a_table_past_the_spools_memory_is_the_same_table(monkeypatch: pytest.MonkeyPatch) -> None:
    columns, rows = _runs()
    rows = rows * 300
    in_memory = output.render_table(columns, rows, 120)
    spools: list[Any] = []
    real = output.tempfile.SpooledTemporaryFile

    def spy(*args: Any, **kwargs: Any) -> Any:
        spools.append(real(*args, **kwargs))
        return spools[-1]

    monkeypatch.setattr(output, "SPOOL_BYTES", 1000)
    monkeypatch.setattr(output.tempfile, "SpooledTemporaryFile", spy)
    assert output.render_table(columns, rows, 120) == in_memory
    assert spools and spools[0]._rolled  # it went to a file
    # blocks (a table too narrow for the columns) read the spool the same way
    monkeypatch.setattr(output, "SPOOL_BYTES", 8 * 2**20)
    blocks = output.render_table(columns, rows[:50], 40)
    monkeypatch.setattr(output, "SPOOL_BYTES", 100)
    assert output.render_table(columns, rows[:50], 40) == blocks
    assert blocks.startswith("-- row 1 ") and blocks.count("-- row ") == 50


def test_a_large_answer_is_written_in_chunks_not_a_line_at_a_time() -> None:
    lines = [f"line {n}\n" for n in range(20000)]
    chunks = list(output.in_chunks(iter(lines), size=1000))
    assert "".join(chunks) == "".join(lines)
    assert len(chunks) <= len("".join(lines)) // 1000 + 1
    assert all(len(c) >= 1000 for c in chunks[:-1])
    assert list(output.in_chunks(iter([]))) == []
