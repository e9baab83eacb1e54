"""A local HTTP server that answers like the Qianfan console API, over a :class:`FakeCatalog`.

It is a real server (sockets, keep-alive, threads), not a mock, so the whole client stack is what
gets tested: signing, connection reuse, timeouts, retries, paging. It verifies BCE v1 signatures
with the same pure functions the client signs with, answers both error shapes the service uses
(``/v2`` and the older ``/wenxinworkshop`` routes), refuses the calls a key's policy would not
allow (``denied_actions``), throttles when asked to, misbehaves on purpose through a
:class:`FaultPlan`, and can serve a recording of the real service instead of its catalog
(``replay``, :mod:`catalog.fake.replay`).

Answers follow ``/work/shared/api/REFERENCE.md``; the fields each call serves are in
:data:`catalog.fake.catalog.VIEWS`. Whatever the documents do not state (most error codes, what a
missing id answers, throttling) is marked ``INVENTED`` where it is made up, so nothing outside
``catalog/fake/`` can come to rely on it unnoticed.

The handlers are table-driven: the marker-paged listings are rows of :data:`LISTINGS`, the
single-object lookups rows of :data:`LOOKUPS`, so their paging and error behaviour cannot drift
apart. Each action belongs to one ``/v2`` route (:data:`ACTION_ROUTES`: model, fine-tuning,
evaluation, services); sent to another route it is an unknown action there.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import http.client
import json
import signal
import sys
import threading
import time
import uuid
from calendar import timegm
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit

from catalog.api.auth import parse_authorization, signature
from catalog.fake.catalog import EVAL_ROUTE as EVAL_ROUTE
from catalog.fake.catalog import EVAL_TYPES, REPORT_ACTION, FakeCatalog
from catalog.fake.faults import Fault, FaultPlan, chaos_plan
from catalog.fake.limiters import TokenBucket as TokenBucket
from catalog.fake.limiters import make_limiter
from catalog.fake.replay import Recording, load_recording

V2_ROUTE = "/v2/model"
FINETUNING_ROUTE = "/v2/finetuning"  # REFERENCE §9
EVAL_V2_ROUTE = "/v2/eval"  # REFERENCE §6 (the V2 export call), §7
SERVICE_ROUTE = "/v2/service"  # REFERENCE §8
#: Each documented action and the one route that serves it.
ACTION_ROUTES: dict[str, str] = {
    **dict.fromkeys(
        (
            "DescribeCustomModelSets",
            "DescribeSystemModelSets",
            "DescribeModelSet",
            "DescribeSystemModelSet",
            "DescribeModel",
            "DescribeSystemModel",
            "DescribeModelCompTasks",
            "DescribeModelCompTask",
            "DescribeModelExportTask",
        ),
        V2_ROUTE,
    ),
    **dict.fromkeys(
        ("DescribeFineTuningJobs", "DescribeFineTuningTasks", "DescribeFineTuningTask"),
        FINETUNING_ROUTE,
    ),
    **dict.fromkeys(
        (
            "DescribeEvalTasks",
            "DescribeEvalTask",
            REPORT_ACTION,
            "DescribeEvalResultExportTask",
        ),
        EVAL_V2_ROUTE,
    ),
    **dict.fromkeys(
        ("DescribeServices", "DescribeService", "DescribePresetServices"), SERVICE_ROUTE
    ),
}
V2_ROUTES = frozenset(ACTION_ROUTES.values())
#: Calls whose ``downloadUrl`` is a pre-signed link, signed afresh on every call.
SIGNED_URL_ACTIONS = frozenset({"DescribeModelExportTask", "DescribeEvalResultExportTask"})
# INVENTED: the one creator every custom service of the fake account has, for DescribeServices'
# documented ``creator`` filter (no served field names a creator).
FAKE_CREATOR = "qianfan-fake-user"
#: Headers every signature must cover; the service rejects signatures that leave them out.
REQUIRED_SIGNED_HEADERS = frozenset({"host", "x-bce-date"})
DEFAULT_MAX_KEYS = 10  # documented (REFERENCE §0)
MAX_KEYS_LIMIT = 100  # documented: a larger maxKeys is treated as 100

# INVENTED for this route: 18 is the V1 QPS-limit code of the inference API (the SDK retries on
# it); the eval route's own error table is not visible.
V1_RATE_LIMIT = (18, "Open api qps request limit reached")
# SDK-only: 500001 appears once, in an SDK test comment, as "param invalid".
V1_PARAM_INVALID = (500001, "param invalid")
# INVENTED: nothing documents what a missing exportID answers; the sync must not depend on it.
V1_NOT_FOUND = (500002, "export task not exist")
#: The BCE common answer to a key whose policy does not allow the call (REFERENCE §0, §10);
#: the message is the one in seed 003's error example.
ACCESS_DENIED = ("AccessDenied", "Access denied.")


class V2Error(Exception):
    """An answer in the ``/v2`` error shape; also used for gateway-level errors on any route."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


