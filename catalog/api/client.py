"""The one HTTP client for the Qianfan console API.

Everything that talks to the service goes through ``ConsoleClient`` so that signing, timeouts,
rate limiting, retries and the service's three ways of reporting an error are handled once. The
secret key is handed to ``BceAuth`` and never kept, formatted or logged here.

Every answer is reported to the shared :class:`RateLimiter` (throttled or not), so the pace
follows what the server accepts; a ``Retry-After`` holds every worker, not only the one that got
it. An optional :class:`Recorder` keeps each exchange for replay.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from requests.adapters import BaseAdapter, HTTPAdapter
from requests.structures import CaseInsensitiveDict

from catalog import redact
from catalog.api import early
from catalog.api.auth import BceAuth
from catalog.api.pacing import RateLimiter
from catalog.api.record import Recorder
from catalog.api.retry import (
    RetryPolicy,
    classify,
    is_throttling,
    parse_retry_after,
)
from catalog.errors import ApiDown, ApiError, MalformedResponse, NotTheApi

EventHook = Callable[[str, dict[str, Any]], None]

#: How much of an unreadable body to quote in an error: enough to recognise an HTML error page.
_SNIPPET = 120
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(rb"<[^>]*>?")
#: The first segments of the routes each call adds to the base URL (REFERENCE §0, §6-9).
_ROUTES = frozenset({"v2", "wenxinworkshop"})
#: urllib3 prefixes causes with the connection object, e.g. "HTTPSConnection(host='h', port=443): ".
_POOL_PREFIX = re.compile(r"^\w*Connection(?:Pool)?\([^)]*\):\s*")


class ConsoleAdapter(HTTPAdapter):
    """requests' adapter, less two things a client of one API does not need on every call.

    - The connection pool is looked up once per origin and settings, not per request: the
      lookup parses the URL, selects a proxy and normalises a pool key each time.
    - Cookies are not copied into a jar: the console API authenticates every request by its
      signature, and the client sends no cookie.

    In a paced sync every call runs after a sleep, with cold caches, so the per-call Python is
    what the accounts benchmark (many syncs on one host) pays for.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pools: dict[tuple[Any, ...], Any] = {}

    def get_connection_with_tls_context(
        self,
        request: requests.PreparedRequest,
        verify: bool | str | None,
        proxies: Mapping[str, str] | None = None,
        cert: Any = None,
    ) -> Any:
        url = request.url or ""
        scheme, _, rest = url.partition("://")
        key = (scheme, rest.partition("/")[0], verify, cert,
               tuple(sorted(proxies.items())) if proxies else ())
        pool = self._pools.get(key)
        if pool is None:  # a race only looks it up twice; both get the manager's one pool
            pool = super().get_connection_with_tls_context(
                request, verify, proxies=dict(proxies) if proxies else None, cert=cert
            )
            self._pools[key] = pool
        return pool

    def close(self) -> None:
        self._pools.clear()
        super().close()

    def build_response(self, req: requests.PreparedRequest, resp: Any) -> requests.Response:
        response = requests.Response()
        response.status_code = resp.status
        response.headers = CaseInsensitiveDict(resp.headers)
        response.raw = resp
        response.reason = resp.reason
        response.url = req.url or ""
        response.request = req
        response.connection = self
        return response


def build_session(
    access_key: str,
    secret_key: str,
    *,
    pool_size: int = 10,
    verify: bool = True,
    base_url: str | None = None,
) -> requests.Session:
    """The only place a ``requests.Session`` is configured, so every request is signed the same way.

    urllib3's own retries are off (``max_retries=0``): retrying is ``RetryPolicy``'s job, and two
    layers retrying would multiply attempts and hide them from the counters and the rate limiter.

    Given the ``base_url`` every request goes to, the environment (``HTTPS_PROXY``, ``NO_PROXY``,
    ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``) is read once, here, with requests' own rules,
    instead of on every request: requests otherwise walks ``os.environ`` for proxies and, with a
    CA bundle set, checks whether it is a directory on every call (a system call per request,
    which the accounts benchmark showed among the sync's largest costs). A CA bundle matters to
    HTTPS only.
    """
    session = requests.Session()
    adapter = ConsoleAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.auth = BceAuth(access_key, secret_key)
    session.verify = verify
    if base_url is not None:
        session.proxies.update(requests.utils.get_environ_proxies(base_url))
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if verify and bundle and urlsplit(base_url).scheme == "https":
            session.verify = bundle
        session.trust_env = False
    session.headers.update({"Content-Type": "application/json", "Accept": "application/json"})
    return session


