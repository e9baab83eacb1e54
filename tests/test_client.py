"""ConsoleClient against scripted local HTTP stubs: every error shape, malformed answers,
transport failures, counters, and that the secret key never leaks into anything printable."""

from __future__ import annotations

import contextlib
import json
import random
import threading
import traceback
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from catalog.api import auth
from catalog.api.client import ConsoleClient, build_session, parse_answer
from catalog.api.pacing import RateLimiter
from catalog.api.paging import iter_pages
from catalog.api.retry import MIN_RETRY_AFTER, RetryPolicy
from catalog.errors import ApiDown, ApiError, MalformedResponse, NotTheApi
from tests._stub_http import Reply, Seen, StubServer, ok, refused_url

AK = "AK-test-0001"
SK = "SK-do-not-leak-7f3a9c2e51b84d06"
EVAL = "/wenxinworkshop/modelrepo/eval/result/export/info"


class Recorder:
    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.events: list[tuple[str, dict[str, Any]]] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def event(self, name: str, data: dict[str, Any]) -> None:
        self.events.append((name, data))


def make_client(
    url: str, rec: Recorder | None = None, *, attempts: int = 4,
    timeout: tuple[float, float] = (2.0, 5.0), limiter: RateLimiter | None = None,
) -> ConsoleClient:
    rec = rec or Recorder()
    policy = RetryPolicy(max_attempts=attempts, sleep=rec.sleep, rng=random.Random(0))
    return ConsoleClient(url, AK, SK, timeout=timeout, retry=policy, limiter=limiter,
                         on_event=rec.event)


def assert_no_secret(*things: object) -> None:
    for thing in things:
        if isinstance(thing, BaseException):
            texts = [str(thing), repr(thing), *map(str, thing.args),
                     "".join(traceback.format_exception(thing))]
        else:
            texts = [str(thing), repr(thing)]
        for text in texts:
            assert SK not in text


# --- success and what goes on the wire -------------------------------------------------------


def test_call_posts_signed_json_and_returns_result() -> None:
    stub = StubServer([ok({"modelId": "amv-1", "name": "m"})])
    with stub, make_client(stub.url) as client:
        result = client.call("DescribeModel", {"modelId": "amv-1"})
    assert result == {"modelId": "amv-1", "name": "m"}
    (seen,) = stub.seen
    assert seen.method == "POST"
    assert seen.path == "/v2/model"
    assert seen.query == {"Action": "DescribeModel"}
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.json() == {"modelId": "amv-1"}
    # verify the signature the way the server would, from what it received
    parsed = auth.parse_authorization(seen.headers["Authorization"])
    assert parsed is not None and parsed.access_key == AK
    assert seen.headers["Host"] == stub.url.removeprefix("http://")
    expected = auth.signature(SK, parsed.prefix, "POST", seen.path, list(seen.query.items()),
                              seen.headers, parsed.signed_headers)
    assert parsed.signature == expected


def test_a_redirect_is_reported_not_followed() -> None:
    """Following it would re-send a signed request wherever the answer points."""
    moved = Reply(302, None, {"Location": "https://elsewhere.example/v2/model?Action=X"})
    with (
        StubServer([moved]) as stub,
        make_client(stub.url) as client,
        pytest.raises(ApiError) as caught,
    ):
        client.call("DescribeModel", {"modelId": "amv-1"})
    assert len(stub.seen) == 1  # not retried: it will answer the same
    assert not caught.value.retryable
    assert "redirect to elsewhere.example" in str(caught.value)
    assert "--base-url" in str(caught.value)


@pytest.mark.parametrize("status", [300, 301, 307, 308, 399])
def test_every_3xx_is_a_redirect_not_an_answer(status: int) -> None:
    """Whatever the 3xx, with or without a body, it is not the API's answer and is not tried
    again (it would answer the same)."""
    for content in (b"", b'{"requestId": "r", "result": {}}'):
        with pytest.raises(ApiError) as info:
            parse_answer("DescribeModel", status, {"Location": "https://other.example/"}, content)
        assert not info.value.retryable and info.value.status == status
        assert "redirect to other.example" in str(info.value)


def test_the_proxy_from_the_environment_carries_every_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The session's proxies reach the wire: the proxy gets the absolute URL, signed for the
    real host."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy",
                 "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    with StubServer([ok({"modelId": "amv-1"})]) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        with make_client("http://console.example") as client:
            assert client.call("DescribeModel", {"modelId": "amv-1"}) == {"modelId": "amv-1"}
    (seen,) = proxy.seen
    assert seen.path == "/v2/model" and seen.query == {"Action": "DescribeModel"}
    assert seen.headers["Host"] == "console.example"


