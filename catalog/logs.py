"""Logs on stderr: plain text for people, one JSON object per line for log shippers.

A run logs its start, each retry, each entity error and its summary (``--log-format json``), each
with the run id and a UTC timestamp. Text mode logs the start, retries and errors; the summary
already goes to stdout. ``--quiet`` leaves only errors in text mode; JSON mode is for machines and
keeps every event.

Secrets: a filter on the handler masks every registered secret and signature
(:mod:`catalog.redact`) wherever it appears in a record, message or fields.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import IO, Any

from catalog import redact

LOGGER_NAME = "qianfan_catalog"
FORMATS = ("text", "json")


class SecretMask(logging.Filter):
    """Masks registered secrets and signatures (:func:`catalog.redact.scrub`) in a record's
    message and structured fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact.scrub(record.getMessage())
        record.args = None
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            record.fields = redact.scrub_value(fields)
        return True


def _timestamp(record: logging.LogRecord) -> str:
    when = dt.datetime.fromtimestamp(record.created, dt.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: ts, level, event, run_id, message, fields."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", "log"),
            "run_id": getattr(record, "run_id", None),
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                obj.setdefault(key, value)
        if record.name != LOGGER_NAME:  # another library's record
            obj["logger"] = record.name
        return json.dumps(obj, ensure_ascii=False, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        run_id = getattr(record, "run_id", None)
        run = f" run {run_id}" if run_id is not None else ""
        return f"{_timestamp(record)} {record.levelname.lower()}{run}: {record.getMessage()}"


_mask = SecretMask()
_state: dict[str, Any] = {"format": "text"}


def logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


def unexpected(exc: BaseException) -> str:
    """One line for an error no code path expected (a library's), scrubbed like a log line."""
    text = str(exc).strip().splitlines()
    return redact.scrub(f"unexpected {type(exc).__name__}: {text[0] if text else ''}".rstrip(": "))


def setup(
    log_format: str = "text", quiet: bool = False, stream: IO[str] | None = None
) -> logging.Logger:
    """(Re)configure the project's logger: one handler on ``stream`` (stderr by default)."""
    if log_format not in FORMATS:
        raise ValueError(f"log format must be one of {FORMATS}")
    log = logger()
    for handler in list(log.handlers):
        log.removeHandler(handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(_mask)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    if log_format == "json":
        handler.setLevel(logging.INFO)
    else:
        handler.setLevel(logging.ERROR if quiet else logging.INFO)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    # What other libraries log (psycopg's "error ignored terminating ..." when a server goes
    # away) and Python's warnings: in the same form, masked, not as bare lines in a JSON log.
    root = logging.getLogger()
    if _state.get("others") is not None:
        root.removeHandler(_state["others"])
    others = logging.StreamHandler(stream if stream is not None else sys.stderr)
    others.addFilter(_mask)
    others.setFormatter(handler.formatter)
    others.setLevel(logging.ERROR if quiet and log_format == "text" else logging.WARNING)
    root.addHandler(others)
    logging.captureWarnings(True)
    _state.update({"format": log_format, "others": others, "run_id": None})
    return log


def log_format() -> str:
    return str(_state["format"])


def event(
    level: int, name: str, message: str, run_id: int | None = None, /, **fields: Any
) -> None:
    logger().log(level, message, extra={"event": name, "run_id": run_id, "fields": fields})


def report_fatal(message: str, exit_code: int) -> bool:
    """JSON mode: log a command's fatal error as one JSON line and say so; text mode: no-op."""
    if log_format() != "json":
        return False
    event(logging.ERROR, "fatal", message, _state.get("run_id"), exit_code=exit_code)
    return True


class RunLog:
    """The sync observer's logging half: turns run events into log records."""

    def __init__(self) -> None:
        self.run_id: int | None = None

    def __call__(self, name: str, data: dict[str, Any]) -> None:
        if name == "run_start":
            dry = bool(data.get("dry_run"))
            # A dry run's id is rolled back with the rest: no log line names a run that
            # `runs` will never show.
            self.run_id = None if dry else data.get("run_id")
            _state["run_id"] = self.run_id  # the fatal line, if the run fails, names it
            event(
                logging.INFO,
                "run_start",
                "dry run started (nothing will be written)" if dry else "run started",
                self.run_id,
                dry_run=bool(data.get("dry_run")),
                account=data.get("account"),
            )
        elif name == "retry":
            message = (
                f"retry {data.get('call')} (attempt {data.get('attempt')} failed, "
                f"next in {float(data.get('delay') or 0):.1f}s): {data.get('error')}"
            )
            event(logging.WARNING, "retry", message, self.run_id, **data)
        elif name == "error":
            event(logging.ERROR, "error", str(data.get("message")), self.run_id, **data)
        elif name == "kept":
            message = (
                f"{data.get('kind')} {data.get('key')} is missing from its complete listing, but "
                "its own detail call still answers for it: kept this run (a listing read page by "
                "page may miss what moves while it is read); missed again, it is deleted"
            )
            event(logging.WARNING, "kept", message, self.run_id, **data)
        elif name == "drift":
            what = (
                "carry a field the documents do not list"
                if data.get("drift") == "unknown"
                else "lack a field the documents list"
            )
            message = (
                f"{data.get('call')} answers {what}: {data.get('field')} ({data.get('kind')}; "
                "see api_drift)"
            )
            event(logging.WARNING, "drift", message, self.run_id, **data)
        # "summary" is logged by finished(), which has the whole RunSummary, not just its line.

    def finished(self, summary: Any) -> None:
        """Log a run's summary (JSON mode only: text mode prints it on stdout already)."""
        if log_format() != "json":
            return
        fields: dict[str, Any] = {
            "account": summary.account,
            "status": summary.status,
            "dry_run": summary.dry_run,
            "api_calls": summary.api_calls,
            "api_retries": summary.api_retries,
            "errors": summary.errors,
            "seconds": round(summary.seconds, 3),
            "counts": dict(summary.counts),
        }
        # A dry run's id was rolled back with its row (as in run_start): not named here either.
        run_id = None if summary.dry_run else summary.run_id
        event(logging.INFO, "summary", summary.line(), run_id, **fields)
