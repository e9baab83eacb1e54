"""A local HTTP server that answers like the Qianfan console API, over a :class:`FakeCatalog`.

It is a real server (sockets, keep-alive, threads), not a mock, so the whole client stack is what
gets tested: signing, connection reuse, timeouts, retries, paging. It verifies BCE v1 signatures
with the same pure functions the client signs with, answers both error shapes the service uses
(``/v2`` and the older ``/wenxinworkshop`` routes), throttles like the service when asked to, and
misbehaves on purpose through a :class:`FaultPlan`.

The handlers are table-driven: the three marker-paged listings are rows of :data:`LISTINGS`, the
single-object lookups rows of :data:`LOOKUPS`, so their paging and error behaviour cannot drift
apart.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import threading
import time
import uuid
from calendar import timegm
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit

from catalog.api.auth import parse_authorization, signature
from catalog.fake.catalog import FakeCatalog
from catalog.fake.faults import Fault, FaultPlan, chaos_plan

V2_ROUTE = "/v2/model"
EVAL_ROUTE = "/wenxinworkshop/modelrepo/eval/result/export/info"
#: Headers every signature must cover; the service rejects signatures that leave them out.
REQUIRED_SIGNED_HEADERS = frozenset({"host", "x-bce-date"})
DEFAULT_MAX_KEYS = 10
MAX_KEYS_LIMIT = 100

V1_RATE_LIMIT = (18, "Open api qps request limit reached")
V1_PARAM_INVALID = (500001, "param invalid")
V1_NOT_FOUND = (500002, "export task not exist")


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
    return V2Error(400, "InvalidRequest", message)


def _not_found(what: str) -> V2Error:
    return V2Error(404, "ResourceNotFound", f"{what} not found")


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


# ---------------------------------------------------------------------- paged listings


def _set_summary(item: dict[str, Any]) -> dict[str, Any]:
    """A listing shows a model set without its version ids; DescribeModelSet has those."""
    return {k: copy.deepcopy(v) for k, v in item.items() if k != "modelIds"}


@dataclass(frozen=True)
class Listing:
    """One marker-paged listing: where its items come from and how they look in a page."""

    list_key: str
    kind: str
    id_field: str
    include: Callable[[dict[str, Any]], bool]
    project: Callable[[dict[str, Any]], dict[str, Any]] = copy.deepcopy
    #: Body fields that filter items by equality with the same-named item field.
    filters: tuple[str, ...] = ()


LISTINGS: dict[str, Listing] = {
    "DescribeCustomModelSets": Listing(
        "customModelSetList",
        "model_set",
        "modelSetId",
        lambda s: s["source"] == "UserCreate",
        _set_summary,
    ),
    "DescribeSystemModelSets": Listing(
        "systemModelSetList",
        "model_set",
        "modelSetId",
        lambda s: s["source"] == "System",
        _set_summary,
    ),
    "DescribeModelCompTasks": Listing(
        "modelCompTaskList",
        "compression_task",
        "id",
        lambda t: True,
        filters=("sourceModelId",),
    ),
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
        raise _invalid("maxKeys must be >= 1")
    max_keys = min(max_keys, MAX_KEYS_LIMIT)
    reverse = bool(_opt(body, "pageReverse", bool))
    wanted = {name: _opt(body, name, str) for name in listing.filters}

    def include(item: dict[str, Any]) -> bool:
        return listing.include(item) and all(
            value is None or item.get(name) == value for name, value in wanted.items()
        )

    ordered, positions = catalog.listing(
        (listing.list_key, tuple(wanted.items())), listing.kind, include, listing.id_field, reverse
    )
    start = 0
    if marker:
        if marker not in positions:
            raise V2Error(400, "InvalidMarker", f"marker {marker} is not valid")
        start = positions[marker]
    return _Page(listing, ordered, start, min(start + max_keys, len(ordered)), marker, max_keys)


def _render_page(page: _Page, fault: Fault | None) -> dict[str, Any]:
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
    return {page.listing.list_key: [page.listing.project(i) for i in items], "pageInfo": page_info}


# ---------------------------------------------------------------------- single-object lookups


def _describe_model_set(catalog: FakeCatalog, body: dict[str, Any]) -> dict[str, Any]:
    set_id = _opt(body, "modelSetId", str)
    name = _opt(body, "modelSetName", str)
    if bool(set_id) == bool(name):
        raise _invalid("exactly one of modelSetId and modelSetName is required")
    if set_id:
        found = catalog.find("model_set", set_id)
    else:
        found = next((s for s in catalog.items("model_set") if s["modelSetName"] == name), None)
    if found is None:
        raise _not_found(f"model set {set_id or name}")
    return copy.deepcopy(found)


def _describe_model(catalog: FakeCatalog, body: dict[str, Any]) -> dict[str, Any]:
    model_id = _required_str(body, "modelId")
    found = catalog.find("model_version", model_id)
    if found is None:
        raise _not_found(f"model version {model_id}")
    return copy.deepcopy(found)


def _describe_export(catalog: FakeCatalog, body: dict[str, Any]) -> dict[str, Any]:
    """An unknown version is not found; a known version without an export has no record."""
    model_id = _required_str(body, "modelId")
    if catalog.find("model_version", model_id) is None:
        raise _not_found(f"model version {model_id}")
    found = catalog.find("model_export", model_id)
    return copy.deepcopy(found) if found is not None else {"hasRecord": False}


LOOKUPS: dict[str, Callable[[FakeCatalog, dict[str, Any]], dict[str, Any]]] = {
    "DescribeModelSet": _describe_model_set,
    "DescribeModel": _describe_model,
    "DescribeModelExportTask": _describe_export,
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
        raise V1Error(V1_NOT_FOUND)
    return copy.deepcopy(found)


# ---------------------------------------------------------------------- throttling


class TokenBucket:
    """Server-side QPS limit: ``rate`` calls/s with a burst of ``max(1, rate)``."""

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        self.capacity = max(1.0, rate)
        self._tokens = self.capacity
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def try_acquire(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False


# ---------------------------------------------------------------------- the server


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeServer


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
        faults: FaultPlan | None = None,
        verify_signatures: bool = True,
    ) -> None:
        self.catalog = catalog
        self.access_key = access_key
        self._secret_key = secret_key
        self.host = host
        self.port = port
        self.latency = latency
        self.limiter = TokenBucket(rate_limit) if rate_limit else None
        self.faults = faults
        self.verify_signatures = verify_signatures
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

    # request processing, called from handler threads

    def check_signature(
        self, method: str, path: str, query: list[tuple[str, str]], headers: dict[str, str]
    ) -> None:
        """Verify the BCE v1 signature the way the service's IAM does; raise a 403 if wrong."""

        def deny(code: str, message: str) -> V2Error:
            return V2Error(
                403, code, message, {"X-Bce-Error-Code": code, "X-Bce-Error-Message": message}
            )

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
            issued = timegm(time.strptime(parsed.timestamp, "%Y-%m-%dT%H:%M:%SZ"))
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
        """A fresh pre-signed link: same path every time, a new query string on every call."""
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

    def answer(
        self, route: str, action: str, body: dict[str, Any], fault: Fault | None
    ) -> dict[str, Any]:
        """The ``result`` object of one well-formed call (raises V2Error / V1Error otherwise)."""
        with self.catalog.lock:
            if route == EVAL_ROUTE:
                return _eval_export_info(self.catalog, body)
            listing = LISTINGS.get(action)
            if listing is not None:
                return _render_page(_select_page(self.catalog, listing, body), fault)
            lookup = LOOKUPS.get(action)
            if lookup is None:
                raise V2Error(400, "InvalidAction", f"unknown Action {action!r}")
            result = lookup(self.catalog, body)
        if action == "DescribeModelExportTask" and result.get("downloadUrl"):
            result["downloadUrl"] = self.signed_download_url(result["downloadUrl"])
        return result


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
        action = dict(query).get("Action", "") if route == V2_ROUTE else route
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
        if route not in (V2_ROUTE, EVAL_ROUTE):
            raise V2Error(404, "InvalidURI", f"no such route {route}")
        if method != "POST":
            raise V2Error(405, "MethodNotAllowed", "only POST is supported", {"Allow": "POST"})
        if fake.verify_signatures:
            fake.check_signature(method, route, query, dict(self.headers.items()))
        if fake.limiter is not None and not fake.limiter.try_acquire():
            if route == EVAL_ROUTE:
                raise V1Error(V1_RATE_LIMIT)
            raise V2Error(429, "RequestLimitExceeded", "request rate limit exceeded")
        fault = None
        if fake.faults is not None:
            fault = fake.faults.draw(action, route, paged=route == V2_ROUTE and action in LISTINGS)
            self._drawn = fault
        if fault is not None and fault.name == "slow":
            time.sleep(float(fault.params["seconds"]))  # late, but otherwise a normal answer
        elif fault is not None and not fault.is_page_fault:
            return self._transport_fault(route, fault)
        if not isinstance(body, dict):
            if route == EVAL_ROUTE:
                raise V1Error(V1_PARAM_INVALID)
            raise _invalid("the body must be a JSON object")
        if route == V2_ROUTE and not action:
            raise V2Error(400, "InvalidAction", "the Action query parameter is required")
        return _Reply(200, {"result": fake.answer(route, action, body, fault)})

    @staticmethod
    def _transport_fault(route: str, fault: Fault) -> _Reply:
        name, params = fault.name, fault.params
        if name == "drop":
            return _Reply(0, drop=True)
        if name == "malformed":
            return _Reply(200, raw=_MALFORMED)
        if name == "5xx":
            status = int(params["status"])
            codes = {500: "InternalError", 502: "BadGateway", 503: "ServiceUnavailable"}
            return _Reply(status, {"code": codes[status], "message": "injected server error"})
        if name == "v1_rate_limit" and route == EVAL_ROUTE:
            code, msg = V1_RATE_LIMIT
            return _Reply(200, {"error_code": code, "error_msg": msg})
        # "429", and "v1_rate_limit" on a /v2 route, which has no in-band throttling answer.
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
                payload = {"log_id": str(uuid.uuid4().int % 10**10), **payload}
            else:
                request_id = str(uuid.uuid4())
                payload = {"requestId": request_id, **payload}
                headers.setdefault("X-Bce-Request-Id", request_id)
            data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


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
    fault_rate: float = 0.0,
    host: str = "127.0.0.1",
    echo: Callable[[str], None] = print,
) -> None:
    """Run a fake console until Ctrl-C; the CLI's ``fake-server`` command wraps this.

    ``fault_rate`` is the chance that a call gets a *retryable* fault (see
    :func:`catalog.fake.faults.chaos_plan`), so a correct client still completes a sync.
    """
    catalog = FakeCatalog.generate(
        seed=seed,
        model_sets=model_sets,
        versions_per_set=versions_per_set,
        comp_tasks=comp_tasks,
        eval_exports=eval_exports,
        system_sets=system_sets,
        export_share=export_share,
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
        faults=plan,
    )
    server.start()
    echo(f"fake Qianfan console on {server.url} (access key {access_key}); Ctrl-C to stop")
    try:
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        echo(f"stopped after {server.call_count()} calls")