def test_the_adapter_looks_up_a_pool_once_per_origin(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every call used to look its connection pool up again (URL parsing, proxy selection, a
    pool key); calls to one origin now share one lookup, and another origin gets its own pool."""
    looked_up: list[str] = []
    real = HTTPAdapter.get_connection_with_tls_context

    def counted(self: HTTPAdapter, request: Any, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(request.url.split("?")[0])
        return real(self, request, *args, **kwargs)

    monkeypatch.setattr(HTTPAdapter, "get_connection_with_tls_context", counted)
    with StubServer([ok({})]) as one, StubServer([ok({})]) as two:
        with make_client(one.url) as client:
            for _ in range(5):
                client.call("DescribeModel", {"modelId": "amv-1"})
                client.call_v1(EVAL, {"exportID": 1})
        session = build_session(AK, SK)
        for url in (one.url, two.url, one.url, two.url):
            assert session.post(url + "/v2/model?Action=X", json={}).status_code == 200
        session.close()
    assert len(one.seen) == 12 and len(two.seen) == 2
    assert looked_up == [one.url + "/v2/model", one.url + "/v2/model", two.url + "/v2/model"]


def test_answers_keep_no_cookie_and_calls_send_none() -> None:
    """The console API signs each request; a cookie it set would be neither kept nor sent."""
    cookie = Reply(200, {"requestId": "r", "result": {}}, {"Set-Cookie": "session=abc; Path=/"})
    with StubServer([cookie]) as stub, make_client(stub.url) as client:
        response = client._send(stub.url + "/v2/model?Action=DescribeModel", b"{}")
        assert response.status_code == 200 and response.content
        assert len(response.cookies) == 0
        client.call("DescribeModel", {})
    assert all("Cookie" not in seen.headers for seen in stub.seen)


def test_call_with_another_route() -> None:
    with StubServer([ok({})]) as stub, make_client(stub.url) as client:
        client.call("DescribeFineTuningTasks", {}, route="/v2/finetuning")
    assert stub.seen[0].path == "/v2/finetuning"
    assert stub.seen[0].query == {"Action": "DescribeFineTuningTasks"}


def test_call_v1_posts_to_the_path_without_action() -> None:
    answer = Reply(200, {"log_id": "2340692759", "result": {"exportID": 96, "state": "Done"}})
    with StubServer([answer]) as stub, make_client(stub.url + "/") as client:
        result = client.call_v1(EVAL, {"exportID": 96})
    assert result == {"exportID": 96, "state": "Done"}
    assert stub.seen[0].path == EVAL
    assert stub.seen[0].query == {}
    assert stub.seen[0].json() == {"exportID": 96}


def test_error_code_zero_is_success() -> None:
    answer = Reply(200, {"log_id": 1, "error_code": 0, "result": {"a": 1}})
    with StubServer([answer]) as stub, make_client(stub.url) as client:
        assert client.call_v1(EVAL, {}) == {"a": 1}


@pytest.mark.parametrize("no_error", [0, "0", "", None])
def test_error_code_zero_in_any_spelling_is_success(no_error: object) -> None:
    """``error_code`` 0 as a number, as text or left empty says "no error": the result is
    the answer (read as an error, every export's status would fail)."""
    body = {"log_id": 1, "error_code": no_error, "result": {"a": 1}}
    content = json.dumps(body).encode()
    assert parse_answer(EVAL, 200, {}, content) == {"a": 1}


# --- the three error shapes --------------------------------------------------------------------


def test_v2_error_body() -> None:
    body = {"requestId": "rid-404", "code": "ResourceNotFound", "message": "model not found"}
    with StubServer([Reply(404, body)]) as stub, make_client(stub.url) as client:
        with pytest.raises(ApiError) as info:
            client.call("DescribeModel", {"modelId": "amv-x"})
        assert client.calls_made == 1 and client.retries == 0
    err = info.value
    assert type(err) is ApiError
    assert (err.call, err.code, err.status, err.request_id) == (
        "DescribeModel", "ResourceNotFound", 404, "rid-404")
    assert err.message == "model not found"
    assert not err.retryable
    assert "DescribeModel" in str(err) and "rid-404" in str(err)


def test_v1_error_inside_http_200() -> None:
    body = {"log_id": 987654, "error_code": 500002, "error_msg": "export task not exist"}
    stub = StubServer([Reply(200, body)])
    with stub, make_client(stub.url) as client, pytest.raises(ApiError) as info:
        client.call_v1(EVAL, {"exportID": 1})
    err = info.value
    assert (err.call, err.code, err.status, err.request_id) == (EVAL, "500002", 200, "987654")
    assert err.message == "export task not exist"
    assert not err.retryable


def test_v2_error_body_with_http_400() -> None:
    """400 is an error like any other 4xx: the SDK's own example of a console error is a 400
    ``InappropriateJSON``. Its code and message are the error, not "no 'result'"."""
    body = {"requestId": "rid-400", "code": "InappropriateJSON",
            "message": "The json is inappropriate: param[splitRatio] invalid."}
    with pytest.raises(ApiError) as info:
        parse_answer("DescribeModel", 400, {}, json.dumps(body).encode())
    err = info.value
    assert type(err) is ApiError and not err.retryable
    assert (err.code, err.status, err.request_id) == ("InappropriateJSON", 400, "rid-400")
    assert err.message == "The json is inappropriate: param[splitRatio] invalid."


@pytest.mark.parametrize("body", [None, {"requestId": "rid-body", "code": "AccessDenied",
                                         "message": "body message"}])
def test_iam_header_error(body: dict[str, str] | None) -> None:
    headers = {"X-Bce-Error-Code": "SignatureDoesNotMatch",
               "X-Bce-Error-Message": "The request signature we calculated does not match",
               "x-bce-request-id": "rid-header"}
    with StubServer([Reply(403, body, headers)]) as stub, make_client(stub.url) as client:
        with pytest.raises(ApiError) as info:
            client.call("DescribeModel", {})
        assert client.calls_made == 1  # auth failures are not retried
    err = info.value
    assert err.code == "SignatureDoesNotMatch"
    assert err.message == "The request signature we calculated does not match"
    assert err.status == 403
    assert err.request_id == ("rid-body" if body else "rid-header")
    assert err.is_auth and not err.retryable


def test_iam_header_without_message_falls_back() -> None:
    headers = {"X-Bce-Error-Code": "InvalidAccessKeyId"}
    with pytest.raises(ApiError) as info:
        parse_answer("DescribeModel", 403, headers, b"")
    assert info.value.code == "InvalidAccessKeyId"
    assert "403" in info.value.message


def test_v2_error_without_json_body_is_still_an_api_error() -> None:
    with pytest.raises(ApiError) as info:
        parse_answer("DescribeModel", 502, {}, b"<html>Bad Gateway</html>")
    err = info.value
    assert type(err) is ApiError  # an error answer, not a malformed success
    assert err.status == 502 and err.retryable
    assert "Bad Gateway" in err.message


_PAGE = (b"<!DOCTYPE HTML>\n<html lang=\"en\">\n<head>\n<title>Error response</title>\n</head>\n"
         b"<body>\n<h1>Error response</h1>\n<p>Error code: 404</p>\n" + b"<p>x</p>\n" * 200)


@pytest.mark.parametrize("status", [404, 405, 501])
def test_an_html_error_page_is_another_server_named_in_one_line(status: int) -> None:
    """A web server at the base URL answered: one line naming the page and the setting to fix,
    not the page itself, and not tried again (it would answer the same)."""
    with pytest.raises(NotTheApi) as info:
        parse_answer("DescribeCustomModelSets", status, {}, _PAGE)
    err = info.value
    assert not err.retryable and err.status == status
    text = str(err)
    assert "\n" not in text and "<" not in text and len(text) < 250
    assert "'Error response'" in text and "--base-url" in text


@pytest.mark.parametrize(("status", "retryable"), [(429, True), (408, True), (503, True),
                                                  (403, False), (401, False)])
def test_a_gateways_page_for_throttling_or_credentials_is_no_base_url_problem(
    status: int, retryable: bool
) -> None:
    """A 429 page (or an empty 429) is throttling, retried after its Retry-After; a 401/403
    page is about the credentials. Neither is another server at the base URL."""
    for body in (b"", _PAGE):
        with pytest.raises(ApiError) as info:
            parse_answer("DescribeModel", status, {"Retry-After": "2"}, body)
        err = info.value
        assert type(err) is ApiError and err.retryable is retryable
        assert err.retry_after == 2.0 and "--base-url" not in str(err)


def test_base_url_with_a_route_in_it_is_refused_with_the_origin_to_give() -> None:
    for url in ("http://127.0.0.1:8765/v2", "https://qianfan.baidubce.com/v2/model/",
                "https://h/wenxinworkshop"):
        with pytest.raises(ValueError) as info:
            ConsoleClient(url, "ak", "sk")
        assert "which each call adds" in str(info.value)
    for prefix in ("/qianfan", "/api/v2"):  # a gateway's own prefix is kept
        assert ConsoleClient(f"https://gateway.example{prefix}", "ak", "sk").base_url.endswith(
            prefix)


# --- malformed answers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("null", "JSON null, not an object"),
        ({"requestId": "r"}, "no 'result'"),
        ({"requestId": "r", "result": ["a"]}, "'result' is a JSON array"),
        ({"requestId": "r", "result": "text"}, "'result' is a JSON string"),
        ({"requestId": "r", "result": None}, "'result' is a JSON null"),
        ([1, 2], "JSON array, not an object"),
    ],
)
def test_json_of_the_wrong_shape_is_not_retried(body: Any, words: str) -> None:
    """Well-formed JSON is the server's considered answer: asking again gets the same."""
    with StubServer([Reply(200, body)]) as stub, make_client(stub.url) as client:
        with pytest.raises(MalformedResponse) as info:
            client.call("DescribeModelSet", {})
        assert client.calls_made == 1
    assert info.value.call == "DescribeModelSet"
    assert "DescribeModelSet" in str(info.value)
    assert words in str(info.value)
    assert not info.value.retryable


