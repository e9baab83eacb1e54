"""The recorder: the exchanges of a sync in ``calls.jsonl``, fit to share and to replay."""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path
from typing import Any

import pytest

from catalog.api.client import ConsoleClient
from catalog.api.record import CALLS_FILE, Recorder, scrub
from catalog.api.retry import RetryPolicy
from catalog.errors import ApiError
from catalog.fake.catalog import FakeCatalog
from catalog.fake.faults import FaultPlan
from catalog.fake.replay import load_recording
from catalog.fake.server import FakeServer
from tests._stub_http import Reply, StubServer, ok, refused_url
from tests.helpers import AK, SK, expected_rows, fake_console, stored_rows, sync, tracked_only

EVAL = "/wenxinworkshop/modelrepo/eval/result/export/info"
SIGNED = (
    "https://qianfan-export.bj.bcebos.com/v1/export/amve-1/m.tar"
    "?authorization=bce-auth-v1%2Fak%2F2024-01-01T00%3A00%3A00Z%2F3600%2Fhost%2Fabc&expires=3600"
)


def lines(directory: Path) -> list[dict[str, Any]]:
    text = (directory / CALLS_FILE).read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def client_for(url: str, recorder: Recorder, attempts: int = 1) -> ConsoleClient:
    policy = RetryPolicy(max_attempts=attempts, base_delay=0.001, rng=random.Random(0))
    return ConsoleClient(url, AK, SK, retry=policy, recorder=recorder)


# --- the format --------------------------------------------------------------------------------


def test_each_exchange_is_one_line_in_the_replay_format(tmp_path: Path) -> None:
    script = [
        ok({"modelId": "amv-1", "downloadUrl": SIGNED}),
        Reply(200, {"log_id": 77, "result": {"exportID": 96, "state": "Done"}}),
        Reply(404, {"requestId": "r-404", "code": "ResourceNotFound", "message": "gone"},
              {"X-Bce-Request-Id": "r-404"}),
        Reply(200, "<html>502 Bad Gateway</html>"),
    ]
    with StubServer(script) as stub, Recorder(tmp_path) as recorder:
        with client_for(stub.url, recorder) as client:
            client.call("DescribeModelExportTask", {"modelId": "amv-1"})
            client.call_v1(EVAL, {"exportID": 96})
            for _ in range(2):
                with pytest.raises(ApiError):
                    client.call("DescribeModel", {"modelId": "amv-x"})
        assert recorder.count == 4
    assert lines(tmp_path) == [
        {
            "route": "/v2/model",
            "action": "DescribeModelExportTask",
            "body": {"modelId": "amv-1"},
            "status": 200,
            "answer": {"result": {
                "modelId": "amv-1",
                "downloadUrl": "https://qianfan-export.bj.bcebos.com/v1/export/amve-1/m.tar",
            }},
        },
        {"route": EVAL, "action": EVAL, "body": {"exportID": 96}, "status": 200,
         "answer": {"result": {"exportID": 96, "state": "Done"}}},
        {"route": "/v2/model", "action": "DescribeModel", "body": {"modelId": "amv-x"},
         "status": 404, "answer": {"code": "ResourceNotFound", "message": "gone"}},
        {"route": "/v2/model", "action": "DescribeModel", "body": {"modelId": "amv-x"},
         "status": 200, "answer": None, "text": "<html>502 Bad Gateway</html>"},
    ]


def test_retries_are_recorded_and_dropped_connections_are_not(tmp_path: Path) -> None:
    busy = Reply(503, {"requestId": "r", "code": "ServiceUnavailable", "message": "busy"})
    with StubServer([busy, ok({"n": 1})]) as stub, Recorder(tmp_path) as recorder:
        with client_for(stub.url, recorder, attempts=2) as client:
            client.call("DescribeModel", {"modelId": "amv-1"})
        with client_for(refused_url(), recorder, attempts=2) as client, pytest.raises(ApiError):
            client.call("DescribeModel", {"modelId": "amv-2"})
    assert [(e["status"], e["body"]["modelId"]) for e in lines(tmp_path)] == [
        (503, "amv-1"), (200, "amv-1")]


def test_a_recorded_line_is_on_disk_before_close(tmp_path: Path) -> None:
    """No buffer to lose: a sync killed mid-run leaves every exchange it had recorded."""
    recorder = Recorder(tmp_path)
    try:
        recorder.record("/v2/model", "DescribeModel", {"modelId": "a"}, 200, b'{"result": {}}')
        assert len(lines(tmp_path)) == 1
    finally:
        recorder.close()


