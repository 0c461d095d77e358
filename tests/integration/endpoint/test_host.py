"""The local host on 127.0.0.1: auth, limits, probes, OpenAPI, deployment routing and traffic."""

from __future__ import annotations

import json
import shutil
import socket
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from backends.errors import DeploymentError
from tests.integration.endpoint.conftest import RECORD, RunningEndpoint


def test_scores_the_tutorial_body(endpoint: RunningEndpoint) -> None:
    response = endpoint.post({"data": [RECORD, RECORD]})
    assert response.status_code == 200
    assert response.json() in ([0, 0], [1, 1])
    assert response.headers["azureml-model-deployment"] == "blue"


def test_refused_request_passes_the_reason_through(endpoint: RunningEndpoint) -> None:
    response = endpoint.post({"data": [{"age": 63}]})
    assert response.status_code == 400
    assert "missing 12 column(s)" in response.json()["error"]
    response = endpoint.post({"data": [RECORD] * 51})
    assert response.status_code == 413 and "(50)" in response.json()["error"]


@pytest.mark.parametrize("key", ["", "wrong-key"])
def test_wrong_or_missing_key_is_401(endpoint: RunningEndpoint, key: str) -> None:
    response = endpoint.post({"data": [RECORD]}, key=key)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    bare = requests.post(endpoint.status.scoring_uri, json={"data": [RECORD]}, timeout=5)
    assert bare.status_code == 401


def test_key_never_logged_nor_on_the_command_line(endpoint: RunningEndpoint) -> None:
    endpoint.post({"data": [RECORD]}, key="wrong-key")
    assert endpoint.key not in endpoint.manager.paths.log.read_text()
    cmdline = Path(f"/proc/{endpoint.status.pid}/cmdline").read_bytes()
    assert endpoint.key.encode() not in cmdline


