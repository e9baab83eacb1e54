"""Marker pagination as a generator that cannot loop forever or silently lose items.

A listing feeds delete detection downstream: a page skipped by a misbehaving server would look like
entities that vanished. So every inconsistency in ``pageInfo`` is an error, not a guess.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any, Protocol, runtime_checkable

from catalog.errors import MalformedResponse, PaginationError
from catalog.normalize import is_id

#: The documents cap ``maxKeys`` at 100 (larger values are silently treated as 100).
MAX_KEYS_LIMIT = 100


class SupportsCall(Protocol):
    def call(
        self, action: str, body: dict[str, Any], route: str = "/v2/model"
    ) -> dict[str, Any]: ...


class Pending(Protocol):
    """A call asked for and not yet answered: calling it gives the answer's ``result``."""

    def __call__(self) -> dict[str, Any]: ...

    def cancel(self) -> None: ...


@runtime_checkable
class SupportsEarly(SupportsCall, Protocol):
    """A client that can write a request before its answer is wanted (``ConsoleClient``)."""

    def call_early(
        self, action: str, body: dict[str, Any], route: str = "/v2/model"
    ) -> Pending: ...


class _Later:
    """``call``, made when the answer is wanted: the pending call of a client without
    ``call_early`` (the tests' scripted ones)."""

    def __init__(self, client: SupportsCall, action: str, body: dict[str, Any], route: str):
        self._call = partial(client.call, action, body, route)

    def __call__(self) -> dict[str, Any]:
        return self._call()

    def cancel(self) -> None:
        pass


def _ask(client: SupportsCall, action: str, body: dict[str, Any], route: str) -> Pending:
    if isinstance(client, SupportsEarly):
        return client.call_early(action, body, route)
    return _Later(client, action, body, route)


def _find_list_key(action: str, result: dict[str, Any]) -> str:
    """The items' key of a listing whose documents do not show it (DescribeServices): the one
    list-valued key, named as every documented listing names its items (``...List``:
    ``customModelSetList``, ``modelCompTaskList``, ``jobList``...). Any other shape is refused:
    with two lists, or one named otherwise, the items may be elsewhere, and taking an empty list
    for them would make an empty listing, which deletes everything it covers."""
    keys = sorted(k for k, v in result.items() if isinstance(v, list))
    if len(keys) != 1 or not keys[0].endswith("List"):
        raise MalformedResponse(
            f"cannot tell which list holds the items (list-valued keys: "
            f"{', '.join(keys) or 'none'})", call=action
        )
    return keys[0]


def is_truncated(info: dict[str, Any]) -> bool | None:
    """``pageInfo.isTruncated`` (documented: a bool on every page), or None when it is neither
    true nor false: a page that does not say whether it was the last ends nothing."""
    flag = info.get("isTruncated")
    if isinstance(flag, str):
        flag = {"true": True, "false": False}.get(flag.strip().lower())
    return flag if isinstance(flag, bool) else None


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
    """Yield each page's items (the ``list_key`` list of each ``result``; None where the
    documents do not name it), following ``nextMarker`` until ``isTruncated`` is false.

    Raises ``PaginationError`` on a page that does not say whether it is the last, a repeated
    marker, a truncated page without ``nextMarker``, or an empty page claiming more, and
    ``MalformedResponse`` on an item without a usable ``item_key``. An item whose ``item_key``
    was already yielded on this page or the
    one before is dropped: a listing that shifts under us repeats items at a page boundary.
    Only those two pages are remembered, so memory stays flat in the listing's length; a repeat
    from further back would merely reach the store twice, which finds it unchanged.

    The next page is asked for as soon as this page's marker checks out, before this page is
    yielded (``call_early``, when the client has it): the caller's work on a page overlaps the
    server's on the next, and a listing is as fast as its calls. A caller that stops leaves at
    most that one request unanswered (its connection is closed).
    """
    if not 1 <= max_keys <= MAX_KEYS_LIMIT:
        raise ValueError(f"max_keys must be between 1 and {MAX_KEYS_LIMIT}, got {max_keys}")
    request = {**body, "maxKeys": max_keys, "pageReverse": bool(body.get("pageReverse", False))}
    marker = str(request.pop("marker", "") or "")
    seen_markers: set[str] = {marker} if marker else set()
    previous: set[Any] = set()
    page_number = 0
    pending: Pending | None = _ask(
        client, action, {**request, "marker": marker} if marker else dict(request), route
    )
    try:
        while pending is not None:
            page_number += 1
            asked, pending = pending, None
            result = asked()
            key = list_key or _find_list_key(action, result)
            items = result.get(key)
            if not isinstance(items, list):
                raise MalformedResponse(f"'{key}' is missing or not a list", call=action)
            info = result.get("pageInfo")
            if not isinstance(info, dict):
                raise PaginationError(f"page {page_number} has no pageInfo", call=action)

            where = f"page {page_number} (marker {marker!r})"
            truncated = is_truncated(info)
            if truncated is None:
                raise PaginationError(
                    f"{where} has no isTruncated true or false "
                    f"({info.get('isTruncated')!r}): its end is unknown", call=action
                )
            next_marker = str(info.get("nextMarker") or "")
            if not truncated and next_marker:
                # Documented: nextMarker comes only with isTruncated true. A page that says it is
                # the last and still points on contradicts itself; trusting "last" would delete
                # whatever the pages after it hold.
                raise PaginationError(
                    f"{where} has isTruncated false but nextMarker {next_marker!r}: its end is "
                    "unknown", call=action
                )
            if truncated and not items:
                raise PaginationError(f"{where} is empty but claims more items", call=action)
            if truncated and not next_marker:
                raise PaginationError(f"{where} is truncated but has no nextMarker", call=action)
            if truncated and next_marker in seen_markers:
                raise PaginationError(
                    f"{where} repeats marker {next_marker!r}; the listing would loop", call=action
                )
            if truncated:
                seen_markers.add(next_marker)
                pending = _ask(client, action, {**request, "marker": next_marker}, route)

            fresh: list[dict[str, Any]] = []
            current: set[Any] = set()
            for item in items:
                # An item without an id (``is_id``) makes the page malformed.
                if not isinstance(item, dict) or not is_id(item.get(item_key)):
                    found = item.get(item_key) if isinstance(item, dict) else item
                    raise MalformedResponse(
                        f"page {page_number} has an item without a usable '{item_key}' "
                        f"({found!r})", call=action
                    )
                ident = item[item_key]
                if ident not in current and ident not in previous:
                    fresh.append(item)
                current.add(ident)
            yield fresh
            marker = next_marker
            previous = current
    finally:
        if pending is not None:
            pending.cancel()
