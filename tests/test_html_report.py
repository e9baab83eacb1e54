"""`report --html FILE`: self-contained, escaped, and rendering in headless Chromium cleanly."""

from __future__ import annotations

import html
import os
import random
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from catalog import logs, report_html
from catalog.cli import cli
from catalog.fake.catalog import FakeCatalog
from catalog.report_html import hbar_chart
from tests.helpers import fake_console, sync
from tests.test_lineage import Links, expected_lineage, linked_catalog

CHROMIUM_MISSING = "chromium not found; install Debian's chromium (apt-get install -y chromium)"
#: Names a console user could give, each one a way to break a page that does not escape it.
HOSTILE = {
    "model_set": ("modelSetName", '<script>alert("set")</script> & \'q\''),
    "fine_tuning_job": ("name", '<img src="https://example.invalid/x.png"> "job"'),
    "service": ("name", "</td></tr></table><b>svc</b>"),
}


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    logs.setup("text")


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}:
            pytest.fail(f"{CHROMIUM_MISSING} (CI=true: the HTML report must be rendered)",
                        pytrace=False)
        pytest.skip(CHROMIUM_MISSING)
    return path


def _run_chromium(page: Path, *mode: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
             "--window-size=1280,2000", *mode, page.as_uri()],
            capture_output=True, text=True, timeout=60, check=False,
        )