GATEWAY_PAGE = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (GATEWAY_PAGE, "not JSON"),
        ("", "answer is empty"),
        ('{"requestId": "r", "result": {"modelCompTaskList": [{"id": "cmp-1", "na', "not JSON"),
    ],
)
def test_unreadable_answer_is_retried_then_fails_as_malformed(body: str, words: str) -> None:
    rec = Recorder()
    with StubServer([Reply(200, body)]) as stub, make_client(stub.url, rec, attempts=3) as client:
        with pytest.raises(MalformedResponse) as info:
            client.call("DescribeModelCompTasks", {})
        assert (client.calls_made, client.retries) == (3, 2)
    assert len(rec.sleeps) == 2  # retried like a 5xx: backoff between attempts
    assert words in str(info.value)
    assert "gave up after 3 attempts" in str(info.value)


def test_one_gateway_page_costs_a_retry_not_the_listing() -> None:
    """Issue 12: one HTML page on the first compression-task page failed the whole listing."""
    page = ok({"modelCompTaskList": [{"id": "cmp-1"}], "pageInfo": {"isTruncated": False}})
    with StubServer([Reply(200, GATEWAY_PAGE), page]) as stub, make_client(stub.url) as client:
        pages = list(iter_pages(client, "DescribeModelCompTasks", {}))
        assert (client.calls_made, client.retries) == (2, 1)
    assert pages == [[{"id": "cmp-1"}]]


