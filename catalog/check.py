"""`check`: is everything in place for a sync? One line per check, with the fix for a failure.

Made to run first on a new machine or in a monitoring probe, so it is quick (short timeouts, one
attempt per call, a few seconds at worst) and read-only: one signed call (the first page of
``DescribeCustomModelSets``) proves both that the API is reachable and that the credentials are
accepted, and one cheap call each for the model versions, compression tasks and model exports
whether the key's policy lets it read them. The other kinds are not probed: a sync that may not
read one says so and reads the rest.
The database is only connected to and asked its schema revision and the last run's drift from
the documents. A SQLite file that does not exist is reported, not created.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from catalog import db
from catalog.errors import AUTH_HINT, ApiError, CatalogError, ConfigError, ExitCode, NotTheApi
from catalog.logs import unexpected
from catalog.schema import DEFAULT_ACCOUNT, metadata

#: (connect, read) seconds for the API call; with one attempt the check stays well under 5 s.
API_TIMEOUT = (2.0, 2.0)
#: The whole API check, name lookup included: requests' timeouts do not cover DNS, whose
#: resolver may retry for half a minute.
API_DEADLINE = 6.0
DB_CONNECT_TIMEOUT = 2


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    skipped: bool = False
    #: Information, not a pass or a failure (e.g. where the API's answers differ from the docs).
    note: bool = False
    #: A failure of the configuration (exit 4), not of what it points at.
    config: bool = False

    def line(self, width: int = 12) -> str:
        """One line; ``width``: the name column's, the longest name of the lines printed
        together, so their details line up."""
        mark = "SKIP" if self.skipped else "NOTE" if self.note else ("ok" if self.ok else "FAIL")
        fix = f" -> fix: {self.fix}" if self.fix and not self.ok else ""
        return f"{mark:<4} {self.name:<{width}} {self.detail}{fix}"


def check_api(access_key: str, secret_key: str, base_url: str) -> list[CheckResult]:
    """Credentials and connectivity, from one signed call, given at most ``API_DEADLINE``."""
    answer: list[list[CheckResult]] = []

    def attempt() -> None:
        try:
            answer.append(_check_api(access_key, secret_key, base_url))
        except Exception as exc:  # in a thread: its traceback would be printed, not reported
            answer.append([
                CheckResult("api", False, unexpected(exc), "run `sync --debug` for details"),
                CheckResult("credentials", False, "not tried: the API check failed", skipped=True),
            ])

    worker = threading.Thread(
        target=attempt,
        name="check-api",
        daemon=True,  # a lookup still hanging must not keep the process alive
    )
    worker.start()
    worker.join(API_DEADLINE)
    if answer:
        return answer[0]
    return [
        CheckResult(
            "api",
            False,
            f"no answer from {base_url} within {API_DEADLINE:g}s (name lookup or connection)",
            "check DNS, the network, proxy and firewall, and the base URL",
        ),
        CheckResult("credentials", False, "not tried: the API was not reached", skipped=True),
    ]


def _check_api(access_key: str, secret_key: str, base_url: str) -> list[CheckResult]:
    from catalog.api.auth import key_problem
    from catalog.api.client import ConsoleClient
    from catalog.api.retry import RetryPolicy

    if not access_key or not secret_key:
        return [
            CheckResult(
                "credentials",
                False,
                "access key or secret key not set",
                "set QIANFAN_ACCESS_KEY and QIANFAN_SECRET_KEY in the environment (secrets "
                "do not belong in the config file)",
                config=True,
            ),
            CheckResult("api", False, "not tried without credentials", skipped=True),
        ]
    unusable = key_problem(access_key, secret_key)
    if unusable is not None:
        return [
            CheckResult("credentials", False, unusable, config=True),
            CheckResult("api", False, "not tried without usable credentials", skipped=True),
        ]
    try:
        client = ConsoleClient(
            base_url,
            access_key,
            secret_key,
            timeout=API_TIMEOUT,
            retry=RetryPolicy(max_attempts=1),
            pool_size=1,
        )
    except ValueError as exc:
        return [
            CheckResult(
                "api",
                False,
                str(exc),
                "set --base-url / QIANFAN_CONSOLE_API_BASE_URL "
                "to e.g. https://qianfan.baidubce.com",
            ),
            CheckResult("credentials", False, "not tried without a usable base URL", skipped=True),
        ]
    try:
        listed = client.call("DescribeCustomModelSets", {"maxKeys": 100})
    except ApiError as exc:
        if exc.status is None:
            return [
                CheckResult(
                    "api",
                    False,
                    str(exc),
                    f"check the network, proxy and firewall towards {client.origin}, and "
                    "the base URL",
                ),
                CheckResult(
                    "credentials", False, "not tried: the API was not reached", skipped=True
                ),
            ]
        if isinstance(exc, NotTheApi):
            return [
                CheckResult(
                    "api",
                    False,
                    f"{client.origin} answered, but not as the console API: {exc}",
                    "set --base-url / QIANFAN_CONSOLE_API_BASE_URL to the console API's "
                    "origin, e.g. https://qianfan.baidubce.com",
                ),
                CheckResult(
                    "credentials", False, "not tried: the API was not reached", skipped=True
                ),
            ]
        reached = CheckResult("api", True, f"{client.origin} answered")
        if exc.is_auth:
            return [
                reached,
                CheckResult(
                    "credentials",
                    False,
                    f"rejected: {exc}",
                    AUTH_HINT,
                ),
            ]
        return [
            reached,
            CheckResult(
                "credentials",
                False,
                f"signed call failed: {exc}",
                "see the error code in the Qianfan console API documents; retry later if it is "
                "a throttling or server error",
            ),
        ]
    else:
        return [
            CheckResult("api", True, f"{client.origin} answered"),
            CheckResult("credentials", True, "accepted (DescribeCustomModelSets)"),
            *_check_kinds(client, listed),
        ]
    finally:
        client.close()


def _check_kinds(client: Any, listed: dict[str, Any]) -> list[CheckResult]:
    """For the model versions, compression tasks and model exports, one cheap call each: may
    this key read them? A read-only key, for one, may not read export states (the documents
    give DescribeModelExportTask to FullControl policies only)."""
    from catalog.kinds import REGISTRY
    from catalog.kinds.model_exports import EXPORT
    from catalog.kinds.model_versions import ACTIONS as VERSION_ACTIONS

    results = [CheckResult("model_set", True, "readable (DescribeCustomModelSets)")]
    model_id = next(
        (str(m) for s in listed.get("customModelSetList") or [] for m in s.get("modelIds") or []),
        None,
    )
    probes: list[tuple[str, str, dict[str, Any] | None]] = [
        ("model_version", VERSION_ACTIONS[False], {"modelId": model_id}),
        ("compression_task", "DescribeModelCompTasks", {"maxKeys": 1}),
        ("model_export", EXPORT, {"modelId": model_id}),
    ]
    for kind, action, body in probes:
        name = kind
        if body is None or None in body.values():
            results.append(
                CheckResult(
                    name, True, f"not tried: no model version to ask {action} about", skipped=True
                )
            )
            continue
        try:
            client.call(action, body)
        except ApiError as exc:
            if exc.is_permission:
                results.append(
                    CheckResult(
                        name,
                        False,
                        f"not allowed: {exc}",
                        f"give the key {REGISTRY[kind].policy}, or leave {kind} out with "
                        f"`sync --kinds` (a sync reads the other kinds and warns once)",
                    )
                )
                continue
            results.append(
                CheckResult(
                    name, False, f"{action} failed: {exc}", "retry later; see the error code"
                )
            )
            continue
        results.append(CheckResult(name, True, f"readable ({action})"))
    return results


#: What a sync does to every table of the catalog (rows are marked deleted, never removed).
SYNC_PRIVILEGES = ("SELECT", "INSERT", "UPDATE")


def _write_access(conn: Any) -> list[CheckResult]:
    """PostgreSQL: whether this role may write what a sync writes. A BI tool's read-only role
    passes every other check, and its sync would then fail after the API's first calls
    ("permission denied for table sync_runs"). SQLite's file access is the database line's."""
    if conn.dialect.name != "postgresql":
        return []
    tables = sorted(metadata.tables)
    missing = conn.execute(
        text(
            "SELECT t.name, p.priv FROM unnest(CAST(:tables AS text[])) AS t(name)"
            " CROSS JOIN unnest(CAST(:privs AS text[])) AS p(priv)"
            " WHERE to_regclass(t.name) IS NOT NULL"
            " AND NOT has_table_privilege(to_regclass(t.name), p.priv)"
            " ORDER BY t.name, p.priv"
        ),
        {"tables": tables, "privs": list(SYNC_PRIVILEGES)},
    ).all()
    # The tables' serial ids (run_id, history_id, change_id...) come from sequences, whose
    # USAGE a GRANT on the tables does not give.
    sequences = conn.execute(
        text(
            "SELECT s.relname FROM pg_class s"
            " JOIN pg_depend d ON d.objid = s.oid AND d.deptype IN ('a', 'i')"
            " JOIN pg_class t ON t.oid = d.refobjid"
            " WHERE s.relkind = 'S' AND t.oid = ANY(SELECT to_regclass(name)"
            "   FROM unnest(CAST(:tables AS text[])) AS name)"
            " AND CASE WHEN s.relkind = 'S' THEN NOT has_sequence_privilege(s.oid, 'USAGE')"
            " ELSE false END ORDER BY s.relname"  # the CASE: asked of sequences only
        ),
        {"tables": tables},
    ).scalars().all()
    temporary = conn.execute(
        text("SELECT has_database_privilege(current_database(), 'TEMPORARY')")
    ).scalar_one()
    role, schema = conn.execute(text("SELECT current_user, current_schema()")).one()
    if not missing and not sequences and temporary:
        return [CheckResult("access", True, f"role {role} may write the catalog")]
    lacks: dict[str, list[str]] = {}
    for table, privilege in missing:
        lacks.setdefault(privilege, []).append(table)
    parts = [
        f"{privilege} on {len(names)} of {len(tables)} tables ({', '.join(names[:3])}"
        f"{', ...' if len(names) > 3 else ''})"
        for privilege, names in sorted(lacks.items())
    ]
    if sequences:
        parts.append(
            f"USAGE on {len(sequences)} sequences of their ids ({', '.join(sequences[:2])}"
            f"{', ...' if len(sequences) > 2 else ''})"
        )
    if not temporary:
        parts.append("TEMPORARY on the database (a sync keeps the keys it saw in a temp table)")
    return [
        CheckResult(
            "access",
            False,
            f"role {role} lacks {'; '.join(parts)}: a sync would fail after its first calls",
            f"GRANT {', '.join(SYNC_PRIVILEGES)} ON ALL TABLES IN SCHEMA {schema} TO {role}; "
            f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO {role} (and TEMPORARY on the "
            "database), or sync as the role that owns the tables; a read-only role is for BI "
            "tools and the read commands",
        )
    ]


def check_database(
    database_url: str, account: str = DEFAULT_ACCOUNT, where: str = db.URL_SETTING
) -> list[CheckResult]:
    """Connectivity of the database, then whether its schema matches this code, then the drift
    ``account``'s last run met. ``where``: the setting that named the database, as the fix for
    a missing file names it."""
    shown = db.describe_url(database_url)
    schema_skipped = CheckResult("schema", False, "not checked without a database", skipped=True)
    url = db.parse_url(database_url)
    path = db.sqlite_file(database_url)
    if path is not None and not path.is_file():
        missing = db.missing_file(path, where=where)
        return [CheckResult("database", False, missing.what, missing.fix), schema_skipped]
    kwargs: dict[str, Any] = {}
    if url is not None and url.get_backend_name() == "postgresql":
        kwargs = {"connect_args": {"connect_timeout": DB_CONNECT_TIMEOUT}}
    try:
        engine = db.create_engine_for(database_url, **kwargs)
    except CatalogError as exc:
        return [
            CheckResult(
                "database", False, str(exc), f"fix {where}",
                config=isinstance(exc, ConfigError),
            ),
            schema_skipped,
        ]
    try:
        with db.connect(engine) as conn:
            conn.execute(text("SELECT 1"))
            results = [CheckResult("database", True, f"{shown} reachable")]
            state = db.schema_state(conn)
            current = db.current_revision(conn)
            if state == "current":
                results.append(CheckResult("schema", True, f"revision {current} (up to date)"))
                results.extend(_write_access(conn))
                results.extend(_open_drift(conn, account))
            else:
                problem = db.schema_problem(state, current)
                results.append(CheckResult("schema", False, problem.what, problem.fix))
            return results
    except (CatalogError, SQLAlchemyError) as exc:
        fix = (
            "check that this user may read and write the file and its folder (SQLite writes "
            "its -wal and -shm files beside it), and that the disk has room"
            if path is not None
            else "check that the server runs, the URL's host, port, user and password, "
            "and network access"
        )
        return [CheckResult("database", False, db.reason(exc), fix), schema_skipped]
    finally:
        engine.dispose()


def _open_drift(conn: Any, account: str) -> list[CheckResult]:
    """Where the account's last finished run's answers differed from the documents: accounts
    may sit behind different endpoints or API versions, so another account's run says less."""
    from sqlalchemy import select

    from catalog.schema import api_drift, sync_runs

    last = conn.execute(
        select(sync_runs.c.run_id)
        .where(sync_runs.c.status.in_(("success", "partial")), sync_runs.c.account == account)
        .order_by(sync_runs.c.run_id.desc())
        .limit(1)
    ).scalar_one_or_none()
    if last is None:
        return []
    rows = conn.execute(
        select(api_drift)
        .where(api_drift.c.run_id == last)
        .order_by(api_drift.c.kind, api_drift.c.call, api_drift.c.field)
    ).mappings()
    return [
        CheckResult(
            "drift",
            True,
            f"{r['kind']}: {r['call']} answers "
            + (
                f"carried {r['field']!r}, which the documents do not list"
                if r["drift"] == "unknown"
                else f"lacked {r['field']!r}, which the documents list"
            )
            + f" ({r['count']} in run {last}, e.g. {r['example_id']})",
            note=True,
        )
        for r in rows
    ]