def _console(stderr: str) -> list[str]:
    """Chromium prints each console message (errors, CSP violations, uncaught) as CONSOLE."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def _hostile_names(catalog: FakeCatalog) -> None:
    for kind, (field, name) in HOSTILE.items():
        catalog.patch(kind, catalog.keys(kind)[0], fields={field: name})


def _write_report(db_url: str, out: Path) -> Path:
    result = CliRunner().invoke(cli, ["--database-url", db_url, "report", "--html", str(out)],
                                env={"CATALOG_CONFIG": None})
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"wrote {out}")
    return out


@pytest.fixture
def report_file(db_url: str, tmp_path: Path) -> Path:
    """A report of a catalog synced twice, with changes and deletions in between, and names
    that would break an unescaped page."""
    catalog = FakeCatalog.generate(seed=3, model_sets=6, comp_tasks=20)
    _hostile_names(catalog)
    rng = random.Random(5)
    with fake_console(catalog) as server:
        sync(db_url, server)
        for key in catalog.keys("model_set")[:2]:
            catalog.change("model_set", key, rng)
        catalog.remove("compression_task", catalog.keys("compression_task")[0])
        sync(db_url, server)
    return _write_report(db_url, tmp_path / "report.html")


def test_report_is_self_contained_and_complete(report_file: Path) -> None:
    page = report_file.read_text(encoding="utf-8")
    for heading in ("Entities seen per kind over the last 2 runs", "Versions per model set",
                    "Compression tasks by strategy and outcome", "Model exports by state",
                    "Lineage", "Recent changes"):
        assert heading in page
    assert page.count("<svg") >= 5
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    # No external resources: nothing loaded from anywhere (the SVG namespace is not a fetch).
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert not re.search(r"@import|url\(", page)
    assert "<link" not in page
    assert re.search(r'<tr data-kind="model_set" data-account="default">.*?<td>update</td>', page)
    assert re.search(r'<tr data-kind="compression_task" data-account="default">.*?<td>delete</td>',
                     page)


def _lineage_section(page: str) -> str:
    return page.split('<section class="wide" id="lineage">', 1)[1].split("</section>", 1)[0]


def _lineage_rows(section: str) -> dict[str, dict[str, list[str]]]:
    """Per model set listed, per version row, the text of its cells (tags dropped, unescaped)."""
    out: dict[str, dict[str, list[str]]] = {}
    for block in section.split("<details ")[1:]:
        set_id = re.match(r'open data-model-set-id="([^"]*)"', block)
        assert set_id, block[:200]
        out[html.unescape(set_id[1])] = {
            html.unescape(model_id): [html.unescape(re.sub(r"<[^>]+>", " ", cell))
                                      for cell in re.findall(r"<td>(.*?)</td>", row)]
            for model_id, row in re.findall(r'<tr data-model-id="([^"]*)">(.*?)</tr>', block)
        }
    return out


def test_the_hostile_names_are_shown_escaped(report_file: Path) -> None:
    page = report_file.read_text(encoding="utf-8")
    section = _lineage_section(page)
    for _, name in HOSTILE.values():
        assert name not in page
    assert html.escape(HOSTILE["model_set"][1]) in section  # the set's heading
    assert html.escape(HOSTILE["fine_tuning_job"][1]) in section  # where a version came from
    assert html.escape(HOSTILE["service"][1]) in section  # where a version runs
    assert "<script>alert" not in page and 'src="https://' not in page


def test_lineage_section_lists_each_set_s_versions_with_their_links(
    db_url: str, tmp_path: Path
) -> None:
    catalog, links = linked_catalog()
    with fake_console(catalog) as server:
        assert sync(db_url, server).status == "success"
    page = _write_report(db_url, tmp_path / "lineage.html").read_text(encoding="utf-8")
    listed = _lineage_rows(_lineage_section(page))
    want = expected_lineage(catalog)
    # Every set, with exactly its versions, each version once.
    assert listed == {
        set_id: {m: listed[set_id][m] for m in catalog.get("model_set", set_id)["modelIds"]}
        for set_id in catalog.keys("model_set")
    }
    rows = {m: cells for versions in listed.values() for m, cells in versions.items()}
    assert rows.keys() == want.keys()
    _check_rows(catalog, links, rows, want)


def test_lineage_section_stops_at_its_limit_and_says_so(
    db_url: str, report_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = _lineage_rows(_lineage_section(report_file.read_text(encoding="utf-8")))
    total = sum(len(rows) for rows in full.values())
    monkeypatch.setattr(report_html, "MAX_LINEAGE_VERSIONS", 3)
    section = _lineage_section(_write_report(db_url, tmp_path / "cut.html").read_text("utf-8"))
    cut = _lineage_rows(section)
    assert sum(len(rows) for rows in cut.values()) == 3 < total
    assert f"the first 3 of {total} versions" in section
    assert [m for rows in cut.values() for m in rows] == [
        m for rows in full.values() for m in rows][:3]  # the same order, cut


def _check_rows(catalog: FakeCatalog, links: Links, rows: dict[str, list[str]],
                want: dict[str, dict[str, object]]) -> None:
    def cell(model_id: str, column: str) -> str:
        index = ("version", "status", "came from", "runs on", "latest evaluation").index(column)
        return " ".join(rows[model_id][index].split())

    trained = want[links.trained]
    came_from = cell(links.trained, "came from")
    for value in (trained["fine_tuning_job_name"], trained["fine_tuning_job_id"],
                  trained["fine_tuning_task_id"], f"({trained['fine_tuning_task_status']})"):
        assert str(value) in came_from, (value, came_from)
    made = cell(links.compressed, "came from")
    assert "compressed from" in made and links.compressor in made
    assert str(want[links.compressed]["compressed_from_model_id"]) in made
    runs_on = cell(links.served, "runs on")
    for service in links.services:
        item = catalog.get("service", service)
        assert f"{item['name']} ({item['runStatus']})" in runs_on
    assert runs_on.index("(Serving)") < runs_on.index("(Stopped)")  # Serving ones first
    evaluated = want[links.evaluated]
    latest = cell(links.evaluated, "latest evaluation")
    assert f"{evaluated['latest_eval_task_id']} ({evaluated['latest_eval_state']})" in latest
    assert f"{evaluated['latest_eval_metric']} = {evaluated['latest_eval_value']:g}" in latest
    for model_id, row in want.items():
        assert cell(model_id, "status") == row["status"]
        assert (cell(model_id, "runs on") == "—") == (row["services"] == 0), model_id
        assert (cell(model_id, "latest evaluation") == "—") == (
            row["latest_eval_task_id"] is None), model_id


def test_report_on_an_empty_database_says_so(db_url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"CATALOG_CONFIG": None}
    assert runner.invoke(cli, ["--database-url", db_url, "db", "upgrade"], env=env).exit_code == 0
    out = tmp_path / "r.html"
    result = runner.invoke(cli, ["--database-url", db_url, "report", "--html", str(out)], env=env)
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    assert "no finished runs yet" in page and "no runs yet" in page
    assert "no model versions stored yet" in _lineage_section(page)


def test_report_needs_a_schema(tmp_path: Path) -> None:
    db = tmp_path / "empty.db"
    db.touch()
    result = CliRunner().invoke(cli, ["--database-url", f"sqlite:///{db}", "report", "--html",
                                      str(tmp_path / "r.html")], env={"CATALOG_CONFIG": None})
    assert result.exit_code == 6
    assert "no catalog yet" in result.stderr and "qianfan-catalog sync" in result.stderr
    assert not (tmp_path / "r.html").exists()


def test_values_from_the_database_are_escaped() -> None:
    svg = hbar_chart([("<script>alert(1)</script>", 2.0, "2 & more")])
    assert "<script>" not in svg
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in svg and "2 &amp; more" in svg


def test_renders_in_headless_chromium_without_console_errors(report_file: Path,
                                                            tmp_path: Path) -> None:
    dom = _run_chromium(report_file, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert _console(dom.stderr) == []
    assert 'data-ready="1"' in dom.stdout  # the inline script ran to its end
    assert dom.stdout.count("<svg") >= 5
    shot = tmp_path / "report.png"
    png = _run_chromium(report_file, f"--screenshot={shot}")
    assert png.returncode == 0, png.stderr[-2000:]
    assert _console(png.stderr) == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_console_error_detection_works(tmp_path: Path) -> None:
    """The check above could pass by never seeing anything; a broken page must be caught."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><head><meta http-equiv=\"Content-Security-Policy\" "
        "content=\"default-src 'none'; script-src 'unsafe-inline'\"></head><body>"
        '<img src="https://example.invalid/x.png"><script>nope();</script></body></html>'
    )
    result = _run_chromium(bad, "--dump-dom")
    console = "\n".join(_console(result.stderr))
    assert "Content Security Policy" in console and "nope is not defined" in console