# --- retries -----------------------------------------------------------------------------------


def test_rate_limited_v1_code_is_retried_then_succeeds() -> None:
    busy = Reply(200, {"log_id": 5, "error_code": 18, "error_msg": "qps limit reached"})
    rec = Recorder()
    script = [busy, busy, Reply(200, {"log_id": 6, "result": {"ok": True}})]
    with StubServer(script) as stub, make_client(stub.url, rec) as client:
        assert client.call_v1(EVAL, {"exportID": 3}) == {"ok": True}
        assert (client.calls_made, client.retries) == (3, 2)
    assert len(stub.seen) == 3
    assert [e[0] for e in rec.events] == ["retry", "retry"]
    first = rec.events[0][1]
    assert set(first) == {"call", "attempt", "delay", "error"}
    assert first["call"] == EVAL and first["attempt"] == 1
    assert first["delay"] == rec.sleeps[0]
    assert "qps limit reached" in first["error"]
    assert rec.events[1][1]["attempt"] == 2


def test_5xx_retried_until_attempts_run_out() -> None:
    failing = Reply(503, {"requestId": "r5", "code": "ServiceUnavailable", "message": "busy"})
    rec = Recorder()
    with StubServer([failing]) as stub, make_client(stub.url, rec, attempts=3) as client:
        with pytest.raises(ApiError) as info:
            client.call("DescribeModel", {})
        assert (client.calls_made, client.retries) == (3, 2)
    assert len(stub.seen) == 3 and len(rec.sleeps) == 2
    assert info.value.retryable and info.value.status == 503
    assert "gave up after 3 attempts" in str(info.value)


@pytest.mark.parametrize(("header", "expected"), [("0", MIN_RETRY_AFTER), ("2", 2.0)])
def test_429_honours_retry_after(header: str, expected: float) -> None:
    throttled = Reply(429, {"requestId": "r", "code": "TooManyRequests", "message": "slow down"},
                      {"Retry-After": header})
    rec = Recorder()
    with StubServer([throttled, ok({"x": 1})]) as stub, make_client(stub.url, rec) as client:
        assert client.call("DescribeModel", {}) == {"x": 1}
    assert rec.sleeps == [expected]