def run_checks(
    database_url: str,
    access_key: str,
    secret_key: str,
    base_url: str,
    account: str = DEFAULT_ACCOUNT,
    where: str = db.URL_SETTING,
) -> list[CheckResult]:
    return [
        *check_api(access_key, secret_key, base_url),
        *check_database(database_url, account, where),
    ]


#: The exit code of a failed check, so a probe can tell a config problem from an outage.
CHECK_CODES = {
    "credentials": ExitCode.API_UNREACHABLE,
    "api": ExitCode.API_UNREACHABLE,
    "database": ExitCode.DATABASE,
    "schema": ExitCode.DATABASE,
    "model_set": ExitCode.API_UNREACHABLE,
    "model_version": ExitCode.API_UNREACHABLE,
    "compression_task": ExitCode.API_UNREACHABLE,
    "model_export": ExitCode.API_UNREACHABLE,
}


def exit_code(results: list[CheckResult]) -> int:
    """0 when every check passed, else the code of the first real failure."""
    for r in results:
        if not r.ok and not r.skipped:
            if r.config:
                return int(ExitCode.CONFIG)
            return int(CHECK_CODES.get(r.name, ExitCode.FAILED))
    return int(ExitCode.OK) if all(r.ok for r in results) else int(ExitCode.FAILED)