def test_body_over_the_limit_is_413(endpoint: RunningEndpoint) -> None:
    limit = endpoint.manager.paths.state.read_text()
    max_body = json.loads(limit)["max_body_bytes"]
    response = endpoint.post(data=b"x" * (max_body + 1))
    assert response.status_code == 413

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(max_body // 65536 + 2):
            yield b" " * 65536

    response = endpoint.post(data=chunks())
    assert response.status_code == 413


def test_probes_and_openapi(endpoint: RunningEndpoint) -> None:
    assert requests.get(f"{endpoint.base}/health", timeout=5).json() == {"status": "alive"}
    ready = requests.get(f"{endpoint.base}/ready", timeout=5)
    assert ready.status_code == 200
    assert ready.json()["deployments"] == {"blue": "loaded", "green": "loaded"}
    document = requests.get(f"{endpoint.base}/openapi.json", timeout=5).json()
    request_schema = document["paths"]["/score"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert request_schema["properties"]["data"]["items"]["required"] == list(endpoint_names(endpoint))
    assert request_schema["properties"]["data"]["maxItems"] == 50
    assert "401" in document["paths"]["/score"]["post"]["responses"]


def endpoint_names(endpoint: RunningEndpoint) -> list[str]:
    from src.scoring import read_features

    return [f.name for f in read_features(endpoint.model_dir)]


def test_wrong_method_and_path(endpoint: RunningEndpoint) -> None:
    assert requests.get(endpoint.status.scoring_uri, timeout=5).status_code == 405
    assert requests.get(f"{endpoint.base}/nope", timeout=5).status_code == 404


def test_header_routes_to_a_deployment_without_traffic(endpoint: RunningEndpoint) -> None:
    response = endpoint.post({"data": [RECORD]}, deployment="green")
    assert response.status_code == 200
    assert response.headers["azureml-model-deployment"] == "green"
    missing = endpoint.post({"data": [RECORD]}, deployment="purple")
    assert missing.status_code == 404 and "blue, green" in missing.json()["error"]


def test_traffic_split(endpoint: RunningEndpoint) -> None:
    manager = endpoint.manager
    try:
        status = manager.set_traffic({"blue": 50, "green": 50})
        assert dict(status.traffic) == {"blue": 50, "green": 50}
        with requests.Session() as session:
            seen = Counter(endpoint.post({"data": [RECORD]}, session=session).headers["azureml-model-deployment"]
                           for _ in range(120))
        assert seen["blue"] > 25 and seen["green"] > 25
        manager.set_traffic({"green": 100})
        with requests.Session() as session:
            assert {endpoint.post({"data": [RECORD]}, session=session).headers["azureml-model-deployment"]
                    for _ in range(10)} == {"green"}
        with pytest.raises(DeploymentError, match="sum to 100"):
            manager.set_traffic({"blue": 70, "green": 70})
        with pytest.raises(DeploymentError, match="only deployment taking traffic"):
            manager.delete_deployment("green")
    finally:
        manager.set_traffic({"blue": 100})


def test_access_log_is_json_with_latency(endpoint: RunningEndpoint) -> None:
    endpoint.post({"data": [RECORD]})
    time.sleep(0.2)
    lines = []
    for line in endpoint.manager.paths.log.read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:  # a line still being written, or a third-party warning printed as text
            continue
    access = [line for line in lines if line.get("path") == "/score" and line.get("status") == 200]
    assert access and access[-1]["latency_ms"] > 0 and access[-1]["deployment"] in ("blue", "green")


def test_slow_body_times_out_with_408(endpoint: RunningEndpoint) -> None:
    endpoint.manager.deploy("quick", endpoint.model_dir, "heart-classifier", "1", port=None, workers=1,
                            max_rows=50, request_timeout_ms=300)
    try:
        with socket.create_connection(("127.0.0.1", endpoint.status.port), timeout=5) as sock:
            sock.sendall(
                b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n"
                b"azureml-model-deployment: quick\r\nAuthorization: Bearer " + endpoint.key.encode() + b"\r\n\r\n{\"da"
            )
            started = time.monotonic()
            answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408")
        assert time.monotonic() - started < 3
    finally:
        endpoint.manager.delete_deployment("quick")


def test_failed_deploy_keeps_the_endpoint_as_it_was(endpoint: RunningEndpoint, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(endpoint.model_dir, broken)
    (broken / "model.skops").write_bytes(b"not a model")
    before = endpoint.manager.status()
    with pytest.raises(DeploymentError, match="did not pass its smoke request") as info:
        endpoint.manager.deploy("broken", broken, "heart-classifier", "9", port=None, workers=1, max_rows=50,
                                request_timeout_ms=5000, ready_timeout_s=30)
    assert str(endpoint.manager.paths.log) in str(info.value)
    after = endpoint.manager.status()
    assert after is not None and before is not None
    assert after.deployments == before.deployments and dict(after.traffic) == dict(before.traffic)
    assert endpoint.post({"data": [RECORD]}).status_code == 200
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DeploymentError, match="no MLflow model"):
        endpoint.manager.deploy("empty", empty, "heart-classifier", "9", port=None, workers=1, max_rows=50,
                                request_timeout_ms=5000)


def test_ready_shows_the_categories_a_worker_was_sent_that_the_model_never_saw(endpoint: RunningEndpoint) -> None:
    before = requests.get(f"{endpoint.base}/ready", timeout=5).json().get("unseen_categories", {}).get("blue", {}).get("cp", 0)
    answer = endpoint.post({"data": [{**RECORD, "cp": 9}, {**RECORD, "cp": 7}, RECORD]}, deployment="blue")
    assert answer.status_code == 200 and len(answer.json()) == 3  # answered: an unseen category is no category
    ready = requests.get(f"{endpoint.base}/ready", timeout=5).json()
    assert ready["unseen_categories"]["blue"]["cp"] == before + 2
    assert "thall" not in ready["unseen_categories"]["blue"]  # known values are not counted