def test_workers_never_interleave_lines(tmp_path: Path) -> None:
    big = {"result": {"items": [{"id": f"t-{i}", "text": "x" * 500} for i in range(40)]}}
    with Recorder(tmp_path) as recorder:
        def worker(n: int) -> None:
            for k in range(25):
                body = {"worker": n, "k": k}
                recorder.record("/v2/model", "DescribeModelCompTasks", body, 200,
                                json.dumps(big).encode())

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    found = lines(tmp_path)
    assert len(found) == 200
    assert sorted((e["body"]["worker"], e["body"]["k"]) for e in found) == [
        (n, k) for n in range(8) for k in range(25)]


def test_appends_to_an_existing_recording(tmp_path: Path) -> None:
    for n in range(2):
        with Recorder(tmp_path / "nested" / "dir") as recorder:
            recorder.record("/v2/model", "DescribeModel", {"n": n}, 200, b'{"result": {}}')
    assert [e["body"]["n"] for e in lines(tmp_path / "nested" / "dir")] == [0, 1]


# --- what is left out --------------------------------------------------------------------------


def test_scrub_drops_request_ids_and_signed_queries_only() -> None:
    answer = {
        "requestId": "r-1",
        "log_id": 5,
        "result": {
            "requestId": "kept: not the answer's own",
            "downloadUrl": "https://b.bcebos.com/x.tar?expires=3600&sig=abc#frag",
            "files": [{"downloadUrl": "https://b.bcebos.com/y.tar?token=1"}],
            "note": f"see {SIGNED} for the file",
            "plain": "https://example.com/page?x=1",  # not signed: kept as it is
            "count": 3,
        },
    }
    assert scrub(answer) == {
        "result": {
            "requestId": "kept: not the answer's own",
            "downloadUrl": "https://b.bcebos.com/x.tar",
            "files": [{"downloadUrl": "https://b.bcebos.com/y.tar"}],
            "note": "see https://qianfan-export.bj.bcebos.com/v1/export/amve-1/m.tar for the file",
            "plain": "https://example.com/page?x=1",
            "count": 3,
        }
    }


def test_scrub_text_cuts_a_signature_without_a_link() -> None:
    text = "denied: authorization=bce-auth-v1/ak/2024/3600/host/sig was refused"
    cleaned = scrub(text)
    assert "bce-auth-v1" not in cleaned and "sig was" not in cleaned
    assert cleaned.startswith("denied: authorization=****")


def test_recording_of_a_whole_sync_holds_no_credentials_and_replays(
    db_url: str, tmp_path: Path
) -> None:
    catalog = FakeCatalog.generate(seed=5, model_sets=4, versions_per_set=3, comp_tasks=12,
                                   eval_exports=3, system_sets=1, export_share=1.0)
    directory = tmp_path / "rec"
    plan = FaultPlan().once("DescribeModel", "429", retry_after=0).once("*", "drop")
    with fake_console(catalog, faults=plan) as server:
        evals = [str(k) for k in catalog.keys("eval_result_export")]
        summary = sync(db_url, server, eval_export_ids=evals, record_dir=str(directory))
        calls = server.call_count()
    assert summary.status == "success"
    text = (directory / CALLS_FILE).read_text(encoding="utf-8")
    for secret in (AK, SK, "bce-auth-v1", "authorization=", "requestId", "log_id"):
        assert secret.lower() not in text.lower(), secret
    found = lines(directory)
    assert len(found) == calls - 1  # every exchange but the dropped connection
    assert {e["status"] for e in found} == {200, 429}
    assert any(e["action"] == EVAL for e in found)
    exports = [e for e in found if e["action"] == "DescribeModelExportTask"]
    assert exports and all("?" not in e["answer"]["result"].get("downloadUrl", "")
                           for e in exports)

    # The recording serves a sync of its own: the same catalog, from the answers alone.
    replayed_db = f"sqlite:///{tmp_path}/replay.db"
    with FakeServer(FakeCatalog(), AK, SK, replay=load_recording(directory)) as replay:
        again = sync(replayed_db, replay, eval_export_ids=evals)
    assert again.status == "success"
    assert stored_rows(replayed_db) == tracked_only(expected_rows(catalog))
