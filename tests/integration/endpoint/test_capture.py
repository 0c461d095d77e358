"""Capture on the real host: request ids in and out, records written off the request path with rows,
predictions and probabilities, refusals counted by reason without bodies, no key anywhere; POST /feedback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from backends.local.endpoint import LocalEndpointManager
from backends.local.endpoint.capture import CaptureSettings, read_records, write_capture_settings
from tests.integration.endpoint.conftest import RECORD


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, trained_model_dir: Path) -> Iterator[tuple[LocalEndpointManager, str]]:
    home = tmp_path_factory.mktemp("capture-home")
    manager = LocalEndpointManager(home, "capture-test")
    status = manager.deploy("blue", trained_model_dir, "heart-classifier", "3", port=None, workers=1, max_rows=50,
                            request_timeout_ms=5000)
    try:
        yield manager, status.scoring_uri
    finally:
        manager.stop()


def _records(manager: LocalEndpointManager, wanted: int, folder: str = "capture") -> list[dict]:
    deadline = time.monotonic() + 20
    while True:
        found = list(read_records(manager.paths.root, folder=folder))
        if len(found) >= wanted or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_capture_records_what_was_asked_and_answered(host: tuple[LocalEndpointManager, str]) -> None:
    manager, uri = host
    key = manager.key()
    auth = {"Authorization": f"Bearer {key}"}
    given = requests.post(uri, json={"data": [RECORD, dict(RECORD, chol=300, extra="x")]},
                          headers={**auth, "x-request-id": "client-id-1"}, timeout=10)
    minted = requests.post(uri, json={"data": [RECORD]}, headers={**auth, "x-request-id": "bad id with spaces"}, timeout=10)
    refused = requests.post(uri, json={"data": [dict(RECORD, chol="secret-looking-value")]}, headers=auth, timeout=10)
    unauthorized = requests.post(uri, json={"data": [RECORD]}, headers={"Authorization": "Bearer wrong"}, timeout=10)
    assert given.status_code == 200 and given.headers["x-request-id"] == "client-id-1"
    assert minted.status_code == 200 and len(minted.headers["x-request-id"]) == 32  # a new id, not the bad one
    assert refused.status_code == 400 and unauthorized.status_code == 401

    records = _records(manager, 4)
    by_kind: dict[str, list[dict]] = {}
    for record in records:
        by_kind.setdefault(record["kind"], []).append(record)
    scored = {r["request_id"]: r for r in by_kind["scored"]}
    first = scored["client-id-1"]
    assert first["deployment"] == "blue" and first["model_version"] == "3" and first["status"] == 200
    assert [row["chol"] for row in first["rows"]] == [233, 300]
    assert "extra" not in first["rows"][1]  # the signature's columns only
    assert first["predictions"] == given.json()
    assert len(first["probabilities"]) == 2 and all(0.0 <= p <= 1.0 for p in first["probabilities"])
    assert first["latency_ms"] > 0
    assert minted.headers["x-request-id"] in scored
    reasons = sorted((r["status"], r["reason"]) for r in by_kind["rejected"])
    assert reasons == [(400, "bad value in chol"), (401, "missing or wrong key")]
    raw = b"".join(p.read_bytes() for p in (manager.paths.root / "capture").glob("*.jsonl"))
    assert key.encode() not in raw and b"secret-looking-value" not in raw and b"Bearer" not in raw


def test_feedback_route_stores_labels_and_reports_unknown_ids(host: tuple[LocalEndpointManager, str]) -> None:
    manager, uri = host
    auth = {"Authorization": f"Bearer {manager.key()}"}
    scored = requests.post(uri, json={"data": [RECORD]}, headers={**auth, "x-request-id": "fb-1"}, timeout=10)
    assert scored.status_code == 200
    _records(manager, 1)
    time.sleep(0.6)  # the capture writer's flush interval
    feedback = uri.replace("/score", "/feedback")
    answer = requests.post(feedback, json={"data": [{"request_id": "fb-1", "label": 1},
                                                    {"request_id": "never-seen", "label": "0"}]}, headers=auth, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"stored": 2, "matched": 1, "unknown": 1, "unknown_ids": ["never-seen"]}
    stored = _records(manager, 2, folder="feedback")
    assert sorted((r["request_id"], r["label"]) for r in stored) == [("fb-1", 1), ("never-seen", 0)]

    bad = requests.post(feedback, json={"data": [{"request_id": "fb-1", "label": "maybe"}]}, headers=auth, timeout=10)
    assert bad.status_code == 400 and "not one of the model's classes" in bad.json()["error"]
    assert requests.post(feedback, json={"data": []}, headers={"Authorization": "Bearer no"}, timeout=10).status_code == 401


def test_capture_rate_zero_records_counts_only(host: tuple[LocalEndpointManager, str]) -> None:
    manager, uri = host
    write_capture_settings(manager.paths.root, CaptureSettings(rate=0.0))
    try:
        time.sleep(0.5)  # the writer re-reads the settings on its next batch
        auth = {"Authorization": f"Bearer {manager.key()}"}
        requests.post(uri, json={"data": [RECORD]}, headers=auth, timeout=10)  # picked up by the writer
        time.sleep(0.6)
        for _ in range(5):
            assert requests.post(uri, json={"data": [RECORD]}, headers={**auth, "x-request-id": "unsampled"},
                                 timeout=10).status_code == 200
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            records = list(read_records(manager.paths.root))
            if sum(r.get("count", 0) for r in records if r["kind"] == "unsampled") >= 5:
                break
            time.sleep(0.2)
        assert sum(r.get("count", 0) for r in records if r["kind"] == "unsampled") >= 5
        assert not [r for r in records if r.get("request_id") == "unsampled"]
    finally:
        write_capture_settings(manager.paths.root, CaptureSettings())


def test_the_watch_rolls_back_on_labels_posted_to_the_real_host(host: tuple[LocalEndpointManager, str]) -> None:
    """Live requests through the host, their labels through POST /feedback, the watch's realized check reading
    the host's capture and feedback files (LocalBackend.labelled_answers): labels that contradict every answer
    roll back, naming realized accuracy; the evaluation's own requests are not counted."""
    from datetime import UTC, datetime

    from backends.domain.realized import LabelledAnswers, realized_check
    from backends.domain.shadow import run_watch
    from backends.local.backend import LocalBackend
    from backends.results import Endpoint

    manager, uri = host
    backend = LocalBackend(manager.paths.home)
    assert isinstance(backend, LabelledAnswers)
    endpoint = Endpoint(manager.name, "blue", uri, "heart-classifier", "3", "")
    auth = {"Authorization": f"Bearer {manager.key()}"}
    requests.post(uri, json={"data": [RECORD]}, headers=auth, timeout=10)  # the writer follows capture.json
    time.sleep(0.6)
    since = datetime.now(UTC)
    session = backend.start_watch(endpoint, "blue", "blue")
    pairs = []
    for i in range(40):
        answer = requests.post(uri, json={"data": [RECORD]}, headers={**auth, "x-request-id": f"watch-{i}"}, timeout=10)
        assert answer.status_code == 200
        pairs.append({"request_id": f"watch-{i}", "label": 1 - answer.json()[0]})  # every answer turns out wrong
    evaluation = requests.post(uri, json={"data": [RECORD]}, timeout=10,
                               headers={**auth, "x-request-id": "heartflow-eval-1", "azureml-model-deployment": "blue"})
    assert evaluation.status_code == 200
    wanted = {p["request_id"] for p in pairs} | {"heartflow-eval-1"}
    deadline = time.monotonic() + 20
    while not wanted <= {r.get("request_id") for r in read_records(manager.paths.root)} and time.monotonic() < deadline:
        time.sleep(0.2)
    stored = requests.post(uri.replace("/score", "/feedback"), json={"data": [*pairs, {"request_id": "heartflow-eval-1",
                                                                                       "label": 0}]},
                           headers=auth, timeout=10)
    assert stored.status_code == 200 and stored.json()["matched"] == 41

    record = run_watch(backend, endpoint, session, 10, None, poll_s=0.2,
                       realized=lambda: realized_check(backend.labelled_answers(endpoint, "blue", since), "accuracy", 0.85))
    backend.stop_watch(endpoint)
    assert record.outcome == "rolled_back" and record.check == "realized", record.reason
    assert (record.realized_value, record.realized_labelled) == (0.0, 40) and record.realized_p_value < 1e-6
    assert record.requests == 40 and "realized accuracy 0.0000 on 40 labelled live row(s)" in record.reason
