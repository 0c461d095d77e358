"""A running local endpoint on 127.0.0.1 shared by the endpoint integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from backends.local.endpoint import EndpointStatus, LocalEndpointManager

RECORD = {"age": 63, "sex": 1, "cp": 3, "trtbps": 145, "chol": 233, "fbs": 1, "restecg": 0,
          "thalachh": 150, "exng": 0, "oldpeak": 2.3, "slp": 0, "caa": 0, "thall": 1}


@dataclass
class RunningEndpoint:
    manager: LocalEndpointManager
    status: EndpointStatus
    key: str
    model_dir: Path

    @property
    def base(self) -> str:
        return self.status.scoring_uri.rsplit("/", 1)[0]

    def post(self, body: object = None, *, deployment: str | None = None, key: str | None = None,
             session: requests.Session | None = None, **kwargs: object) -> requests.Response:
        headers = {"Authorization": f"Bearer {key if key is not None else self.key}"}
        if deployment:
            headers["azureml-model-deployment"] = deployment
        if body is not None and "data" not in kwargs:
            kwargs["json"] = body
        return (session or requests).post(self.status.scoring_uri, headers=headers, timeout=10, **kwargs)


@pytest.fixture(scope="session")
def endpoint(tmp_path_factory: pytest.TempPathFactory, trained_model_dir: Path) -> Iterator[RunningEndpoint]:
    """Endpoint 'heart-test' with deployments blue (100 %) and green (0 %), one worker."""
    home = tmp_path_factory.mktemp("endpoint-home")
    manager = LocalEndpointManager(home, "heart-test")
    common = dict(port=None, workers=1, max_rows=50, request_timeout_ms=5000)
    manager.deploy("blue", trained_model_dir, "heart-classifier", "1", **common)
    status = manager.deploy("green", trained_model_dir, "heart-classifier", "2", **common)
    try:
        yield RunningEndpoint(manager, status, manager.key(), trained_model_dir)
    finally:
        manager.stop()
