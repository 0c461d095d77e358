"""src/score.py under Azure's own inference server (azmlinfsrv), as a managed endpoint runs it."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.integration.endpoint.conftest import RECORD
from tests.net import free_port
from tests.servers import answers_http, running_server

SCORE_PY = Path(__file__).resolve().parents[3] / "src" / "score.py"


@pytest.fixture(scope="module")
def azmlinfsrv(trained_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """azmlinfsrv (it binds 0.0.0.0; called here on 127.0.0.1 only) with the model one folder below
    AZUREML_MODEL_DIR, as Azure lays out a registered model."""
    port = free_port()
    log = tmp_path_factory.mktemp("azmlinfsrv") / "server.log"
    env = dict(os.environ, AZUREML_MODEL_DIR=str(trained_model_dir.parent), HEARTFLOW_MAX_ROWS="20")
    executable = Path(sys.executable).with_name("azmlinfsrv")
    base = f"http://127.0.0.1:{port}"
    with running_server([str(executable), "--entry_script", str(SCORE_PY), "--port", str(port)],
                        ready=answers_http(f"{base}/"), what="azmlinfsrv", log=log, timeout_s=60, env=env):
        yield base


def test_tutorial_body_is_scored(azmlinfsrv: str) -> None:
    response = requests.post(f"{azmlinfsrv}/score", json={"data": [RECORD, RECORD]}, timeout=10)
    assert response.status_code == 200
    assert response.json() in ([0, 0], [1, 1])


def test_probabilities(azmlinfsrv: str) -> None:
    response = requests.post(f"{azmlinfsrv}/score", json={"data": [RECORD], "return_probabilities": True}, timeout=10)
    assert response.status_code == 200 and response.json()["classes"] == [0, 1]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ('{"data": [', 400, "not valid JSON"),
        ("[]", 400, "must be a JSON object"),
        ('{"data": []}', 400, '"data" is empty'),
        ('{"data": [{"age": 63}]}', 400, "missing 12 column(s)"),
        ('{"data": [{"age": "x"}]}', 400, "missing"),
        ('{"data": [' + ", ".join(['{"a": 1}'] * 21) + "]}", 413, "more than this endpoint accepts (20)"),
    ],
)
def test_bad_requests_get_4xx_with_reason(azmlinfsrv: str, body: str, status: int, message: str) -> None:
    response = requests.post(f"{azmlinfsrv}/score", data=body, headers={"Content-Type": "application/json"}, timeout=10)
    assert response.status_code == status
    assert message in response.json()["error"]


def test_wrong_value_type_named(azmlinfsrv: str) -> None:
    response = requests.post(f"{azmlinfsrv}/score", json={"data": [dict(RECORD, chol=None)]}, timeout=10)
    assert response.status_code == 400
    assert response.json()["error"] == "data[0].chol must be a number, got null"
