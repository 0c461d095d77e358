"""The pure parts of reading Azure's data collector: which time folders a window reads, the column kinds
read from a training split, what score.py puts in a record (a refusal's reason never holds a value sent; the
request id azmlinfsrv answers with; the model version from where Azure mounts the model), the live sessions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from backends.azure.collected import _in_window
from backends.azure.live_traffic import _parse_session, _session
from backends.azure.monitoring import column_kinds
from src import score

PREFIX = "modelDataCollector/ep/blue/model_outputs/"
START = datetime(2026, 12, 3, 10, 30, tzinfo=UTC)


@pytest.mark.parametrize(("folder", "inside"), [
    ("2026/12/03/10/", True), ("2026/12/03/11/", True),  # the hours the window overlaps (the reader widens it by an hour)
    ("2026/12/03/09/", False), ("2026/12/03/12/", False), ("2026/12/02/23/", False),
    ("2026/12/03/", True), ("2026/12/02/", False),  # a daily rolling rate
    ("2026/12/03/10/29/", True), ("2026/12/03/10/05/", False),  # by the minute
])
def test_a_window_reads_the_time_folders_that_can_hold_its_records(folder: str, inside: bool) -> None:
    assert _in_window(f"{PREFIX}{folder}instance-1.jsonl", PREFIX, START - timedelta(minutes=1), START + timedelta(hours=1)) is inside


def test_column_kinds_follow_the_training_split() -> None:
    reference = pd.DataFrame({"chol": [str(200 + i) for i in range(30)], "cp": ["0", "1", "2"] * 10,
                              "smoker": ["yes", "no", None] * 10, "oldpeak": [f"{i / 10:.1f}" for i in range(30)],
                              "output": ["0", "1"] * 15})
    records = [{"rows": [{"chol": 240, "cp": 1, "smoker": "yes", "oldpeak": 1.2}]}]
    assert column_kinds(reference, records) == (["chol", "oldpeak"], ["cp", "smoker"])  # the target is no feature
    assert column_kinds(None, records) == (["chol", "cp", "smoker", "oldpeak"], [])


@pytest.mark.parametrize(("status", "message", "reason"), [
    (400, "data[0].chol must be an integer, got 340.5", "bad value in chol"),
    (400, "missing 12 column(s): age, sex, ...", "missing column(s)"),
    (400, "the body is not valid JSON: Expecting value", "invalid JSON"),
    (413, "2000 records: more than this endpoint accepts (1000)", "too many records"),
    (400, "something else about 'secret-value'", "status 400"),
])
def test_a_refusal_is_collected_with_a_reason_that_holds_no_value_sent(status: int, message: str, reason: str) -> None:
    assert score._reason(status, message) == reason


def test_the_request_id_is_the_one_azmlinfsrv_answers_with(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from flask import Flask, g

    app = Flask("t")
    with app.test_request_context("/score", headers={"x-request-id": "client-7"}):
        assert score.request_id() == "client-7"
        g.request_id = "server-8"  # azmlinfsrv's own (the header it answers with) wins
        assert score.request_id() == "server-8"
    assert len(score.request_id()) == 32  # outside a request: a new id
    monkeypatch.setenv("AZUREML_MODEL_DIR", "/var/azureml-app/azureml-models/heart-classifier/7")
    assert score.model_version() == "7"
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(tmp_path))
    assert score.model_version() is None


def test_a_live_session_says_what_it_watches_and_since_when() -> None:
    started = datetime(2026, 12, 3, 10, 30, 5, tzinfo=UTC)
    since, deployment = _parse_session(_session("green-2", started.timestamp()))
    assert deployment == "green-2" and since == started - timedelta(seconds=1)
