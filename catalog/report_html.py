"""`report --html FILE`: the catalog at a glance, as one self-contained HTML page.

Self-contained means it opens from a mail attachment or a file share with no network: charts
are inline SVG drawn here, the style and the few lines of script are inline, and the page's
Content-Security-Policy forbids every fetch, so a stray external reference would fail loudly (a
console error the test looks for) instead of leaking the reader's IP to a CDN.

All data comes from read-only queries: the report views through ``catalog.queries`` and a few
aggregates of the base tables here. Every value from the database is HTML-escaped: names come
from the account's users (unicode, quotes, angle brackets and all).
"""

from __future__ import annotations

import datetime as dt
import html
from collections import defaultdict
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from sqlalchemy import Connection, func, select

from catalog import db, queries
from catalog.errors import ConfigError
from catalog.kinds import KINDS, REGISTRY
from catalog.output import iso_time
from catalog.schema import SPECS, changes, eval_result_exports, model_sets, sync_runs

RECENT_RUNS = 30
TOP_SETS = 25
MAX_CHANGES = 200
#: Versions the lineage section lists at most (a thousand sets would make a page nobody reads).
MAX_LINEAGE_VERSIONS = 1000
LINEAGE_COLUMNS = (
    "model_id",
    "model_name",
    "model_set_id",
    "model_set_name",
    "status",
    "source_type",
    "fine_tuning_task_id",
    "fine_tuning_task_status",
    "fine_tuning_job_id",
    "fine_tuning_job_name",
    "compressed_by_task_id",
    "compressed_from_model_id",
    "latest_eval_task_id",
    "latest_eval_task_name",
    "latest_eval_state",
    "latest_eval_metric",
    "latest_eval_value",
)
PALETTE = ("#3b6fd8", "#e07b39", "#3aa17e", "#b04fc2", "#c9a227", "#d6455d", "#5b6475", "#2bb3c0")
STATUS_COLORS = {
    "succeeded": "#3aa17e",
    "Done": "#3aa17e",
    "failed": "#d6455d",
    "Fail": "#d6455d",
    "running": "#3b6fd8",
    "Doing": "#3b6fd8",
    "Uploading": "#3b6fd8",
    "creating": "#8fb0ef",
    "Pending": "#8fb0ef",
    "stopping": "#c9a227",
    "stopped": "#5b6475",
}
LABELS = {name: kind.label for name, kind in REGISTRY.items()}


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def human_size(size: float | None) -> str:
    if size is None:
        return "—"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover


def _fmt_time(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return iso_time(value)
    return esc(value)


def _empty(text: str) -> str:
    return f'<p class="empty">{esc(text)}</p>'


def _legend(items: Sequence[tuple[str, str]]) -> str:
    spans = "".join(f'<span style="--c:{color}">{esc(label)}</span>' for label, color in items)
    return f'<div class="legend">{spans}</div>'


# -- charts ----------------------------------------------------------------------------------------


def hbar_chart(items: Sequence[tuple[str, float, str]], width: int = 560, unit: str = "") -> str:
    """Horizontal bars: (label, value, value text). One SVG, labels left, values right."""
    if not items:
        return _empty("nothing stored yet")
    bar_h, gap, label_w = 18, 6, 190
    value_w = 16 + 7 * max(len(text) for _, _, text in items)
    height = len(items) * (bar_h + gap) + gap
    top = max((v for _, v, _ in items), default=0) or 1
    span = width - label_w - value_w
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">'
    ]
    for i, (label, value, text) in enumerate(items):
        y = gap + i * (bar_h + gap)
        w = max(1.0, span * value / top) if value else 0
        short = label if len(label) <= 28 else label[:27] + "…"
        out.append(
            f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end" font-size="12">{esc(short)}'
            f"<title>{esc(label)}</title></text>"
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" rx="2" '
            f'fill="{PALETTE[0]}">'
            f"<title>{esc(label)}: {esc(text)}{esc(unit)}</title></rect>"
            f'<text x="{label_w + w + 6:.1f}" y="{y + 13}" font-size="12">{esc(text)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def stacked_chart(rows: dict[str, dict[str, int]], width: int = 560) -> str:
    """One horizontal bar per group, split by status, with a legend of the statuses."""
    if not rows:
        return _empty("nothing stored yet")
    statuses = sorted({s for parts in rows.values() for s in parts})
    colors = {
        s: STATUS_COLORS.get(s, PALETTE[(i + 3) % len(PALETTE)]) for i, s in enumerate(statuses)
    }
    bar_h, gap, label_w, value_w = 22, 8, 130, 60
    height = len(rows) * (bar_h + gap) + gap
    top = max(sum(p.values()) for p in rows.values()) or 1
    span = width - label_w - value_w
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">'
    ]
    for i, (group, parts) in enumerate(sorted(rows.items())):
        y = gap + i * (bar_h + gap)
        x = float(label_w)
        out.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end" font-size="12">'
            f"{esc(group)}</text>"
        )
        for status in statuses:
            n = parts.get(status, 0)
            if not n:
                continue
            w = span * n / top
            out.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" '
                f'fill="{colors[status]}"><title>{esc(group)} {esc(status)}: {n}</title></rect>'
            )
            if w > 22:
                out.append(
                    f'<text x="{x + w / 2:.1f}" y="{y + 15}" text-anchor="middle" '
                    f'font-size="11" style="fill:#fff">{n}</text>'
                )
            x += w
        out.append(
            f'<text x="{x + 6:.1f}" y="{y + 15}" font-size="12">{sum(parts.values())}</text>'
        )
    out.append("</svg>")
    return "".join(out) + _legend([(s, colors[s]) for s in statuses])