def _lowered(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers by lower-case name, so a plain ``dict`` in tests reads like requests' own
    case-insensitive one; built once per answer, not once per header looked up."""
    return {key.lower(): str(value).strip() for key, value in headers.items()}


def _json_kind(value: Any) -> str:
    """JSON's own name for a decoded value's type, for messages read by people who know JSON."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    names = {list: "array", str: "string", int: "number", float: "number", dict: "object"}
    return names.get(type(value), type(value).__name__)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def describe_body(content: bytes) -> str:
    """What an answer that is not JSON holds, in one line: an HTML page by its title (a web
    server or gateway's error page: quoted whole, it filled the terminal), else its start."""
    text = content.lstrip()[:4096]
    if text[:1] == b"<":
        title = _TITLE.search(text)
        words = title.group(1) if title else _TAG.sub(b" ", text)
        name = " ".join(words.decode("utf-8", "replace").split())[:_SNIPPET]
        return f"an HTML page ({name!r})" if name else "an HTML page"
    snippet = " ".join(content[:_SNIPPET].decode("utf-8", "replace").split())
    return repr(snippet) if snippet else "nothing"


def parse_answer(
    call: str, status: int, headers: Mapping[str, str], content: bytes, *, listed: bool = False
) -> Any:
    """Turn one HTTP answer into its ``result`` object, or raise the one ``ApiError`` it means.

    The service reports failure three ways: IAM in ``X-Bce-Error-*`` headers (body optional), /v2
    routes as ``{requestId, code, message}`` with HTTP >= 400 (a ``code`` with HTTP 200 is one
    too), and /wenxinworkshop routes as
    ``{error_code, error_msg, log_id}`` inside an HTTP 200. All become the same ``ApiError`` so
    callers decide on ``code``/``status``/``retryable`` without knowing which route they used.
    """
    payload: Any
    try:
        payload = json.loads(content) if content.strip() else None
        parsed = True
    except (ValueError, UnicodeDecodeError):
        payload, parsed = None, False
    body = payload if isinstance(payload, dict) else {}
    header = _lowered(headers)

    request_id = (
        _text(body.get("requestId"))
        or _text(body.get("log_id"))
        or header.get("x-bce-request-id", "")
    )
    retry_after = parse_retry_after(header.get("retry-after", "") or None)

    def fail(message: str, code: str) -> ApiError:
        return ApiError(
            message,
            call=call,
            code=code,
            status=status,
            request_id=request_id,
            retryable=classify(status=status, code=code),
            retry_after=retry_after,
        )

    iam_code = header.get("x-bce-error-code", "")
    if iam_code:
        message = (
            header.get("x-bce-error-message", "")
            or _text(body.get("message"))
            or f"rejected with HTTP {status}"
        )
        raise fail(message, iam_code)

    error_code = body.get("error_code")
    if error_code not in (None, 0, "0", ""):
        raise fail(_text(body.get("error_msg")) or "error without a message", _text(error_code))

    code = body.get("code")
    if status < 300 and code not in (None, 0, "0", ""):
        # The documents put code and message next to requestId on an error (REFERENCE §0, and
        # the preset set listing's page: "for errors"); an error sent with HTTP 200 and a
        # result beside it (an empty page that says it is the last) would otherwise delete.
        raise fail(_text(body.get("message")) or "error without a message", _text(code))

    if 300 <= status < 400:
        target = urlsplit(header.get("location", "")).netloc or "elsewhere"
        raise fail(
            f"HTTP {status}: the API answered with a redirect to {target}, which is not followed; "
            "check --base-url",
            "",
        )
    if status >= 400:
        if body:
            message = _text(body.get("message")) or f"HTTP {status} without a message"
            raise fail(message, _text(body.get("code")))
        # Not the console's JSON error: a gateway in front of it (a 502/503/504 page or a
        # throttling 429, retried; a 401/403, the credentials), or another server altogether
        # (a wrong --base-url).
        what = f"answered {describe_body(content)}, not the API's JSON"
        if classify(status=status) or status in (401, 403):
            raise fail(what, "")
        raise NotTheApi(
            f"{what}: is --base-url (QIANFAN_CONSOLE_API_BASE_URL) the console API's?",
            call=call, status=status, request_id=request_id,
        )

    if not parsed or not content.strip():
        # An HTML page from a gateway, a body cut short: the next attempt may well be whole, so
        # this is retried like a 5xx (every call the catalog makes is a read). JSON of the wrong
        # shape, below, is the server's considered answer and is not.
        what = f"answer is not JSON: {describe_body(content)}" if content.strip() else (
            "answer is empty"
        )
        raise MalformedResponse(
            what, call=call, status=status, request_id=request_id, retryable=True
        )
    if not isinstance(payload, dict):
        raise MalformedResponse(
            f"answer is a JSON {_json_kind(payload)}, not an object",
            call=call, status=status, request_id=request_id,
        )
    if "result" not in payload:
        raise MalformedResponse(
            "answer has no 'result'", call=call, status=status, request_id=request_id
        )
    result = payload["result"]
    if not isinstance(result, list if listed else dict):  # a few calls answer a list
        raise MalformedResponse(
            f"'result' is a JSON {_json_kind(result)}, not an {'array' if listed else 'object'}",
            call=call, status=status, request_id=request_id,
        )
    return result


def _transport_reason(exc: requests.RequestException) -> str:
    """The root cause of a transport failure, without urllib3's pool and object-address noise."""
    inner: Any = exc.args[0] if exc.args else exc
    reason = getattr(inner, "reason", None) or inner
    text = str(reason)
    text = text.split(">: ", 1)[-1] if ">: " in text else text
    return _POOL_PREFIX.sub("", text)


#: Seconds without any answer from the API, since the first call, before a call's failure
#: (after its retries) is the whole run's (``ApiDown``) ...
OUTAGE = 120.0
#: ... once this many calls in a row failed without one: a single call that hangs or keeps
#: failing (its retries last up to ``RetryPolicy.max_total``, as long as ``OUTAGE``) at the tail
#: of a run, or with one worker, is its entity's failure, not an outage.
OUTAGE_CALLS = 3


def _answered(error: ApiError) -> bool:
    """Whether a failed call still heard from the API itself: its answer was not a gateway's
    5xx, and there was one."""
    return error.status is not None and error.status < 500


class ConsoleClient:
    """Signed, rate-limited, retried calls to the console API; safe to share between threads."""

    def __init__(
        self,
        base_url: str,
        access_key: str,
        secret_key: str,
        *,
        timeout: tuple[float, float] = (5.0, 30.0),
        retry: RetryPolicy | None = None,
        limiter: RateLimiter | None = None,
        pool_size: int = 10,
        verify: bool = True,
        on_event: EventHook | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                f"base URL {parts.scheme}://{parts.hostname}... holds a user name or password, "
                "which the console API does not use (requests are signed with the keys): remove it"
            )
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            shown = f"{parts.scheme}://{parts.netloc}{parts.path}"  # not a query's token
            raise ValueError(f"base URL must be http(s)://host[:port], got {shown!r}")
        first = parts.path.strip("/").split("/")[0]
        if first in _ROUTES:
            raise ValueError(
                f"base URL {base_url!r} holds the route /{first}, which each call adds: "
                f"give {parts.scheme}://{parts.netloc} (a gateway's own path prefix may stay)"
            )
        self.base_url = base_url.rstrip("/")
        self.access_key = access_key
        # An answer that quotes either key (an error echoing the request) is masked wherever
        # its words go; a database password is registered by the CLI.
        redact.add(access_key, secret_key)
        #: Only scheme and host appear in messages: enough to say what could not be reached.
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.timeout = timeout
        self.retry = retry if retry is not None else RetryPolicy()
        self.limiter = limiter
        self.on_event = on_event
        self.recorder = recorder
        # One connection more than the callers: a listing's early request holds one while
        # its answer waits (the run's first listing's, while the other threads start calling).
        self._session = build_session(
            access_key, secret_key, pool_size=pool_size + 1, verify=verify, base_url=self.base_url
        )
        self._adapter: BaseAdapter = self._session.get_adapter(self.base_url)
        auth = self._session.auth
        assert isinstance(auth, BceAuth)  # build_session's: the one signer
        self._auth = auth
        self._headers = {
            name: value if isinstance(value, str) else value.decode("latin-1")
            for name, value in self._session.headers.items()
        }
        self._verify: bool | str = True if self._session.verify is None else self._session.verify
        #: Requests written before their answer is wanted (``call_early``) go on requests' own
        #: pooled connections, straight to the host: not through a proxy or another adapter,
        #: and only with an urllib3 that writes and reads in two steps (``early.SUPPORTED``).
        self._early = (
            early.SUPPORTED
            and isinstance(self._adapter, HTTPAdapter)
            and not self._session.proxies
        )
        self._lock = threading.Lock()
        self._calls_made = 0
        self._retries = 0
        #: When the API last answered (``time.monotonic()``): a success, or an error of its own;
        #: None before the first call (a wait for the lock or a migration is no silence). And
        #: how many calls failed since without an answer.
        self._heard: float | None = None
        self._unanswered_calls = 0

    def __repr__(self) -> str:
        return f"ConsoleClient(base_url={self.base_url!r})"

    def __enter__(self) -> ConsoleClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def calls_made(self) -> int:
        with self._lock:
            return self._calls_made

    @property
    def retries(self) -> int:
        with self._lock:
            return self._retries

    def call(self, action: str, body: dict[str, Any], route: str = "/v2/model") -> dict[str, Any]:
        """POST ``{route}?Action={action}`` and return the answer's ``result`` object."""
        result: dict[str, Any] = self._post(action, route, {"Action": action}, body)
        return result

    def call_list(
        self, action: str, body: dict[str, Any], route: str = "/v2/model"
    ) -> list[Any]:
        """Like :meth:`call`, for the calls whose ``result`` is documented as an array
        (DescribeEvalTaskReport)."""
        result: list[Any] = self._post(action, route, {"Action": action}, body, listed=True)
        return result

    def call_v1(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``{path}`` (the /wenxinworkshop shape) and return the answer's ``result`` object."""
        result: dict[str, Any] = self._post(path, path, None, body)
        return result

    def call_early(self, action: str, body: dict[str, Any], route: str = "/v2/model") -> Early:
        """:meth:`call` in two steps (``early``): the request is written now, and the returned
        ``Early`` reads its answer when called, with ``call``'s retries, pacing and errors.
        Through a proxy, or an adapter that is not requests' own, nothing is written before
        the ``Early`` is called, which then makes the call as ``call`` does."""
        first: tuple[float, early.Written | None] | None = None
        if self._early:
            url, data = self._request(route, {"Action": action}, body)
            sent_at = self._admit(retry=False)
            written = early.write(
                self._adapter,  # type: ignore[arg-type]  # an HTTPAdapter: see _early
                self._signed(url, data),
                self.timeout,
                self._verify,
                self._session.cert,
            )
            first = (sent_at, written)
        return Early(self, action, route, body, first)

    def close(self) -> None:
        self._session.close()

    def _request(
        self, route: str, params: dict[str, str] | None, body: dict[str, Any]
    ) -> tuple[str, bytes]:
        """The URL and body of one call."""
        route = route if route.startswith("/") else "/" + route
        url = self.base_url + route + (f"?{urlencode(params)}" if params else "")
        return url, json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()

    def _admit(self, retry: bool) -> float:
        """Wait for the pace to allow one more request and count it; when it was sent (the
        limiter's clock), for the feedback on its answer."""
        sent_at = 0.0
        if self.limiter is not None:
            self.limiter.acquire()
            sent_at = self.limiter.now()
        with self._lock:
            self._calls_made += 1
            if retry:
                self._retries += 1
        return sent_at

    def _post(
        self,
        name: str,
        path: str,
        params: dict[str, str] | None,
        body: dict[str, Any],
        listed: bool = False,
        first: tuple[float, early.Written | None] | None = None,
    ) -> Any:
        """One call with its retries; ``first``: its first attempt, already written by
        ``call_early`` (when it was sent, and the request on the wire if writing it worked)."""
        route = path if path.startswith("/") else "/" + path
        url, data = self._request(route, params, body)
        limiter = self.limiter

        def exchange() -> early.Answer:
            try:
                response = self._send(url, data)
                # The adapter returns once the headers are in; the body is read here, so a
                # connection lost halfway through it (ChunkedEncodingError, a read timeout)
                # is a transport failure too, retried, not an exception that escapes.
                content = response.content
            except requests.RequestException as exc:
                raise self._transport_error(name, exc) from exc  # no answer: nothing to learn
            return response.status_code, response.headers, content

        def attempt(number: int) -> Any:
            answer: early.Answer | None = None
            if number == 1 and first is not None:
                sent_at, written = first
                try:
                    answer = written.receive() if written is not None else None
                except early.ReadTimedOut:  # the server has it: retried after the delay
                    raise self._transport_error(name, requests.ReadTimeout()) from None
                if answer is None:  # the early exchange broke: made again the ordinary way
                    sent_at = self._admit(retry=False)
            else:
                sent_at = self._admit(retry=number > 1)
            status, headers, content = answer if answer is not None else exchange()
            if self.recorder is not None:
                self.recorder.record(route, name, body, status, content)
            try:
                result = parse_answer(name, status, headers, content, listed=listed)
            except ApiError as err:
                if _answered(err):
                    self._answer_heard()
                if limiter is not None:
                    limiter.feedback(sent_at, is_throttling(status=err.status, code=err.code))
                    if err.retry_after is not None:
                        # The server asked us, not just this call, to wait; as long as this
                        # call's own retry would (the policy's floor and cap), never longer.
                        limiter.hold(self.retry.delay(number, err.retry_after))
                raise
            self._answer_heard()
            if limiter is not None:
                limiter.feedback(sent_at, throttled=False)
            return redact.unsigned(result) if redact.content_looks_signed(content) else result

        def announce(number: int, delay: float, error: ApiError) -> None:
            if self.on_event is not None:
                self.on_event(
                    "retry", {"call": name, "attempt": number, "delay": delay, "error": str(error)}
                )

        if self._heard is None:
            self._heard = time.monotonic()  # silence counts from the first call
        try:
            return self.retry.run(attempt, announce)
        except ApiError as err:
            if not err.retryable or _answered(err):
                raise
            with self._lock:
                self._unanswered_calls += 1
                failed = self._unanswered_calls
            silent = time.monotonic() - (self._heard or 0.0)
            if failed >= OUTAGE_CALLS and silent >= OUTAGE:
                raise ApiDown(
                    f"the API has answered no call for {silent:.0f} s (the last: {err.message}); "
                    "the run stops, deleting nothing",
                    call=name, code=err.code, status=err.status, request_id=err.request_id,
                    retryable=True,  # the API's state, not the entity's: never "no such id"
                ) from err
            raise

    def _answer_heard(self) -> None:
        """The API answered (a success, or an error of its own): no outage (``ApiDown``)."""
        self._heard, self._unanswered_calls = time.monotonic(), 0

    def _signed(self, url: str, data: bytes) -> requests.PreparedRequest:
        """A POST of ``data`` to ``url`` with the session's headers, signed by its auth."""
        request = requests.PreparedRequest()
        request.method = "POST"
        request.url = url
        request.headers = CaseInsensitiveDict(self._headers)
        request.headers["Content-Length"] = str(len(data))
        request.body = data
        return self._auth(request)

    def _send(self, url: str, data: bytes) -> requests.Response:
        """POST ``data`` through the session's adapter, signed by the session's auth.

        ``Session.post`` would merge cookies, hooks, environment and per-request settings into a
        fresh request on every call, none of which the console API uses; that merging is a
        large part of a call's CPU (the accounts benchmark). The session still owns the
        configuration (``build_session``); this only skips re-deriving it. A redirect is not
        followed: the console API does not redirect, and following one would re-send a signed
        request to wherever it points (``parse_answer`` reports it instead).
        """
        return self._adapter.send(
            self._signed(url, data),
            timeout=self.timeout,
            verify=self._verify,
            cert=self._session.cert,
            proxies=self._session.proxies,
        )

    def _transport_error(self, call: str, exc: requests.RequestException) -> ApiError:
        """No answer at all; the message names the host, never the URL's query or any header."""
        connect, read = self.timeout
        if isinstance(exc, requests.exceptions.SSLError):
            why = f"TLS failure: {_transport_reason(exc)}"
        elif isinstance(exc, requests.exceptions.ConnectTimeout):
            why = f"no connection within {connect:g}s"
        elif isinstance(exc, requests.exceptions.ReadTimeout):
            why = f"no answer within {read:g}s (read timeout)"
        else:
            why = _transport_reason(exc)
        return ApiError(
            f"cannot reach {self.origin}: {why}", call=call, retryable=classify(exc=exc)
        )


class Early:
    """A call whose request ``ConsoleClient.call_early`` wrote; calling it gives the answer's
    ``result`` (once), ``cancel`` leaves the answer unread."""

    def __init__(
        self,
        client: ConsoleClient,
        action: str,
        route: str,
        body: dict[str, Any],
        first: tuple[float, early.Written | None] | None,
    ) -> None:
        self._client = client
        self._action = action
        self._route = route
        self._body = body
        self._first = first

    def __call__(self) -> dict[str, Any]:
        first, self._first = self._first, None
        result: dict[str, Any] = self._client._post(
            self._action, self._route, {"Action": self._action}, self._body, first=first
        )
        return result

    def cancel(self) -> None:
        first, self._first = self._first, None
        if first is not None and first[1] is not None:
            first[1].cancel()