def test_the_runs_chart_breaks_a_line_where_a_run_did_not_read_the_kind() -> None:
    svg = report_html.line_chart([1, 2, 3, 4], {"service": [5, None, 6, 7]})
    polylines = re.findall(r'<polyline points="([^"]*)"', svg)
    assert [len(p.split()) for p in polylines] == [1, 2]  # run 1; runs 3 and 4
    assert re.findall(r"<title>run (\d+): (\d+) ", svg) == [("1", "5"), ("3", "6"), ("4", "7")]


def test_the_runs_chart_leaves_out_what_a_run_did_not_read(db_url: str) -> None:
    """The opt-in kind, off by default, is no line of zeros; a kind left out of one run's
    --kinds has no point for that run, and one read in every run has one in each."""
    from catalog import db
    from catalog.kinds import DEFAULT_KINDS

    catalog = FakeCatalog.generate(seed=4, model_sets=3, comp_tasks=5)
    with fake_console(catalog) as server:
        sync(db_url, server)
        sync(db_url, server, kinds=tuple(k for k in DEFAULT_KINDS if k != "service"))
        sync(db_url, server)
    engine = db.create_engine_for(db_url)
    try:
        with engine.connect() as conn:
            run_ids, series = report_html._recent_runs(conn, None)
    finally:
        engine.dispose()
    assert len(run_ids) == 3
    assert "eval_result_export_task" not in series
    first, skipped, last = series["service"]
    assert skipped is None
    assert first == last and first is not None and first >= len(catalog.keys("service")) > 0
    assert series["model_set"] == [len(catalog.keys("model_set"))] * 3