def test_limiter_is_asked_before_every_attempt() -> None:
    class CountingLimiter(RateLimiter):
        count = 0

        def acquire(self) -> float:
            self.count += 1
            return 0.0

    limiter = CountingLimiter(qps=0)
    busy = Reply(500, {"requestId": "r", "code": "InternalError", "message": "oops"})
    with StubServer([busy, busy, ok({})]) as stub, make_client(stub.url, limiter=limiter) as c:
        c.call("DescribeModel", {})
    assert limiter.count == 3 == len(stub.seen)


def test_read_timeout_is_retried_then_fails() -> None:
    rec = Recorder()
    stub = StubServer([Reply(hang=True)])
    with stub, make_client(stub.url, rec, attempts=2, timeout=(2.0, 0.2)) as client:
        with pytest.raises(ApiError) as info:
            client.call("DescribeModel", {"modelId": "amv-1"})
        assert (client.calls_made, client.retries) == (2, 1)
    err = info.value
    assert err.retryable and err.status is None
    assert err.call == "DescribeModel"
    assert f"cannot reach {stub.url}: no answer within 0.2s" in str(err)
    assert len(stub.seen) == 2
    assert len(rec.events) == 1
    assert_no_secret(err, *[e[1] for e in rec.events])


#: An answer whose connection closes halfway through its body (a gateway reset, an idle cut):
#: the headers came, the body did not.
CUT_SHORT = Reply(200, '5\r\n{"req\r\n', {"Transfer-Encoding": "chunked", "Connection": "close"})


def test_a_body_cut_short_by_the_connection_is_retried() -> None:
    """The body is read after the headers: a connection lost between the two is a transport
    failure like any other (``ChunkedEncodingError``), retried, not an exception from
    ``requests`` that escapes the client and ends the run as an internal error."""
    rec = Recorder()
    with StubServer([CUT_SHORT, ok({"x": 1})]) as stub, make_client(stub.url, rec) as client:
        assert client.call("DescribeModel", {}) == {"x": 1}
        assert (client.calls_made, client.retries) == (2, 1)
    assert len(rec.sleeps) == 1
    with StubServer([CUT_SHORT]) as stub, make_client(stub.url, attempts=2) as client:
        with pytest.raises(ApiError) as info:
            client.call("DescribeModel", {})
        assert (client.calls_made, client.retries) == (2, 1)
    err = info.value
    assert err.retryable and err.status is None
    assert f"cannot reach {stub.url}" in str(err) and "gave up after 2 attempts" in str(err)


def test_a_listing_page_cut_short_is_retried() -> None:
    """The same through ``iter_pages``, whose next page is asked early: the broken early
    exchange is made again the ordinary way, and that attempt's failure is retried too."""
    page = ok({"modelCompTaskList": [{"id": "cmp-1"}], "pageInfo": {"isTruncated": False}})
    with StubServer([CUT_SHORT, CUT_SHORT, page]) as stub, make_client(stub.url) as client:
        pages = list(iter_pages(client, "DescribeModelCompTasks", {}))
        assert client.retries == 1
    assert pages == [[{"id": "cmp-1"}]]


def test_connection_refused_is_retried_then_fails() -> None:
    url = refused_url()
    rec = Recorder()
    with make_client(url, rec, attempts=3) as client:
        with pytest.raises(ApiError) as info:
            client.call("DescribeModelSet", {})
        assert (client.calls_made, client.retries) == (3, 2)
    err = info.value
    assert str(err).startswith(f"DescribeModelSet: cannot reach {url}: ")
    assert "refused" in str(err).lower()
    assert err.retryable
    assert len(rec.sleeps) == 2
    assert_no_secret(err, client, *[e[1] for e in rec.events])


# --- secrets, counters, session ----------------------------------------------------------------


def test_secret_never_appears_in_errors_repr_or_events() -> None:
    errors: list[BaseException] = []
    script = [
        Reply(403, None, {"X-Bce-Error-Code": "AccessDenied", "X-Bce-Error-Message": "denied"}),
        Reply(404, {"requestId": "r", "code": "ResourceNotFound", "message": "gone"}),
        Reply(200, {"log_id": 1, "error_code": 500001, "error_msg": "param invalid"}),
        Reply(200, "not json"),
        Reply(500, "<html>oops</html>"),
    ]
    rec = Recorder()
    with StubServer(script) as stub, make_client(stub.url, rec, attempts=1) as client:
        for _ in script:
            with pytest.raises(ApiError) as info:
                client.call("DescribeModel", {"modelId": "amv-1"})
            errors.append(info.value)
        assert_no_secret(*errors, client, client.retry, vars(client), rec.events)
    assert [type(e) for e in errors].count(MalformedResponse) == 1


