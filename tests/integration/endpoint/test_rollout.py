"""Blue/green under load: deploying green, switching traffic and deleting blue fail no request; a stop
finishes the request in flight."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from backends.local.endpoint import LocalEndpointManager
from tests.integration.endpoint.conftest import RECORD

LOAD_THREADS = 4
MAX_REQUESTS_PER_THREAD = 4000
MAX_SECONDS = 90


@pytest.fixture(scope="module")
def rollout_endpoint(tmp_path_factory: pytest.TempPathFactory, trained_model_dir: Path):
    home = tmp_path_factory.mktemp("rollout-home")
    manager = LocalEndpointManager(home, "heart-rollout")
    manager.deploy("blue", trained_model_dir, "heart-classifier", "1", port=None, workers=2, max_rows=50,
                   request_timeout_ms=5000)
    try:
        yield manager
    finally:
        manager.stop()


def test_redeploy_under_load_fails_no_request(rollout_endpoint: LocalEndpointManager, trained_model_dir: Path,
                                              tmp_path: Path) -> None:
    manager = rollout_endpoint
    status = manager.status()
    assert status is not None
    green_model = tmp_path / "v2"
    shutil.copytree(trained_model_dir, green_model)
    key = manager.key()
    stop = threading.Event()
    outcomes: Counter[tuple[int, str]] = Counter()
    failures: list[str] = []
    lock = threading.Lock()

    def hammer() -> None:
        started = time.monotonic()
        with requests.Session() as session:
            for _ in range(MAX_REQUESTS_PER_THREAD):
                if stop.is_set() or time.monotonic() - started > MAX_SECONDS:
                    return
                try:
                    response = session.post(status.scoring_uri, json={"data": [RECORD]},
                                            headers={"Authorization": f"Bearer {key}"}, timeout=10)
                    with lock:
                        outcomes[(response.status_code, response.headers.get("azureml-model-deployment", ""))] += 1
                        if response.status_code != 200:
                            failures.append(f"{response.status_code} {response.text[:200]}")
                except requests.RequestException as exc:
                    with lock:
                        failures.append(repr(exc))

    threads = [threading.Thread(target=hammer) for _ in range(LOAD_THREADS)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        manager.deploy("green", green_model, "heart-classifier", "2", port=None, workers=2, max_rows=50,
                       request_timeout_ms=5000)
        time.sleep(0.3)
        manager.set_traffic({"blue": 50, "green": 50})
        time.sleep(0.3)
        manager.set_traffic({"green": 100})
        time.sleep(0.3)
        after = manager.delete_deployment("blue")
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=MAX_SECONDS + 10)
    assert not failures, failures[:5]
    assert outcomes[(200, "blue")] > 0 and outcomes[(200, "green")] > 0
    assert [d.name for d in after.deployments] == ["green"] and dict(after.traffic) == {"green": 100}


def test_stop_finishes_the_request_in_flight(rollout_endpoint: LocalEndpointManager) -> None:
    manager = rollout_endpoint
    status = manager.status()
    assert status is not None and status.running
    body = b'{"data": [{"age": 63, "sex": 1, "cp": 3, "trtbps": 145, "chol": 233, "fbs": 1, "restecg": 0, ' \
           b'"thalachh": 150, "exng": 0, "oldpeak": 2.3, "slp": 0, "caa": 0, "thall": 1}]}'
    with socket.create_connection(("127.0.0.1", status.port), timeout=10) as sock:
        sock.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + manager.key().encode() + b"\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:20])
        time.sleep(0.3)
        stopper = threading.Thread(target=manager.stop, kwargs={"timeout_s": 20})
        stopper.start()
        time.sleep(0.5)
        sock.sendall(body[20:])
        answer = sock.recv(4096)
        stopper.join(timeout=30)
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert not manager.is_running()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{status.port}/health", timeout=2)
    manager.stop()  # idempotent
