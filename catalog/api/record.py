"""A recording of the console's answers, for a fake server that serves them back.

The documents leave much unsaid (error codes, what a missing id answers, fields past the visible
part of a table); one sync against the real console with a :class:`Recorder` captures what the
service actually says, and :mod:`catalog.fake.replay` serves it back. The file format is that
module's: ``DIR/calls.jsonl``, one JSON object per HTTP exchange::

    {"route": "/v2/model", "action": "DescribeModel", "body": {...}, "status": 200,
     "answer": {...} | null, "text": "raw answer, only when it was not JSON"}

A recording may be shared (attached to an issue, committed as a fixture), so it holds nothing
that identifies or authorises anyone: no headers at all (signatures, dates, the access key and
request ids all travel there), no ``requestId`` / ``log_id`` in answers, no query string on a
pre-signed link (a ``downloadUrl``, or any string carrying ``authorization=``), and no registered
secret (:mod:`catalog.redact`: an error answer may echo the keys). Request bodies are kept as
sent: they hold only ids, and replay matches on them.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from catalog import redact

CALLS_FILE = "calls.jsonl"
#: Answer keys that identify one request, not the catalog; dropped from the top of each answer.
DROPPED_KEYS = frozenset({"requestId", "log_id"})
#: Keys whose string value is a pre-signed link wherever they appear.
SIGNED_URL_KEYS = frozenset({"downloadUrl"})

def _clean(text: str, *, is_url: bool = False) -> str:
    """A string of an answer fit to share: no pre-signed link's query, no signature, and no
    registered secret (an error answer may echo the keys)."""
    return redact.scrub(redact.unsign_text(text, is_url=is_url))


def scrub(value: Any, key: str | None = None) -> Any:
    """A copy of a parsed answer fit to share (see the module docstring)."""
    if isinstance(value, dict):
        return {
            k: scrub(v, k)
            for k, v in value.items()
            if not (key is None and k in DROPPED_KEYS)  # ``key is None``: the answer's top
        }
    if isinstance(value, list):
        return [scrub(v, key or "") for v in value]
    if isinstance(value, str):
        return _clean(value, is_url=key in SIGNED_URL_KEYS)
    return value


def unwritable(directory: str | os.PathLike[str]) -> str | None:
    """Why ``directory`` cannot hold a recording, or ``None``; creates nothing.

    A sync checks this before it opens the database, and creates the folder only once the
    database URL has passed its checks: a run refused for its URL leaves no empty folder.
    """
    path = Path(directory)
    while not path.exists() and path != path.parent:
        path = path.parent
    if not path.is_dir():
        return f"{path} is not a folder"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"{path}: permission denied"
    return None


class Recorder:
    """Appends one line per HTTP exchange to ``DIR/calls.jsonl``; shared by every worker.

    Each line goes out in a single unbuffered write under a lock, so concurrent workers never
    interleave and a crash leaves only whole lines behind (a partial last line at worst).
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / CALLS_FILE
        self._lock = threading.Lock()
        self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - closed by close()
        self.count = 0

    def __repr__(self) -> str:
        return f"Recorder({str(self.directory)!r}, {self.count} calls)"

    def record(
        self, route: str, action: str, body: Any, status: int, content: bytes
    ) -> None:
        """Add one exchange: the request's route, action and body, the answer's status and body."""
        try:
            answer: Any = json.loads(content) if content.strip() else None
            parsed = content.strip() != b""
        except (ValueError, UnicodeDecodeError):
            answer, parsed = None, False
        entry: dict[str, Any] = {
            "route": route,
            "action": action,
            "body": body,
            "status": status,
            "answer": scrub(answer) if parsed else None,
        }
        if not parsed:
            entry["text"] = _clean(content.decode("utf-8", "replace"))
        line = json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n"
        data = memoryview(line.encode("utf-8"))
        with self._lock:
            while data:  # a raw write may take fewer bytes than given
                data = data[self._file.write(data) or 0 :]
            self.count += 1

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