def line_chart(
    run_ids: Sequence[int],
    series: Mapping[str, Sequence[int | None]],
    width: int = 1180,
    height: int = 260,
) -> str:
    """Counts per kind (one line each) over runs (x axis, oldest left); a None is a run
    that did not read the kind: the line breaks there."""
    if not run_ids:
        return _empty("no finished runs yet")
    left, right, top_pad, bottom = 50, 20, 12, 30
    top = max((v for values in series.values() for v in values if v is not None), default=0) or 1
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    n = len(run_ids)

    def x(i: int) -> float:
        return left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top_pad + plot_h - plot_h * v / top

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">'
    ]
    for k in range(5):
        tick = top * k / 4
        out.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
            f'stroke="#e3e6ec"/><text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end" '
            f'font-size="11">{tick:.0f}</text>'
        )
    step = max(1, n // 12)
    for i, run_id in enumerate(run_ids):
        if i % step == 0 or i == n - 1:
            out.append(
                f'<text x="{x(i):.1f}" y="{height - 10}" text-anchor="middle" '
                f'font-size="11">#{run_id}</text>'
            )
    legend = []
    for j, (kind, values) in enumerate(series.items()):
        color = PALETTE[j % len(PALETTE)]
        legend.append((LABELS.get(kind, kind), color))
        stretches: list[list[str]] = [[]]  # of consecutive runs that read the kind
        for i, v in enumerate(values):
            if v is None:
                stretches.append([])
            else:
                stretches[-1].append(f"{x(i):.1f},{y(v):.1f}")
        for points in filter(None, stretches):
            out.append(
                f'<polyline points="{" ".join(points)}" fill="none" stroke="{color}" '
                'stroke-width="2"/>'
            )
        for i, v in enumerate(values):
            if v is None:
                continue
            out.append(
                f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{color}">'
                f"<title>run {run_ids[i]}: {v} {esc(LABELS.get(kind, kind))}</title></circle>"
            )
    out.append("</svg>")
    return "".join(out) + _legend(legend)


# -- data --------------------------------------------------------------------------------------


def _current_counts(conn: Connection, account: str | None) -> dict[str, int]:
    out = {}
    for kind, spec in SPECS.items():
        t = spec.table
        stmt = (
            select(func.count())
            .select_from(t)
            .where(t.c.deleted_at.is_(None), *queries.whose(t, account))
        )
        out[kind] = int(conn.execute(stmt).scalar_one())
    return out


def _recent_runs(
    conn: Connection, account: str | None
) -> tuple[list[int], dict[str, list[int | None]]]:
    """Per kind, what each recent run saw: None where the run did not read the kind (left out
    of its ``--kinds``, as the opt-in kind is by default), so the chart shows no 0 for it. A
    kind no run shown read has no series."""
    r = sync_runs.c
    stmt = (
        select(r.run_id, r.scope, *(r[f"{k}_seen"] for k in KINDS))
        .where(r.status.in_(("success", "partial")), *queries.whose(sync_runs, account))
        .order_by(r.run_id.desc())
        .limit(RECENT_RUNS)
    )
    rows = list(reversed(conn.execute(stmt).all()))

    def read(scope: Any, kind: str) -> bool:
        kinds = scope.get("kinds") if isinstance(scope, dict) else None
        return not isinstance(kinds, list) or kind in kinds  # older runs read every kind

    series: dict[str, list[int | None]] = {
        k: [int(row[i + 2] or 0) if read(row[1], k) else None for row in rows]
        for i, k in enumerate(KINDS)
    }
    return [int(row[0]) for row in rows], {
        k: values for k, values in series.items() if any(v is not None for v in values)
    }


def _versions_per_set(conn: Connection, account: str | None) -> list[tuple[str, float, str]]:
    _, rows = queries.report(
        conn, "versions_by_model_set", ["account", "model_set_id", "model_set_name", "versions"],
        account,
    )
    several = len({row[0] for row in rows}) > 1
    per_set: dict[str, tuple[str, int]] = {}
    for owner, set_id, name, versions in rows:
        label = str(name or set_id) + (f" ({owner})" if several else "")
        per_set[f"{owner}/{set_id}"] = (label, int(versions or 0))
    top = sorted(per_set.items(), key=lambda kv: (-kv[1][1], kv[1][0]))[:TOP_SETS]
    return [(name, float(n), str(n)) for _, (name, n) in top]


def _tasks_by_strategy(conn: Connection, account: str | None) -> dict[str, dict[str, int]]:
    _, rows = queries.report(
        conn, "compression_tasks_by_status", ["status", "strategy", "tasks"], account
    )
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for status, strategy, tasks in rows:  # summed over the accounts shown
        out[str(strategy or "unknown")][str(status or "unknown")] += int(tasks or 0)
    return {strategy: dict(states) for strategy, states in out.items()}


def _exports_by_state(conn: Connection, account: str | None) -> list[tuple[str, float, str]]:
    _, rows = queries.report(conn, "exports", ["state", "file_size"], account)
    count: dict[str, int] = defaultdict(int)
    size: dict[str, int] = defaultdict(int)
    for state, file_size in rows:
        count[str(state or "unknown")] += 1
        size[str(state or "unknown")] += int(file_size or 0)
    return [
        (state, float(count[state]), f"{count[state]} · {human_size(size[state])}")
        for state in sorted(count)
    ]


def _eval_by_state(conn: Connection, account: str | None) -> list[tuple[str, float, str]]:
    e = eval_result_exports.c
    stmt = (
        select(e.state, func.count())
        .where(e.deleted_at.is_(None), *queries.whose(eval_result_exports, account))
        .group_by(e.state)
        .order_by(e.state)
    )
    return [(str(state or "unknown"), float(n), str(n)) for state, n in conn.execute(stmt)]


def _recent_changes(conn: Connection, account: str | None) -> list[tuple[Any, ...]]:
    """The newest change rows over all runs (a no-op latest run must not leave this empty).

    Not ``report latest_changes``, which is the last run's changes only: hence "Recent".
    """
    c = changes.c
    stmt = (
        select(
            c.run_id,
            c.account,
            c.changed_at,
            c.kind,
            c.entity_id,
            c.operation,
            c.field,
            c.old_value,
            c.new_value,
        )
        .where(*queries.whose(changes, account))
        .order_by(c.change_id.desc())
        .limit(MAX_CHANGES)
    )
    return [tuple(row) for row in conn.execute(stmt)]


def _changes_table(rows: Sequence[tuple[Any, ...]]) -> str:
    if not rows:
        return _empty("no changes recorded yet")
    head = "".join(
        f"<th>{h}</th>"
        for h in ("run", "account", "at", "kind", "id", "operation", "field", "old", "new")
    )
    body = []
    for run_id, owner, at, kind, entity, op, field, old, new in rows:
        body.append(
            f'<tr data-kind="{esc(kind)}" data-account="{esc(owner)}">'
            f'<td class="num">{esc(run_id)}</td><td>{esc(owner)}</td>'
            f"<td>{_fmt_time(at)}</td><td>{esc(kind)}</td><td>{esc(entity)}</td>"
            f"<td>{esc(op)}</td><td>{esc(field or '')}</td>"
            f'<td class="val">{esc(_cut(old))}</td><td class="val">{esc(_cut(new))}</td></tr>'
        )
    return (
        f'<table id="changes"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )


def _cut(value: Any, limit: int = 200) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- lineage ---------------------------------------------------------------------------------


def _code(value: Any) -> str:
    return f"<code>{esc(value)}</code>"


def _came_from(v: Mapping[str, Any], names: Mapping[str, str], preset: bool) -> str:
    """Where a version came from: its fine-tuning job and task, or the compression that made
    it, else what its ``sourceInfo`` says (a preset version has none)."""
    parts = []
    if v["fine_tuning_task_id"]:
        if v["fine_tuning_job_id"]:
            parts.append(f"fine-tuning job {esc(v['fine_tuning_job_name'])} "
                         f"{_code(v['fine_tuning_job_id'])}")
        state = (f" ({esc(v['fine_tuning_task_status'])})" if v["fine_tuning_task_status"]
                 else " (not in the catalog)")
        parts.append(f"task {_code(v['fine_tuning_task_id'])}{state}")
    if v["compressed_by_task_id"]:
        source = v["compressed_from_model_id"]
        label = f"{esc(names[source])} " if source in names else ""
        parts.append(f"compressed from {label}{_code(source)} by "
                     f"{_code(v['compressed_by_task_id'])}")
    if not parts:
        return esc(v["source_type"] or ("platform preset" if preset else "—"))
    return " · ".join(parts)


def _runs_on(services: Sequence[tuple[Any, Any, Any]]) -> str:
    """The services running a version, those Serving first."""
    if not services:
        return "—"
    ordered = sorted(services, key=lambda s: (s[2] != "Serving", str(s[1] or ""), str(s[0])))
    return "<br>".join(
        f'<span class="svc" data-status="{esc(status)}">{esc(name or service_id)} '
        f"({esc(status or 'unknown')})</span>"
        for service_id, name, status in ordered
    )


def _evaluated(v: Mapping[str, Any]) -> str:
    if not v["latest_eval_task_id"]:
        return "—"
    metric, value = "", v["latest_eval_value"]
    if v["latest_eval_metric"] is not None and value is not None:
        metric = f" · {esc(v['latest_eval_metric'])} = {float(value):g}"
    return (f"{esc(v['latest_eval_task_name'])} {_code(v['latest_eval_task_id'])} "
            f"({esc(v['latest_eval_state'])}){metric}")


def _lineage(conn: Connection, account: str | None) -> str:
    """Per account and model set, its versions: where they came from and where they run
    (``lineage_model_versions``, the services' names from the current services)."""
    columns_read = ("account", *LINEAGE_COLUMNS)
    _, rows = queries.report(conn, "lineage", columns_read, account)
    versions = [dict(zip(columns_read, row, strict=True)) for row in rows]
    if not versions:
        return _empty("no model versions stored yet")
    several = len({v["account"] for v in versions}) > 1
    service = SPECS["service"].table
    s, svc = model_sets.c, service.c
    sets = {
        (str(owner), str(set_id)): (name, bool(system))
        for owner, set_id, name, system in conn.execute(
            select(s.account, s.model_set_id, s.model_set_name, s.is_system).where(
                s.deleted_at.is_(None), *queries.whose(model_sets, account)
            )
        )
    }
    running: dict[tuple[str, str], list[tuple[Any, Any, Any]]] = defaultdict(list)
    for owner, model_id, service_id, name, status in conn.execute(
        select(svc.account, svc.model_id, svc.service_id, svc.name, svc.run_status).where(
            svc.deleted_at.is_(None), svc.model_id.is_not(None), *queries.whose(service, account)
        )
    ):
        running[(str(owner), str(model_id))].append((service_id, name, status))
    per_set: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for v in versions:
        per_set[(str(v["account"]), str(v["model_set_id"]))].append(v)

    def set_order(key: tuple[str, str]) -> tuple[str, bool, str, str]:
        name, system = sets.get(key, (per_set[key][0]["model_set_name"], False))
        return key[0], system, str(name or ""), key[1]

    columns = (("version", 17), ("status", 8), ("came from", 31), ("runs on", 18),
               ("latest evaluation", 26))
    head = "".join(f'<col style="width:{w}%">' for _, w in columns) + "<thead><tr>" + "".join(
        f"<th>{h}</th>" for h, _ in columns) + "</tr></thead>"
    out, shown = [], 0
    for key in sorted(per_set, key=set_order):
        if shown >= MAX_LINEAGE_VERSIONS:
            break
        owner, set_id = key
        names = {str(v["model_id"]): str(v["model_name"] or v["model_id"])
                 for v in versions if v["account"] == owner}
        name, system = sets.get(key, (per_set[key][0]["model_set_name"], False))
        members = per_set[key][: MAX_LINEAGE_VERSIONS - shown]
        shown += len(members)
        body = "".join(
            f'<tr data-model-id="{esc(v["model_id"])}">'
            f"<td>{esc(v['model_name'])} {_code(v['model_id'])}</td>"
            f"<td>{esc(v['status'])}</td><td>{_came_from(v, names, system)}</td>"
            f"<td>{_runs_on(running.get((owner, str(v['model_id'])), []))}</td>"
            f"<td>{_evaluated(v)}</td></tr>"
            for v in members
        )
        preset = ' <span class="muted">preset</span>' if system else ""
        whose = f' <span class="muted">account {esc(owner)}</span>' if several else ""
        out.append(
            f'<details open data-model-set-id="{esc(set_id)}" data-account="{esc(owner)}">'
            f"<summary><b>{esc(name or set_id)}</b>{preset}{whose} {_code(set_id)} "
            f'<span class="muted">{len(per_set[key])} version(s)</span></summary>'
            f'<table class="lineage">{head}<tbody>{body}</tbody>'
            "</table></details>"
        )
    if shown < len(versions):
        out.append(f'<p class="muted">the first {shown} of {len(versions)} versions</p>')
    return "".join(out)


def render(
    conn: Connection,
    database_label: str,
    now: dt.datetime | None = None,
    account: str | None = None,
) -> str:
    """The whole page as a string (no file, no network): one account's catalog, or all."""
    now = now or dt.datetime.now(dt.UTC)
    counts = _current_counts(conn, account)
    run_ids, series = _recent_runs(conn, account)
    change_rows = _recent_changes(conn, account)
    last = conn.execute(
        select(sync_runs.c.run_id, sync_runs.c.status, sync_runs.c.started_at)
        .where(*queries.whose(sync_runs, account))
        .order_by(sync_runs.c.run_id.desc())
        .limit(1)
    ).first()
    run_note = (
        f"last run {last[0]} ({esc(last[1])}, {_fmt_time(last[2])})" if last else "no runs yet"
    )
    accounts = [account] if account is not None else queries.accounts(conn)
    if accounts:
        label = "account" if len(accounts) == 1 else "accounts"
        database_label = f"{database_label} · {label} {', '.join(accounts)}"
    total_changes = int(
        conn.execute(
            select(func.count()).select_from(changes).where(*queries.whose(changes, account))
        ).scalar_one()
    )
    tiles = "".join(f'<div class="tile"><b>{counts[k]}</b>{esc(LABELS[k])}</div>' for k in KINDS)
    tiles += f'<div class="tile"><b>{total_changes}</b>changes recorded</div>'
    kinds_present = sorted({str(r[3]) for r in change_rows})
    template = Template(
        resources.files("catalog").joinpath("report_template.html").read_text(encoding="utf-8")
    )
    return template.substitute(
        generated=_fmt_time(now),
        database=esc(database_label),
        run_note=run_note,
        tiles=tiles,
        run_count=len(run_ids),
        runs_chart=line_chart(run_ids, series),
        versions_chart=hbar_chart(_versions_per_set(conn, account)),
        tasks_chart=stacked_chart(_tasks_by_strategy(conn, account)),
        exports_chart=hbar_chart(_exports_by_state(conn, account)),
        eval_chart=hbar_chart(_eval_by_state(conn, account)),
        changes_shown=len(change_rows),
        kind_options="".join(f'<option value="{esc(k)}">{esc(k)}</option>' for k in kinds_present),
        changes_table=_changes_table(change_rows),
        lineage=_lineage(conn, account),
    )


def write_report(database_url: str, path: str | Path, account: str | None = None) -> str:
    """Render from the database and write ``path``; returns the line the CLI prints."""
    with db.open_catalog(database_url) as conn:
        page = render(conn, db.describe_url(database_url), account=account)
    target = Path(path)
    try:
        target.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {target}: {exc.strerror}") from None
    return f"wrote {target} ({len(page.encode()) // 1024 + 1} KiB)"
