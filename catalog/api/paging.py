"""Marker pagination as a generator that cannot loop forever or silently lose items.

A listing feeds delete detection downstream: a page skipped by a misbehaving server would look like
entities that vanished. So every inconsistency in ``pageInfo`` is an error, not a guess.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from typing import Any, Protocol, TypeVar

from catalog.errors import MalformedResponse, PaginationError

T = TypeVar("T")

#: The documents cap ``maxKeys`` at 100 (larger values are silently treated as 100).
MAX_KEYS_LIMIT = 100


class SupportsCall(Protocol):
    def call(
        self, action: str, body: dict[str, Any], route: str = "/v2/model"
    ) -> dict[str, Any]: ...


def _find_list_key(action: str, result: dict[str, Any]) -> str:
    keys = [k for k, v in result.items() if k != "pageInfo" and isinstance(v, list)]
    if len(keys) != 1:
        found = ", ".join(sorted(keys)) or "none"
        raise MalformedResponse(
            f"cannot tell which list holds the items (list-valued keys: {found})", call=action
        )
    return keys[0]


def iter_pages(
    client: SupportsCall,
    action: str,
    body: dict[str, Any],
    *,
    list_key: str | None = None,
    item_key: str = "id",
    max_keys: int = 100,
    route: str = "/v2/model",
) -> Iterator[list[dict[str, Any]]]:
    """Yield each page's items, following ``nextMarker`` until ``isTruncated`` is false.

    Raises ``PaginationError`` on a repeated marker, a truncated page without ``nextMarker``, or an
    empty page claiming more. An item whose ``item_key`` was already yielded on this page or the
    one before is dropped: a listing that shifts under us repeats items at a page boundary.
    Only those two pages are remembered, so memory stays flat in the listing's length; a repeat
    from further back would merely reach the store twice, which finds it unchanged.
    """
    if not 1 <= max_keys <= MAX_KEYS_LIMIT:
        raise ValueError(f"max_keys must be between 1 and {MAX_KEYS_LIMIT}, got {max_keys}")
    request = {**body, "maxKeys": max_keys, "pageReverse": bool(body.get("pageReverse", False))}
    marker = str(request.pop("marker", "") or "")
    seen_markers: set[str] = {marker} if marker else set()
    previous: set[Any] = set()
    page_number = 0
    while True:
        page_number += 1
        page_body = {**request, "marker": marker} if marker else dict(request)
        result = client.call(action, page_body, route)
        key = list_key or _find_list_key(action, result)
        items = result.get(key)
        if not isinstance(items, list):
            raise MalformedResponse(f"'{key}' is missing or not a list", call=action)
        info = result.get("pageInfo")
        if not isinstance(info, dict):
            raise PaginationError(f"page {page_number} has no pageInfo", call=action)

        fresh: list[dict[str, Any]] = []
        current: set[Any] = set()
        for item in items:
            if not isinstance(item, dict) or item.get(item_key) is None:
                raise MalformedResponse(
                    f"page {page_number} has an item without '{item_key}'", call=action
                )
            ident = item[item_key]
            if ident not in current and ident not in previous:
                fresh.append(item)
            current.add(ident)

        truncated = info.get("isTruncated") in (True, "true", "True")
        next_marker = str(info.get("nextMarker") or "")
        where = f"page {page_number} (marker {marker!r})"
        if truncated and not items:
            raise PaginationError(f"{where} is empty but claims more items", call=action)
        if truncated and not next_marker:
            raise PaginationError(f"{where} is truncated but has no nextMarker", call=action)
        if truncated and next_marker in seen_markers:
            raise PaginationError(
                f"{where} repeats marker {next_marker!r}; the listing would loop", call=action
            )
        yield fresh
        if not truncated:
            return
        seen_markers.add(next_marker)
        marker = next_marker
        previous = current


def read_ahead(pages: Iterator[T], name: str = "read-ahead") -> Generator[T, None, None]:
    """Yield what ``pages`` yields, asking for the next page in a thread of its own while the
    caller still handles this one.

    A marker listing is a chain: a page can only be asked for with the marker the one before
    ended on. Without this, the caller's own work on a page (checks, hashes, handing it to the
    writer) was added to every link, and on a long listing that work was as long again as the
    calls themselves. The thread runs at most two pages ahead of the caller, so memory stays
    flat; once the caller stops (it returns, breaks, or the generator is closed or collected)
    the thread asks for no further page. An error ``pages`` raises reaches the caller after
    the pages before it, as it would have without the thread.
    """
    handoff: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)
    closed = threading.Event()

    def pass_on(what: str, value: Any) -> bool:
        while not closed.is_set():
            try:
                handoff.put((what, value), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for page in pages:
                if not pass_on("page", page):
                    return
            pass_on("end", None)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, raised there
            pass_on("error", exc)
        finally:
            close = getattr(pages, "close", None)
            if close is not None:
                close()

    threading.Thread(target=produce, name=name, daemon=True).start()
    try:
        while True:
            what, value = handoff.get()
            if what == "page":
                yield value
            elif what == "end":
                return
            else:
                raise value
    finally:
        closed.set()