class V1Error(Exception):
    """An answer in the ``/wenxinworkshop`` shape: HTTP 200 with ``error_code`` / ``error_msg``."""

    def __init__(self, error: tuple[int, str]) -> None:
        super().__init__(error[1])
        self.error_code, self.error_msg = error


def _invalid(message: str) -> V2Error:
    # INVENTED: no documented code for a bad body parameter (the BCE common InappropriateJSON and
    # InvalidHTTPRequest are not said to be used for it).
    return V2Error(400, "InvalidRequest", message)


def _not_found(what: str) -> V2Error:
    # INVENTED: what a missing id answers is not documented (REFERENCE §10); the sync does not
    # treat this as "not found".
    return V2Error(404, "ResourceNotFound", f"{what} not found")


def _iam_error(status: int, code: str, message: str) -> V2Error:
    """An IAM refusal: BCE body shape plus the ``X-Bce-Error-*`` headers the SDK inspects."""
    return V2Error(
        status, code, message, {"X-Bce-Error-Code": code, "X-Bce-Error-Message": message}
    )


@dataclass
class CallRecord:
    """One request as the server saw it; ``status`` is ``None`` when the connection was dropped."""

    route: str
    action: str
    body: Any
    status: int | None
    fault: str | None


@dataclass
class _Reply:
    status: int
    payload: dict[str, Any] | None = None
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False


# ---------------------------------------------------------------------- body parameters


