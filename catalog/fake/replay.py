"""Recorded answers of the real console, for a fake server that serves them back.

The fake's catalog follows the documents, and the documents leave much unsaid (error codes, what a
missing id answers, fields beyond the visible part of a table). A recording of the real service
closes that gap: run the sync once against the real console with the client-side recorder, then
replay the answers as often as needed, with the usual signature checking in front
(``FakeServer(..., replay=load_recording(DIR))`` or ``fake-server --replay DIR``).

A recording directory holds ``calls.jsonl``, one JSON object per line, as the recorder writes it::

    {"route": "/v2/model", "action": "DescribeModel", "body": {...}, "status": 200,
     "answer": {...parsed JSON answer...} | null, "text": "raw answer, only when not JSON"}

``action`` is the ``Action`` query parameter on ``/v2`` routes and the route's path on the eval
route. A request is matched on (route, action, its body as canonical JSON). Several answers
recorded for the same request are served in the order recorded, then the last one repeats; a
request the recording does not hold is counted in :attr:`Recording.missed` and answered by the
server with an INVENTED HTTP 404 ``NoRecording``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catalog.api.record import CALLS_FILE  # the file the recorder writes, read back here

RequestKey = tuple[str, str, str]


def request_key(route: str, action: str, body: Any) -> RequestKey:
    """The match key: two bodies that differ only in key order or spacing are the same request."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return route, action, canonical


@dataclass(frozen=True)
class RecordedAnswer:
    status: int
    answer: Any  # the parsed JSON answer, or None when the answer was not JSON
    text: str | None = None  # the raw answer, only when it was not JSON

    def data(self) -> bytes:
        """The answer's bytes as the server sends them."""
        if self.answer is not None:
            return json.dumps(self.answer, ensure_ascii=False).encode("utf-8")
        return (self.text or "").encode("utf-8")


class Recording:
    """Answers per request, handed out in order; thread-safe (the server's threads share it)."""

    def __init__(self, answers: Mapping[RequestKey, Sequence[RecordedAnswer]]) -> None:
        self._answers = {key: list(found) for key, found in answers.items() if found}
        self._served: dict[RequestKey, int] = {}
        self._lock = threading.Lock()
        #: Requests that had no recorded answer: ``{"route", "action", "body"}`` in arrival order.
        self.missed: list[dict[str, Any]] = []

    @property
    def size(self) -> int:
        """How many answers were recorded."""
        return sum(len(found) for found in self._answers.values())

    def take(self, route: str, action: str, body: Any) -> RecordedAnswer | None:
        """The next answer for this request (the last one again once all were served)."""
        key = request_key(route, action, body)
        with self._lock:
            found = self._answers.get(key)
            if found is None:
                self.missed.append({"route": route, "action": action, "body": body})
                return None
            index = self._served.get(key, 0)
            self._served[key] = index + 1
            return found[min(index, len(found) - 1)]


def _parse_line(line: str, where: str) -> tuple[RequestKey, RecordedAnswer]:
    try:
        entry = json.loads(line)
    except ValueError as exc:
        raise ValueError(f"{where}: not JSON ({exc})") from None
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected a JSON object")
    route, action, status = entry.get("route"), entry.get("action"), entry.get("status")
    if not isinstance(route, str) or not route.startswith("/"):
        raise ValueError(f"{where}: 'route' must be a path")
    if not isinstance(action, str) or not action:
        raise ValueError(f"{where}: 'action' must be a non-empty string")
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise ValueError(f"{where}: 'status' must be an HTTP status")
    if "body" not in entry:
        raise ValueError(f"{where}: 'body' is missing")
    text = entry.get("text")
    if text is not None and not isinstance(text, str):
        raise ValueError(f"{where}: 'text' must be a string")
    answer = RecordedAnswer(status, entry.get("answer"), text)
    return request_key(route, action, entry["body"]), answer


def load_recording(directory: str | Path) -> Recording:
    """Read ``DIR/calls.jsonl``; a malformed line is a ``ValueError`` naming its line number."""
    path = Path(directory) / CALLS_FILE
    answers: dict[RequestKey, list[RecordedAnswer]] = {}
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            key, answer = _parse_line(line, f"{path}:{number}")
            answers.setdefault(key, []).append(answer)
    return Recording(answers)


__all__ = ["CALLS_FILE", "RecordedAnswer", "Recording", "load_recording", "request_key"]
