"""Replaying recorded answers of the real console through the fake server.

The recording format is the one the client-side recorder writes (``DIR/calls.jsonl``); these tests
write such files by hand, then talk to the server over HTTP with the real signer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from catalog.api.auth import BceAuth
from catalog.fake import EVAL_ROUTE, FakeCatalog, FakeServer, Recording, load_recording, serve
from tests.test_fake_server import AK, SK, Api

MODEL = {"modelId": "amv-aaaaaaaaaaaa", "modelName": "V1", "status": "Creating"}
MODEL_LATER = {**MODEL, "status": "Ready"}


def _answer(result: dict[str, Any], request_id: str) -> dict[str, Any]:
    return {"requestId": request_id, "result": result}


CALLS: list[dict[str, Any]] = [
    {
        "route": "/v2/model",
        "action": "DescribeModel",
        "body": {"modelId": "amv-aaaaaaaaaaaa"},
        "status": 200,
        "answer": _answer(MODEL, "rid-1"),
    },
    {
        "route": "/v2/model",
        "action": "DescribeModelCompTasks",
        "body": {"maxKeys": 100, "marker": ""},
        "status": 200,
        "answer": _answer({"modelCompTaskList": [], "pageInfo": {"isTruncated": False}}, "r"),
    },
    {
        "route": "/v2/model",
        "action": "DescribeModel",
        "body": {"modelId": "amv-aaaaaaaaaaaa"},
        "status": 200,
        "answer": _answer(MODEL_LATER, "rid-2"),
    },
    {
        "route": "/v2/model",
        "action": "DescribeModel",
        "body": {"modelId": "amv-gone00000000"},
        "status": 400,
        "answer": {"requestId": "rid-3", "code": "SomeRealCode", "message": "真实的错误"},
    },
    {
        "route": EVAL_ROUTE,
        "action": EVAL_ROUTE,
        "body": {"exportID": 96},
        "status": 200,
        "answer": {"log_id": 12, "result": {"exportID": 96, "state": "Done"}},
    },
    {
        "route": "/v2/model",
        "action": "DescribeSystemModelSets",
        "body": {},
        "status": 502,
        "answer": None,
        "text": "<html>bad gateway</html>",
    },
]


def _write(directory: Path, calls: list[dict[str, Any]]) -> Path:
    lines = [json.dumps(call, ensure_ascii=False) for call in calls]
    (directory / "calls.jsonl").write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    return directory


@pytest.fixture
def recording(tmp_path: Path) -> Recording:
    return load_recording(_write(tmp_path, CALLS))


@pytest.fixture
def server(recording: Recording) -> Iterator[FakeServer]:
    with FakeServer(FakeCatalog(), AK, SK, replay=recording) as running:
        yield running


def test_answers_are_served_verbatim_in_order_then_the_last_repeats(server: FakeServer) -> None:
    api = Api(server)
    answers = [api.v2("DescribeModel", {"modelId": "amv-aaaaaaaaaaaa"}) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.json() for a in answers] == [
        _answer(MODEL, "rid-1"),
        _answer(MODEL_LATER, "rid-2"),
        _answer(MODEL_LATER, "rid-2"),
    ]
    refused = api.v2("DescribeModel", {"modelId": "amv-gone00000000"})
    assert refused.status_code == 400 and refused.json()["message"] == "真实的错误"


def test_bodies_match_whatever_their_key_order(server: FakeServer) -> None:
    api = Api(server)
    response = api.session.post(
        f"{server.url}/v2/model?Action=DescribeModelCompTasks",
        data=b'{ "marker" : "",\n "maxKeys": 100 }',
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 200 and response.json()["result"]["modelCompTaskList"] == []


def test_eval_route_and_non_json_answers(server: FakeServer) -> None:
    api = Api(server)
    assert api.eval({"exportID": 96}).json() == CALLS[4]["answer"]
    raw = api.v2("DescribeSystemModelSets", {})
    assert raw.status_code == 502 and raw.text == "<html>bad gateway</html>"


def test_a_request_without_recording_is_counted_and_answered_404(
    server: FakeServer, recording: Recording
) -> None:
    api = Api(server)
    missing = api.v2("DescribeModel", {"modelId": "amv-notrecorded0"})
    assert missing.status_code == 404 and missing.json()["code"] == "NoRecording"
    # Same action, a body that differs in one value: not the recorded request either.
    assert api.eval({"exportID": 97}).status_code == 404
    assert recording.missed == [
        {"route": "/v2/model", "action": "DescribeModel", "body": {"modelId": "amv-notrecorded0"}},
        {"route": EVAL_ROUTE, "action": EVAL_ROUTE, "body": {"exportID": 97}},
    ]


def test_signatures_are_checked_before_a_recorded_answer_is_used(server: FakeServer) -> None:
    wrong = Api(server, AK, "wrong-sk").v2("DescribeModel", {"modelId": "amv-aaaaaaaaaaaa"})
    assert wrong.status_code == 403 and wrong.json()["code"] == "SignatureDoesNotMatch"
    # The refused request did not use up the first recorded answer.
    first = Api(server).v2("DescribeModel", {"modelId": "amv-aaaaaaaaaaaa"})
    assert first.json()["requestId"] == "rid-1"


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ("{not json", "not JSON"),
        ('["a"]', "JSON object"),
        ('{"route": "v2", "action": "A", "body": {}, "status": 200}', "route"),
        ('{"route": "/v2/model", "action": "", "body": {}, "status": 200}', "action"),
        ('{"route": "/v2/model", "action": "A", "body": {}, "status": "200"}', "status"),
        ('{"route": "/v2/model", "action": "A", "status": 200}', "body"),
        ('{"route": "/v2/model", "action": "A", "body": {}, "status": 502, "text": 5}', "text"),
    ],
)
def test_a_malformed_line_names_its_line_number(tmp_path: Path, line: str, complaint: str) -> None:
    good = json.dumps(CALLS[0])
    (tmp_path / "calls.jsonl").write_text(f"{good}\n{line}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"calls\.jsonl:2: .*{complaint}"):
        load_recording(tmp_path)


def test_a_missing_recording_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_recording(tmp_path)


def test_serve_replays_a_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, CALLS)
    lines: list[str] = []
    seen: list[dict[str, Any]] = []

    def call_then_interrupt() -> None:
        url = lines[0].split(" on ")[1].split(" ")[0]
        with requests.Session() as session:
            session.auth = BceAuth("fake-ak", "fake-sk")
            for model_id in ("amv-aaaaaaaaaaaa", "amv-other0000000"):
                seen.append(
                    session.post(
                        f"{url}/v2/model",
                        params={"Action": "DescribeModel"},
                        json={"modelId": model_id},
                        timeout=10,
                    ).json()
                )
        raise KeyboardInterrupt

    monkeypatch.setattr("catalog.fake.server._until_interrupted", call_then_interrupt)
    serve(port=0, echo=lines.append, replay_dir=str(tmp_path))
    assert seen[0] == _answer(MODEL, "rid-1") and seen[1]["code"] == "NoRecording"
    assert lines[1] == f"replaying 6 recorded answers from {tmp_path}"
    assert lines[-1] == "1 calls had no recorded answer (HTTP 404 NoRecording)"
    with pytest.raises(requests.ConnectionError):  # the server stopped with serve()
        requests.post(lines[0].split(" on ")[1].split(" ")[0], timeout=2)