def test_an_answer_that_quotes_the_secret_key_is_masked() -> None:
    """The client registers its own keys for masking: an error that echoes the request (a
    gateway quoting the credentials it rejected) reaches no message with the secret in it,
    whoever made the client (not only the CLI, which registers them too)."""
    secret = f"SK-echoed-{random.Random().getrandbits(64):016x}"
    echo = Reply(400, {"requestId": "r", "code": "InvalidHTTPAuthHeader",
                       "message": f"bad credentials AK-echo-1/{secret}"})
    with StubServer([echo]) as stub:
        policy = RetryPolicy(max_attempts=1, sleep=lambda _s: None)
        with (
            ConsoleClient(stub.url, "AK-echo-1", secret, retry=policy) as client,
            pytest.raises(ApiError) as info,
        ):
            client.call("DescribeModel", {})
    assert "bad credentials" in info.value.message
    assert secret not in str(info.value) and secret not in info.value.message


def test_counters_are_thread_safe() -> None:
    with StubServer(lambda seen: ok({"n": 1})) as stub:
        client = ConsoleClient(stub.url, AK, SK, pool_size=8)
        try:
            def worker() -> None:
                for _ in range(20):
                    client.call("DescribeModel", {})

            threads = [threading.Thread(target=worker) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert client.calls_made == 160
            assert client.retries == 0
        finally:
            client.close()
    assert len(stub.seen) == 160


def test_session_is_built_as_promised() -> None:
    session = build_session(AK, SK, pool_size=7)
    adapter = session.get_adapter("https://qianfan.baidubce.com")
    assert isinstance(adapter, requests.adapters.HTTPAdapter)
    assert adapter.max_retries.total == 0
    assert adapter._pool_connections == 7 and adapter._pool_maxsize == 7  # type: ignore[attr-defined]
    assert session.verify is True
    assert session.headers["Content-Type"] == "application/json"
    assert isinstance(session.auth, auth.BceAuth)
    assert build_session(AK, SK, verify=False).verify is False


def test_the_environment_is_read_once_with_requests_rules(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Proxies and the CA bundle come from the environment as requests would take them, once:
    the session then ignores the environment (it no longer looks on every request)."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy",
                 "https_proxy", "all_proxy", "no_proxy", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/corp/ca.pem")
    session = build_session(AK, SK, base_url="https://qianfan.baidubce.com")
    assert session.proxies.get("https") == "http://proxy.internal:3128"
    assert session.verify == "/etc/corp/ca.pem" and session.trust_env is False
    monkeypatch.setenv("HTTPS_PROXY", "http://elsewhere:1")  # read once: later changes do not count
    assert session.proxies.get("https") == "http://proxy.internal:3128"
    # NO_PROXY naming the host: no proxy, as requests decides it.
    monkeypatch.setenv("NO_PROXY", "qianfan.baidubce.com")
    bypass = build_session(AK, SK, base_url="https://qianfan.baidubce.com")
    assert "https" not in bypass.proxies
    # Plain HTTP (the fake): no bundle; verify=False stays False whatever the environment says.
    assert build_session(AK, SK, base_url="http://127.0.0.1:8765").verify is True
    assert build_session(AK, SK, verify=False, base_url="https://x.example").verify is False


def test_client_defaults() -> None:
    client = ConsoleClient("https://qianfan.baidubce.com", AK, SK)
    try:
        assert client.timeout == (5.0, 30.0)
        assert client.retry.max_attempts == 6
        assert client.limiter is None
        assert (client.calls_made, client.retries) == (0, 0)
        assert SK not in repr(client) and AK not in repr(client)
    finally:
        client.close()


@pytest.mark.parametrize("url", ["qianfan.baidubce.com", "ftp://x", "https://"])
def test_bad_base_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError):
        ConsoleClient(url, AK, SK)


def test_paging_over_http() -> None:
    def pages(seen: Seen) -> Reply:
        marker = seen.json().get("marker", "")
        start = int(marker or 0)
        items = [{"id": f"t{i}"} for i in range(start, min(start + 2, 5))]
        more = start + 2 < 5
        info = {"marker": marker, "maxKeys": 2, "isTruncated": more}
        if more:
            info["nextMarker"] = str(start + 2)
        return ok({"modelCompTaskList": items, "pageInfo": info})

    with StubServer(pages) as stub, make_client(stub.url) as client:
        got = [item["id"] for page in iter_pages(client, "DescribeModelCompTasks", {},
                                                  max_keys=2) for item in page]
        assert client.calls_made == 3
    assert got == ["t0", "t1", "t2", "t3", "t4"]
    assert [s.json().get("marker") for s in stub.seen] == [None, "2", "4"]


class HoldingLimiter(RateLimiter):
    """Records the holds asked for, and paces nothing."""

    def __init__(self) -> None:
        super().__init__(qps=0)
        self.holds: list[float] = []

    def hold(self, seconds: float) -> None:
        self.holds.append(seconds)


def test_retry_after_holds_the_shared_limiter_even_on_the_last_attempt() -> None:
    limiter = HoldingLimiter()
    throttled = Reply(429, {"requestId": "r", "code": "TooManyRequests", "message": "slow"},
                      {"Retry-After": "2"})
    stub = StubServer([throttled])
    with stub, make_client(stub.url, attempts=1, limiter=limiter) as client, pytest.raises(
        ApiError
    ):
        client.call("DescribeModel", {})
    assert limiter.holds == [2.0]  # the others must wait although this call gives up


class FeedbackLimiter(RateLimiter):
    """Records what the client reports, and paces nothing."""

    def __init__(self) -> None:
        super().__init__(qps=0)
        self.reports: list[bool] = []

    def feedback(self, sent_at: float, throttled: bool) -> None:
        self.reports.append(throttled)
        super().feedback(sent_at, throttled)


@pytest.mark.parametrize(
    ("reply", "throttled"),
    [
        (Reply(429, {"requestId": "r", "code": "RequestLimitExceeded", "message": "slow"}), True),
        (Reply(200, {"log_id": 1, "error_code": 18, "error_msg": "qps limit reached"}), True),
        (Reply(200, {"log_id": 1, "error_code": 336100, "error_msg": "high load"}), True),
        (Reply(503, {"requestId": "r", "code": "ServiceUnavailable", "message": "busy"}), False),
        (Reply(404, {"requestId": "r", "code": "ResourceNotFound", "message": "gone"}), False),
        (Reply(200, "<html>gateway</html>"), False),
    ],
)
def test_every_answer_is_reported_to_the_limiter(reply: Reply, throttled: bool) -> None:
    limiter = FeedbackLimiter()
    stub = StubServer([reply, ok({})])
    with stub, make_client(stub.url, limiter=limiter) as client, contextlib.suppress(ApiError):
        client.call("DescribeModel", {})
    assert limiter.reports[0] is throttled
    assert limiter.throttles == (1 if throttled else 0)
    if len(limiter.reports) > 1:  # retried: the second answer was a success
        assert limiter.reports[1:] == [False]


def test_no_answer_is_not_reported_to_the_limiter() -> None:
    limiter = FeedbackLimiter()
    client = make_client(refused_url(), attempts=2, limiter=limiter)
    with client, pytest.raises(ApiError):
        client.call("DescribeModel", {})
    assert limiter.reports == []


def test_throttling_slows_the_real_limiter_down() -> None:
    limiter = RateLimiter(qps=100.0, margin=0.0)
    busy = Reply(429, {"requestId": "r", "code": "TooManyRequests", "message": "slow"})
    with StubServer([busy, ok({})]) as stub, make_client(stub.url, limiter=limiter) as client:
        client.call("DescribeModel", {})
    assert limiter.cuts == 1
    assert limiter.rate < 100.0


@pytest.mark.parametrize(("header", "held"), [("3600", 30.0), ("0", MIN_RETRY_AFTER)])
def test_the_shared_hold_is_floored_and_capped_as_the_retry_is(header: str, held: float) -> None:
    """A Retry-After holds every worker only as long as this call's own retry would wait: an
    hour asked for holds them ``max_delay`` (30 s), not an hour, and 0 holds them the floor."""
    limiter = HoldingLimiter()
    throttled = Reply(429, {"requestId": "r", "code": "TooManyRequests", "message": "slow"},
                      {"Retry-After": header})
    stub = StubServer([throttled])
    with stub, make_client(stub.url, attempts=1, limiter=limiter) as client, pytest.raises(
        ApiError
    ):
        client.call("DescribeModel", {})
    assert client.retry.max_delay == 30.0
    assert limiter.holds == [held]


def test_retry_after_holds_the_shared_limiter() -> None:
    limiter = HoldingLimiter()
    throttled = Reply(429, {"requestId": "r", "code": "TooManyRequests", "message": "slow"},
                      {"Retry-After": "3"})
    busy = Reply(500, {"requestId": "r", "code": "InternalError", "message": "oops"})
    rec = Recorder()
    with StubServer([throttled, busy, ok({})]) as stub, make_client(
        stub.url, rec, limiter=limiter
    ) as client:
        client.call("DescribeModel", {})
    assert limiter.holds == [3.0]  # only the answer that said Retry-After holds everyone


def test_api_down_needs_silence_since_the_first_call_and_several_failed_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``ApiDown`` (the run's failure): ``OUTAGE`` seconds without an answer, counted from the
    first call (a wait for the lock before it is no silence), and ``OUTAGE_CALLS`` calls in a
    row failed without one (one call failing long is its entity's failure); an answer resets
    both. A gateway's 503 is no answer from the API."""
    import time

    monkeypatch.setattr("catalog.api.client.OUTAGE", 0.2)
    monkeypatch.setattr("catalog.api.client.OUTAGE_CALLS", 3)
    answers = {"ok": False}

    def script(seen: Seen) -> Reply:
        return ok({"modelId": "amv-1"}) if answers["ok"] else Reply(503, "<html>down</html>")

    def fails() -> type[ApiError]:
        with pytest.raises(ApiError) as info:
            client.call("DescribeModel", {"modelId": "amv-1"})
        return type(info.value)

    with StubServer(script) as server, make_client(server.url, attempts=1) as client:
        time.sleep(0.3)  # as a wait for the account's lock, before any call
        assert fails() is ApiError
        time.sleep(0.25)
        assert fails() is ApiError  # silent long enough, but only two calls
        assert fails() is ApiDown
        answers["ok"] = True
        client.call("DescribeModel", {"modelId": "amv-1"})
        answers["ok"] = False
        assert [fails() for _ in range(3)] == [ApiError] * 3  # no silence since the answer


def test_a_fatal_failure_without_an_answer_is_no_outage(monkeypatch: pytest.MonkeyPatch) -> None:
    """A TLS failure (a certificate the client will never trust) is not retried, and is no
    sign the API went away: it stays the fatal error it is, never the run's retryable
    ``ApiDown``, however long the silence."""
    monkeypatch.setattr("catalog.api.client.OUTAGE", 0.0)
    monkeypatch.setattr("catalog.api.client.OUTAGE_CALLS", 2)
    with make_client("https://console.example", attempts=3) as client:

        def untrusted(url: str, data: bytes) -> requests.Response:
            raise requests.exceptions.SSLError("certificate verify failed")

        monkeypatch.setattr(client, "_send", untrusted)
        for _ in range(3):
            with pytest.raises(ApiError) as info:
                client.call("DescribeModel", {"modelId": "amv-1"})
            assert type(info.value) is ApiError and not info.value.retryable
            assert "TLS failure: certificate verify failed" in str(info.value)
        assert client.calls_made == 3  # once each: not retried


def test_an_error_answer_from_the_api_ends_a_silence(monkeypatch: pytest.MonkeyPatch) -> None:
    """An error the API answered itself (a 404 with its JSON) is an answer: the calls that
    failed without one before it do not add up with those after it to an outage."""
    monkeypatch.setattr("catalog.api.client.OUTAGE", 0.0)
    monkeypatch.setattr("catalog.api.client.OUTAGE_CALLS", 2)
    gone = Reply(404, {"requestId": "r", "code": "ResourceNotFound", "message": "gone"})
    script = [Reply(drop=True), gone, Reply(drop=True), Reply(drop=True)]
    with StubServer(script) as stub, make_client(stub.url, attempts=1) as client:
        kinds = []
        for _ in script:
            with pytest.raises(ApiError) as info:
                client.call("DescribeModel", {"modelId": "amv-1"})
            kinds.append(type(info.value))
    assert kinds == [ApiError, ApiError, ApiError, ApiDown]


class FakeClock:
    """Stands in for the client module's ``time``: its ``monotonic`` moves only when told."""

    def __init__(self, now: float) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


def test_silence_counts_from_the_first_call_not_from_the_clocks_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before its first call a client has heard nothing, and that is no silence: the first
    failed call of a run (which started long after the clock did) is no outage."""
    clock = FakeClock(now=10_000.0)
    monkeypatch.setattr("catalog.api.client.time", clock)
    monkeypatch.setattr("catalog.api.client.OUTAGE_CALLS", 1)
    with make_client(refused_url(), attempts=1) as client:
        with pytest.raises(ApiError) as info:
            client.call("DescribeModel", {"modelId": "amv-1"})
        assert type(info.value) is ApiError  # silent 0 s of the 120 s
        clock.now += 120.0
        with pytest.raises(ApiDown):
            client.call("DescribeModel", {"modelId": "amv-1"})
