"""Marker pagination as a generator that cannot loop forever or silently lose items.

A listing feeds delete detection downstream: a page skipped by a misbehaving server would look like
entities that vanished. So every inconsistency in ``pageInfo`` is an error, not a guess.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from catalog.errors import MalformedResponse, PaginationError

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