def _opt(body: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    """``body[name]`` if present and of ``kind`` (``None`` if absent); bools are not ints."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) and kind is not bool:
        raise _invalid(f"{name} has the wrong type")
    if not isinstance(value, kind):
        raise _invalid(f"{name} has the wrong type")
    return value


def _required_str(body: dict[str, Any], name: str) -> str:
    value = _opt(body, name, str)
    if not value:
        raise _invalid(f"{name} is required")
    return cast(str, value)


def _str_list(body: dict[str, Any], name: str) -> frozenset[str] | None:
    """A ``string[]`` filter; ``None`` when absent. INVENTED: an empty list filters nothing."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _invalid(f"{name} must be a list of strings")
    return frozenset(value) or None


def _check_protocol_version(body: dict[str, Any]) -> None:
    """Documented: 1 (default) or 2. INVENTED: another value is refused; 2 changes nothing
    here (what it changes is not documented)."""
    if _opt(body, "protocolVersion", int) not in (None, 1, 2):
        raise _invalid("protocolVersion must be 1 or 2")


# ---------------------------------------------------------------------- paged listings


#: A listing's other body rules: checks the body, returns a listing-cache key and a filter.
Selector = Callable[[FakeCatalog, dict[str, Any]], tuple[Any, Callable[[dict[str, Any]], bool]]]


@dataclass(frozen=True)
class Listing:
    """One marker-paged listing: where its items come from; how they look is the action's view."""

    action: str
    list_key: str
    kind: str
    id_field: str
    include: Callable[[dict[str, Any]], bool]
    #: Body fields that filter items by equality with the same-named item field.
    filters: tuple[str, ...] = ()
    #: Any other body rules (required fields, list filters...).
    select: Selector | None = None


def _select_ft_tasks(catalog: FakeCatalog, body: dict[str, Any]) -> tuple[Any, Any]:
    """``jobId`` is required (documented). INVENTED: an unknown job is not found."""
    job_id = _required_str(body, "jobId")
    if catalog.find("fine_tuning_job", job_id) is None:
        raise _not_found(f"fine-tuning job {job_id}")
    return job_id, lambda task: task["jobId"] == job_id


def _select_eval_tasks(catalog: FakeCatalog, body: dict[str, Any]) -> tuple[Any, Any]:
    """``evalType`` is required, ``manual`` or ``auto``; ``keyFilter`` matches a task's name or
    id in part, or a version id exactly (documented).

    INVENTED: the 400 InvalidRequest for a missing or other ``evalType``; the part match ignores
    case; a version matches the tasks whose report names it (the fake knows what a task
    evaluates only from its report).
    """
    eval_type = _opt(body, "evalType", str)
    if eval_type not in EVAL_TYPES:
        raise _invalid("evalType is required: manual or auto")
    key = _opt(body, "keyFilter", str) or ""

    def include(task: dict[str, Any]) -> bool:
        if task["evalType"] != eval_type:
            return False
        if not key or key.lower() in f"{task['taskName']}\n{task['taskId']}".lower():
            return True
        report = catalog.find("eval_task_report", task["taskId"])
        return report is not None and any(u["modelId"] == key for u in report["units"])

    return (eval_type, key), include


def _select_services(catalog: FakeCatalog, body: dict[str, Any]) -> tuple[Any, Any]:
    """The documented filters. INVENTED: ``name`` is a part match ignoring case (the documents
    say "fuzzy"); ``payType`` matches a service paying either way (``Prepay,Postpay``)."""
    name = (_opt(body, "name", str) or "").lower()
    lists = {field: _str_list(body, field) for field in ("serviceType", "runStatus")}
    creators = _str_list(body, "creator")
    charge_type = _opt(body, "chargeType", str)
    pay_type = _opt(body, "payType", str)
    _check_protocol_version(body)

    def include(service: dict[str, Any]) -> bool:
        return (
            name in service["name"].lower()
            and all(wanted is None or service[f] in wanted for f, wanted in lists.items())
            and (creators is None or FAKE_CREATOR in creators)
            and charge_type in (None, service["chargeType"])
            and (pay_type is None or pay_type in service["payType"].split(","))
        )

    key = (name, tuple(lists.items()), creators, charge_type, pay_type)
    return key, include


LISTINGS: dict[str, Listing] = {
    listing.action: listing
    for listing in (
        Listing(
            "DescribeCustomModelSets",
            "customModelSetList",
            "model_set",
            "modelSetId",
            lambda s: s["source"] == "UserCreate",
        ),
        Listing(
            "DescribeSystemModelSets",
            "systemModelSetList",
            "model_set",
            "modelSetId",
            lambda s: s["source"] == "System",
        ),
        Listing(
            "DescribeModelCompTasks",
            "modelCompTaskList",
            "compression_task",
            "id",
            lambda t: True,
            filters=("sourceModelId",),
        ),
        Listing(
            "DescribeFineTuningJobs",
            "jobList",
            "fine_tuning_job",
            "jobId",
            lambda j: True,
            # Documented filters. The SDK sends ``trainModel`` instead (REFERENCE §9): ignored.
            filters=("trainMode", "model"),
        ),
        Listing(
            "DescribeFineTuningTasks",
            "taskList",
            "fine_tuning_task",
            "taskId",
            lambda t: True,
            select=_select_ft_tasks,
        ),
        Listing(
            "DescribeEvalTasks",
            "evalTaskList",
            "eval_task",
            "taskId",
            lambda t: True,
            select=_select_eval_tasks,
        ),
        # INVENTED: the list key ``serviceList`` (not visible for this call; it is
        # DescribePresetServices' documented one).
        Listing(
            "DescribeServices",
            "serviceList",
            "service",
            "serviceId",
            lambda s: True,
            select=_select_services,
        ),
    )
}


@dataclass
class _Page:
    listing: Listing
    ordered: list[dict[str, Any]]  # every matching item, in the requested direction
    start: int
    end: int
    marker: str
    max_keys: int


def _select_page(catalog: FakeCatalog, listing: Listing, body: dict[str, Any]) -> _Page:
    """Apply the documented paging rules: ``marker`` is the id of the page's first item."""
    marker = _opt(body, "marker", str) or ""
    max_keys = _opt(body, "maxKeys", int)
    if max_keys is None:
        max_keys = DEFAULT_MAX_KEYS
    if max_keys < 1:
        raise _invalid("maxKeys must be >= 1")  # INVENTED: the documents give no lower bound
    max_keys = min(max_keys, MAX_KEYS_LIMIT)
    reverse = bool(_opt(body, "pageReverse", bool))
    wanted = {name: _opt(body, name, str) for name in listing.filters}
    selected, chosen = listing.select(catalog, body) if listing.select else (None, None)

    def include(item: dict[str, Any]) -> bool:
        return (
            listing.include(item)
            and all(value is None or item.get(name) == value for name, value in wanted.items())
            and (chosen is None or chosen(item))
        )

    ordered, positions = catalog.listing(
        (listing.action, tuple(wanted.items()), selected),
        listing.kind,
        include,
        listing.id_field,
        reverse,
    )
    start = 0
    if marker:
        if marker not in positions:
            # INVENTED: what an unknown marker answers is not documented.
            raise V2Error(400, "InvalidMarker", f"marker {marker} is not valid")
        start = positions[marker]
    return _Page(listing, ordered, start, min(start + max_keys, len(ordered)), marker, max_keys)


def _render_page(catalog: FakeCatalog, page: _Page, fault: Fault | None) -> dict[str, Any]:
    """The ``result`` of one page, corrupted as the page fault (if any) says."""
    id_field = page.listing.id_field
    items = page.ordered[page.start : page.end]
    truncated = page.end < len(page.ordered)
    next_marker: str | None = page.ordered[page.end][id_field] if truncated else None
    current = items[0][id_field] if items else page.marker
    name = fault.name if fault is not None else None
    if name == "page_loop":
        truncated, next_marker = True, current
    elif name == "dup_items":
        if page.start > 0:
            items = [page.ordered[page.start - 1], *items]
        elif items:
            items = [*items, items[-1]]
    elif name == "truncated_no_marker":
        truncated, next_marker = True, None
    elif name == "empty_page_more":
        items, truncated, next_marker = [], True, next_marker or current
    page_info: dict[str, Any] = {
        "marker": page.marker,
        "maxKeys": page.max_keys,
        "isTruncated": truncated,
    }
    if truncated and next_marker is not None:
        page_info["nextMarker"] = next_marker
    listing = page.listing
    served = [catalog.view(listing.action, item[id_field], item) for item in items]
    return {listing.list_key: served, "pageInfo": page_info}


# ---------------------------------------------------------------------- single-object lookups


# Custom and preset objects are served by different calls (REFERENCE §2, §3). What the custom
# calls answer for a preset id, and the preset calls for a custom id, is not documented.
# INVENTED: both answer as for an id that does not exist (404 ResourceNotFound).


def _find_set(catalog: FakeCatalog, body: dict[str, Any], preset: bool) -> tuple[str, Any]:
    """The set named by exactly one of ``modelSetId`` / ``modelSetName`` (documented body)."""
    set_id = _opt(body, "modelSetId", str)
    name = _opt(body, "modelSetName", str)
    if bool(set_id) == bool(name):
        raise _invalid("exactly one of modelSetId and modelSetName is required")
    if set_id:
        found = catalog.find("model_set", set_id)
    else:
        found = next((s for s in catalog.items("model_set") if s["modelSetName"] == name), None)
    if found is None or catalog.is_preset_set(found["modelSetId"]) != preset:
        raise _not_found(f"model set {set_id or name}")
    return found["modelSetId"], found


def _describe_model_set(catalog: FakeCatalog, body: dict[str, Any]) -> dict[str, Any]:
    """Seed 003's shape (``source``, ``modelIds``): the sync resolves ``--model-set`` with it."""
    set_id, found = _find_set(catalog, body, preset=False)
    return catalog.view("DescribeModelSet", set_id, found)


def _describe_system_model_set(catalog: FakeCatalog, body: dict[str, Any]) -> dict[str, Any]:
    set_id, found = _find_set(catalog, body, preset=True)
    return catalog.view("DescribeSystemModelSet", set_id, found)


def _find_version(catalog: FakeCatalog, body: dict[str, Any], preset: bool) -> dict[str, Any]:
    model_id = _required_str(body, "modelId")
    found = catalog.find("model_version", model_id)
    if found is None or catalog.is_preset_version(model_id) != preset:
        raise _not_found(f"model version {model_id}")
    return found


def _describe_model(catalog: FakeCatalog, body: dict[str, Any]) -> dict[str, Any]:
    found = _find_version(catalog, body, preset=False)
    return catalog.view("DescribeModel", found["modelId"], found)


def _describe_system_model(catalog: FakeCatalog, body: dict[str, Any]) -> dict[str, Any]:
    found = _find_version(catalog, body, preset=True)
    return catalog.view("DescribeSystemModel", found["modelId"], found)


def _describe_export(catalog: FakeCatalog, body: dict[str, Any]) -> dict[str, Any]:
    """An unknown version is not found; a known version without an export has no record."""
    model_id = _find_version(catalog, body, preset=False)["modelId"]
    found = catalog.find("model_export", model_id)
    if found is None:
        # INVENTED: ``hasRecord`` is documented; that nothing else comes with ``false`` is not.
        return {"hasRecord": False}
    return catalog.view("DescribeModelExportTask", model_id, found)


def _describe_comp_task(catalog: FakeCatalog, body: dict[str, Any]) -> dict[str, Any]:
    # The documents mark modelCompTaskId "optional", but it is the lookup key.
    task_id = _required_str(body, "modelCompTaskId")
    found = catalog.find("compression_task", task_id)
    if found is None:
        raise _not_found(f"compression task {task_id}")
    return catalog.view("DescribeModelCompTask", task_id, found)


#: A call's ``result``: an object, or the list DescribeEvalTaskReport answers.
Result = dict[str, Any] | list[dict[str, Any]]
Lookup = Callable[[FakeCatalog, dict[str, Any]], Result]


def _by_id(kind: str, action: str, body_field: str, what: str) -> Lookup:
    """The lookup of one object by the required id ``body_field`` (INVENTED: not found, 404)."""

    def lookup(catalog: FakeCatalog, body: dict[str, Any]) -> dict[str, Any]:
        key = _required_str(body, body_field)
        found = catalog.find(kind, key)
        if found is None:
            raise _not_found(f"{what} {key}")
        return catalog.view(action, key, found)

    return lookup


def _describe_eval_report(catalog: FakeCatalog, body: dict[str, Any]) -> list[dict[str, Any]]:
    """A list, one object per unit (documented). INVENTED: a task without a report (not
    Successed) answers an empty list; an unknown task is not found."""
    task_id = _required_str(body, "taskId")
    if catalog.find("eval_task", task_id) is None:
        raise _not_found(f"evaluation task {task_id}")
    report = catalog.find("eval_task_report", task_id)
    return [] if report is None else catalog.view("DescribeEvalTaskReport", task_id, report)


def _describe_preset_services(catalog: FakeCatalog, body: dict[str, Any]) -> dict[str, Any]:
    """Every preset at once: no paging is documented (INVENTED: paging fields are ignored).
    The ``string[]`` filters are documented; ``chargeType`` / ``chargeStatus`` match fields that
    are INVENTED (see ``PRESET_SERVICE_FIELDS``)."""
    wanted = {
        "serviceId": _str_list(body, "serviceIds"),
        **{f: _str_list(body, f) for f in ("serviceType", "chargeType", "chargeStatus")},
    }
    _check_protocol_version(body)
    return {
        "serviceList": [
            catalog.view("DescribePresetServices", service["serviceId"], service)
            for service in catalog.items("preset_service")
            if all(values is None or service[f] in values for f, values in wanted.items())
        ]
    }


LOOKUPS: dict[str, Lookup] = {
    "DescribeModelSet": _describe_model_set,
    "DescribeSystemModelSet": _describe_system_model_set,
    "DescribeModel": _describe_model,
    "DescribeSystemModel": _describe_system_model,
    "DescribeModelExportTask": _describe_export,
    "DescribeModelCompTask": _describe_comp_task,
    "DescribeFineTuningTask": _by_id(
        "fine_tuning_task", "DescribeFineTuningTask", "taskId", "fine-tuning task"
    ),
    "DescribeEvalTask": _by_id("eval_task", "DescribeEvalTask", "taskId", "evaluation task"),
    REPORT_ACTION: _describe_eval_report,
    "DescribeEvalResultExportTask": _by_id(
        "eval_result_export_task",
        "DescribeEvalResultExportTask",
        "taskId",
        "evaluation-result export task",
    ),
    # A preset id (``svcp-``) is not found here either (INVENTED, as for preset model sets).
    "DescribeService": _by_id("service", "DescribeService", "serviceId", "service"),
    "DescribePresetServices": _describe_preset_services,
}


def _eval_export_info(catalog: FakeCatalog, body: dict[str, Any]) -> dict[str, Any]:
    """``exportID`` may be the int or the ``amemt-`` string form, as the document says."""
    export_id = body.get("exportID")
    if isinstance(export_id, bool) or not isinstance(export_id, int | str) or export_id == "":
        raise V1Error(V1_PARAM_INVALID)
    if isinstance(export_id, str) and export_id.isdigit():
        export_id = int(export_id)
    if isinstance(export_id, int):
        found = catalog.find("eval_result_export", export_id)
    else:
        found = next(
            (e for e in catalog.items("eval_result_export") if e["exportIDStr"] == export_id), None
        )
    if found is None:
        raise V1Error(V1_NOT_FOUND)  # INVENTED (see V1_NOT_FOUND)
    return catalog.view(EVAL_ROUTE, found["exportID"], found)


# ---------------------------------------------------------------------- throttling


# The limiter shapes (token bucket, fixed and sliding one-second windows) live in
# catalog.fake.limiters; ``TokenBucket`` is imported above for code that found it here.


# ---------------------------------------------------------------------- the server


#: A client that went away mid-request: nothing the server did wrong, nothing to print.
CLIENT_GONE = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Count a client's disconnect silently; any other error keeps its traceback."""
        if isinstance(sys.exc_info()[1], CLIENT_GONE):
            self.fake.count_disconnect()
            return
        super().handle_error(request, client_address)


@functools.lru_cache(maxsize=256)
def _issued(timestamp: str) -> int:
    """Seconds since the epoch of an auth string's timestamp. Cached: a second's calls share
    one, and ``strptime`` is slow next to the rest of the signature check."""
    return timegm(time.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ"))


class FakeServer:
    """The fake console API on a local port; see the module docstring for what it does."""

    def __init__(
        self,
        catalog: FakeCatalog,
        access_key: str = "fake-ak",
        secret_key: str = "fake-sk",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        rate_limit: float | None = None,
        limit_shape: str = "bucket",
        faults: FaultPlan | None = None,
        verify_signatures: bool = True,
        denied_actions: Collection[str] = (),
        replay: Recording | None = None,
    ) -> None:
        """``denied_actions``: actions (or the eval route's path) this key's policy does not allow,
        answered 403 ``AccessDenied`` after the signature check. ``replay``: serve these recorded
        answers instead of the catalog (see :mod:`catalog.fake.replay`)."""
        if isinstance(denied_actions, str):
            raise TypeError("denied_actions takes a collection of action names, not one string")
        self.catalog = catalog
        self.access_key = access_key
        self._secret_key = secret_key
        self.host = host
        self.port = port
        self.latency = latency
        # ``limit_shape``: how ``rate_limit`` counts, see catalog.fake.limiters (INVENTED).
        self.limiter = make_limiter(limit_shape, rate_limit) if rate_limit else None
        self.faults = faults
        self.verify_signatures = verify_signatures
        self.denied_actions = frozenset(denied_actions)
        self.replay = replay
        #: Connections a client reset or abandoned mid-request (handled without a traceback).
        self.disconnects = 0
        self.calls: list[CallRecord] = []
        self._calls_lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._url_counter = 0

    def __repr__(self) -> str:
        return f"FakeServer(url={self.url!r}, access_key={self.access_key!r}, secret_key='***')"

    # lifecycle

    def start(self) -> FakeServer:
        if self._httpd is not None:
            return self
        httpd = _HTTPServer((self.host, self.port), _Handler)
        httpd.fake = self
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-console:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # call log

    def record(self, call: CallRecord) -> None:
        with self._calls_lock:
            self.calls.append(call)

    def call_count(self, action: str | None = None) -> int:
        """Requests received; with ``action``, those for that action (or that route)."""
        with self._calls_lock:
            return sum(1 for c in self.calls if action is None or action in (c.action, c.route))

    def count_disconnect(self) -> None:
        with self._calls_lock:
            self.disconnects += 1

    # request processing, called from handler threads

    def check_signature(
        self, method: str, path: str, query: list[tuple[str, str]], headers: dict[str, str]
    ) -> None:
        """Verify the BCE v1 signature the way the service's IAM does; raise a 403 if wrong.

        InvalidAccessKeyId (403) is a documented BCE common code, and the SDK knows the
        SignatureDoesNotMatch message; using SignatureDoesNotMatch for a missing or malformed
        header (rather than the BCE common InvalidHTTPAuthHeader, 400) and 403 for RequestExpired
        (its status is not visible) is INVENTED.
        """

        def deny(code: str, message: str) -> V2Error:
            return _iam_error(403, code, message)

        lowered = {k.lower(): v for k, v in headers.items()}
        header = lowered.get("authorization", "")
        parsed = parse_authorization(header) if header else None
        if parsed is None:
            raise deny("SignatureDoesNotMatch", "missing or malformed Authorization header")
        if parsed.access_key != self.access_key:
            raise deny("InvalidAccessKeyId", "the access key id does not exist")
        signed = {h.lower() for h in parsed.signed_headers}
        if not signed >= REQUIRED_SIGNED_HEADERS or "x-bce-date" not in lowered:
            raise deny("SignatureDoesNotMatch", "host and x-bce-date must be signed")
        try:
            issued = _issued(parsed.timestamp)
        except ValueError:
            raise deny("SignatureDoesNotMatch", "malformed timestamp") from None
        if time.time() > issued + parsed.expiry:
            raise deny("RequestExpired", "the request has expired")
        expected = signature(
            self._secret_key, parsed.prefix, method, path, query, headers, parsed.signed_headers
        )
        if not hmac.compare_digest(expected, parsed.signature):
            raise deny("SignatureDoesNotMatch", "the request signature does not match")

    def signed_download_url(self, base: str) -> str:
        """A fresh pre-signed link: same path every time, a new query string on every call.

        INVENTED detail: the documents say only that ``downloadUrl`` is a download address; a
        pre-signed object-store link that changes per call is how BOS links usually behave.
        """
        with self._calls_lock:
            self._url_counter += 1
            counter = self._url_counter
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        digest = hashlib.sha256(
            f"{self._secret_key}:{base}:{counter}:{uuid.uuid4()}".encode()
        ).hexdigest()
        query = urlencode(
            {"authorization": f"bce-auth-v1/fakebos/{stamp}/3600/host/{digest}", "expires": "3600"}
        )
        return f"{base}?{query}"

    def answer(self, route: str, action: str, body: dict[str, Any], fault: Fault | None) -> Result:
        """The ``result`` of one well-formed call (raises V2Error / V1Error otherwise): an object,
        or the list DescribeEvalTaskReport answers."""
        with self.catalog.lock:
            if route == EVAL_ROUTE:
                return _eval_export_info(self.catalog, body)
            if ACTION_ROUTES.get(action) != route:
                # INVENTED: what an unknown Action (or another route's) answers is not documented.
                raise V2Error(400, "InvalidAction", f"unknown Action {action!r} on {route}")
            listing = LISTINGS.get(action)
            if listing is not None:
                return _render_page(self.catalog, _select_page(self.catalog, listing, body), fault)
            result = LOOKUPS[action](self.catalog, body)
        if action in SIGNED_URL_ACTIONS and isinstance(result, dict) and result.get("downloadUrl"):
            result["downloadUrl"] = self.signed_download_url(result["downloadUrl"])
        return result

    def reply(self, route: str, action: str, body: dict[str, Any], fault: Fault | None) -> _Reply:
        """The answer to one well-formed call: from the recording when replaying, else computed."""
        if self.replay is None:
            return _Reply(200, {"result": self.answer(route, action, body, fault)})
        recorded = self.replay.take(route, action, body)
        if recorded is None:
            # INVENTED: the fake's own answer to a request the recording does not hold.
            raise V2Error(404, "NoRecording", f"no recorded answer for {action} with this body")
        return _Reply(recorded.status, raw=recorded.data())


#: Limits of a request's header section, as http.client's own.
_MAX_LINE = 65536
_MAX_HEADERS = 100

_MALFORMED = b'{"requestId": "5f0c", "result": {"items": [{"id": "am'


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects
    # Headers and body leave in one segment, with no Nagle delay: otherwise every answer on a
    # kept-alive connection waits ~40 ms for the client's delayed ACK, and the benchmark lies.
    wbufsize = 1 << 16
    disable_nagle_algorithm = True
    server_version = "FakeQianfanConsole/1.0"
    timeout = 30

    @property
    def fake(self) -> FakeServer:
        return cast(_HTTPServer, self.server).fake

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silent: tests and the demo read :attr:`FakeServer.calls` instead of stderr."""

    def parse_request(self) -> bool:
        """The standard parse for a plain ``METHOD /path HTTP/1.x`` request, with the headers
        read line by line instead of through the ``email`` package's parser, which costs much
        of the fake's CPU per call (the benchmarks run fakes beside the syncs they measure).
        Any other request line goes to the standard parser, errors and all."""
        raw: bytes = getattr(self, "raw_requestline", b"")  # set by handle_one_request
        self.requestline = str(raw, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split(" ")
        if len(words) != 3 or words[2] not in ("HTTP/1.1", "HTTP/1.0") or not words[1]:
            return super().parse_request()
        self.command, self.path, self.request_version = words
        self.close_connection = words[2] == "HTTP/1.0"  # 1.1 keeps the connection by default
        if self.path.startswith("//"):
            self.path = "/" + self.path.lstrip("/")
        headers = http.client.HTTPMessage()
        count = 0
        while True:
            line = self.rfile.readline(_MAX_LINE + 1)
            if len(line) > _MAX_LINE:
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long")
                return False
            if line in (b"\r\n", b"\n", b""):
                break
            count += 1
            if count > _MAX_HEADERS:
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers")
                return False
            name, colon, value = str(line, "iso-8859-1").partition(":")
            if not colon or not name or name != name.strip():
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad header line {name[:40]!r}")
                return False
            headers[name] = value.strip()
        self.headers = headers
        connection = headers.get("Connection", "").lower()
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive":
            self.close_connection = False
        if headers.get("Expect", "").lower() == "100-continue" and words[2] == "HTTP/1.1":
            return self.handle_expect_100()
        return True

    def do_POST(self) -> None:
        self._serve("POST")

    def do_GET(self) -> None:
        self._serve("GET")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        route = url.path
        query = parse_qsl(url.query, keep_blank_values=True)
        action = dict(query).get("Action", "") if route in V2_ROUTES else route
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length) if length > 0 else b""
        body: Any = None
        try:
            body = json.loads(raw_body) if raw_body else None
        except ValueError:
            body = None
        self._drawn: Fault | None = None
        try:
            reply = self._process(method, route, action, query, body)
        except V2Error as err:
            reply = _Reply(
                err.status, {"code": err.code, "message": err.message}, None, dict(err.headers)
            )
        except V1Error as err:
            reply = _Reply(200, {"error_code": err.error_code, "error_msg": err.error_msg})
        fault = self._drawn
        self.fake.record(
            CallRecord(
                route,
                action,
                body,
                None if reply.drop else reply.status,
                fault.name if fault else None,
            )
        )
        if self.fake.latency > 0:
            time.sleep(self.fake.latency)
        self._send(route, reply)

    def _process(
        self, method: str, route: str, action: str, query: list[tuple[str, str]], body: Any
    ) -> _Reply:
        fake = self.fake
        if route not in V2_ROUTES and route != EVAL_ROUTE:
            # A BCE common code (400); that the console answers an unknown path with it is assumed.
            raise V2Error(400, "InvalidURI", f"no such route {route}")
        if method != "POST":
            # INVENTED: only POST is documented; what other methods answer is not.
            raise V2Error(405, "MethodNotAllowed", "only POST is supported", {"Allow": "POST"})
        if fake.verify_signatures:
            fake.check_signature(method, route, query, dict(self.headers.items()))
        if action in fake.denied_actions:
            # The eval route answers in the BCE shape too: IAM sits in front of both routes (as
            # for signature failures); that it does not answer in the V1 shape is an assumption.
            raise _iam_error(403, *ACCESS_DENIED)
        if fake.limiter is not None and not fake.limiter.try_acquire():
            if route == EVAL_ROUTE:
                raise V1Error(V1_RATE_LIMIT)
            wait = fake.limiter.retry_after  # INVENTED, as is the code: see catalog.fake.limiters
            headers = {"Retry-After": f"{wait:g}"} if wait is not None else None
            raise V2Error(429, "RequestLimitExceeded", "request rate limit exceeded", headers)
        fault = None
        if fake.faults is not None:
            paged = action in LISTINGS and ACTION_ROUTES[action] == route
            fault = fake.faults.draw(action, route, paged=paged)
            self._drawn = fault
        if fault is not None and fault.name == "slow":
            time.sleep(float(fault.params["seconds"]))  # late, but otherwise a normal answer
        elif fault is not None and not fault.is_page_fault:
            return self._transport_fault(route, fault)
        if not isinstance(body, dict):
            if route == EVAL_ROUTE:
                raise V1Error(V1_PARAM_INVALID)
            raise _invalid("the body must be a JSON object")
        if route in V2_ROUTES and not action:
            # INVENTED, as for an unknown Action.
            raise V2Error(400, "InvalidAction", "the Action query parameter is required")
        return fake.reply(route, action, body, fault)

    @staticmethod
    def _transport_fault(route: str, fault: Fault) -> _Reply:
        name, params = fault.name, fault.params
        if name == "drop":
            return _Reply(0, drop=True)
        if name == "malformed":
            return _Reply(200, raw=_MALFORMED)
        if name == "5xx":
            status = int(params["status"])
            # InternalError is a BCE common code; BadGateway / ServiceUnavailable are INVENTED.
            codes = {500: "InternalError", 502: "BadGateway", 503: "ServiceUnavailable"}
            return _Reply(status, {"code": codes[status], "message": "injected server error"})
        if name == "v1_rate_limit" and route == EVAL_ROUTE:
            code, msg = V1_RATE_LIMIT
            return _Reply(200, {"error_code": code, "error_msg": msg})
        # "429", and "v1_rate_limit" on a /v2 route, which has no in-band throttling answer.
        # INVENTED: no console throttling answer is documented (REFERENCE §10): the status, the
        # code RequestLimitExceeded and Retry-After are what a client must cope with, not facts.
        headers: dict[str, str] = {}
        retry_after = params.get("retry_after")
        if retry_after == "http-date":
            headers["Retry-After"] = formatdate(time.time() + 1, usegmt=True)
        elif retry_after is not None:
            headers["Retry-After"] = (
                f"{retry_after:g}" if isinstance(retry_after, float) else str(retry_after)
            )
        return _Reply(
            429, {"code": "RequestLimitExceeded", "message": "injected throttling"}, headers=headers
        )

    def _send(self, route: str, reply: _Reply) -> None:
        if reply.drop:
            self.close_connection = True
            return
        headers = dict(reply.headers)
        if reply.raw is not None:
            data = reply.raw
        else:
            payload = dict(reply.payload or {})
            if "error_code" in payload or (route == EVAL_ROUTE and reply.status == 200):
                # ``log_id`` is an int in the document. INVENTED: that V1 errors come in an
                # HTTP 200 (the documents give the body fields, not the status).
                payload = {"log_id": uuid.uuid4().int % 10**10, **payload}
            else:
                request_id = str(uuid.uuid4())
                payload = {"requestId": request_id, **payload}
                # INVENTED: the header is not in the documents (BCE services commonly send it).
                headers.setdefault("X-Bce-Request-Id", request_id)
            data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def _until_interrupted() -> None:
    """Block the ``fake-api`` command until Ctrl-C. Its own function so that a test can stop
    the command here, instead of replacing ``time.sleep`` for every thread of the process."""
    while True:
        time.sleep(0.5)


def serve(
    port: int = 8100,
    seed: int = 0,
    model_sets: int = 5,
    versions_per_set: int = 2,
    comp_tasks: int = 30,
    eval_exports: int = 3,
    system_sets: int = 2,
    export_share: float = 0.6,
    access_key: str = "fake-ak",
    secret_key: str = "fake-sk",
    latency: float = 0.0,
    rate_limit: float | None = None,
    limit_shape: str = "bucket",
    fault_rate: float = 0.0,
    host: str = "127.0.0.1",
    echo: Callable[[str], None] = print,
    denied_actions: Collection[str] = (),
    replay_dir: str | None = None,
) -> None:
    """Run a fake console until Ctrl-C; the CLI's ``fake-server`` command wraps this.

    ``fault_rate`` is the chance that a call gets a *retryable* fault (see
    :func:`catalog.fake.faults.chaos_plan`), so a correct client still completes a sync.
    ``denied_actions`` answer 403 AccessDenied; ``replay_dir`` serves a recording (its
    ``calls.jsonl``) instead of a generated catalog.
    """
    recording = load_recording(replay_dir) if replay_dir is not None else None
    catalog = (
        FakeCatalog()
        if recording is not None
        else FakeCatalog.generate(
            seed=seed,
            model_sets=model_sets,
            versions_per_set=versions_per_set,
            comp_tasks=comp_tasks,
            eval_exports=eval_exports,
            system_sets=system_sets,
            export_share=export_share,
        )
    )
    plan = chaos_plan(fault_rate, seed) if fault_rate > 0 else None
    server = FakeServer(
        catalog,
        access_key,
        secret_key,
        host=host,
        port=port,
        latency=latency,
        rate_limit=rate_limit,
        limit_shape=limit_shape,
        faults=plan,
        denied_actions=denied_actions,
        replay=recording,
    )
    # Ctrl-C is this command's way to stop, not an interruption: the console script's handler
    # (exit 9, ``catalog/entry.py``) gives way to Python's KeyboardInterrupt before the line
    # that says to press it.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler) if main else None
    try:
        server.start()
    except BaseException:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        raise
    try:
        from catalog.settings import mask  # a credential: shortened as everywhere

        shown = mask("access_key", access_key)
        echo(f"fake Qianfan console on {server.url} (access key {shown}); Ctrl-C to stop")
        if recording is not None:
            echo(f"replaying {recording.size} recorded answers from {replay_dir}")
        _until_interrupted()
    except KeyboardInterrupt:
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        server.stop()
        echo(f"stopped after {server.call_count()} calls")
        if recording is not None and recording.missed:
            echo(f"{len(recording.missed)} calls had no recorded answer (HTTP 404 NoRecording)")
