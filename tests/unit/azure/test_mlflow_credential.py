"""One credential for every Azure call, MLflow's included: reading a trial, attaching plots and recording the
gate go through azureml-mlflow, and the credential asked for the token is heartflow's own (a service
principal from .env or a Prefect Secret block), never azureml-mlflow's chain (DefaultAzureCredential, then
an interactive browser, then a device code that would wait on a headless worker).

The MLflow side is real: MLflow's client, azureml-mlflow's tracking store, its service context, and an HTTP
server on 127.0.0.1 answering MLflow's REST API as the workspace does."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

from backends.azure import AzureBackend
from backends.azure.mlflow_auth import authenticated_tracking_uri
from backends.azure.settings import AzureSettings
from backends.azure.trials import ARM_SCOPE, MlflowClientReader
from backends.base import DataRef, ModelVersion
from backends.domain.spec import SweepSpec
from backends.errors import ConfigurationError
from tests.unit.azure.fakes import LOCATION, FakeAzure

pytest.importorskip("azureml.mlflow")


class RecordingCredential:
    """A credential as azure-identity's: ``get_token(*scopes)``; it records who asked, and can refuse."""

    def __init__(self, token: str = "heartflow-token", refuse: bool = False) -> None:
        self.token, self.refuse = token, refuse
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        if self.refuse:
            raise ClientAuthenticationError("ClientSecretCredential: AADSTS7000215 invalid client secret")
        return AccessToken(self.token, 4_102_444_800)


def workspace_uri(workspace: str, host: str = f"{LOCATION}.api.azureml.ms") -> str:
    """The tracking URI ``workspaces.get`` reports (a fresh workspace name per test: MLflow caches stores per URI)."""
    return (f"azureml://{host}/mlflow/v1.0/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/"
            f"rg-heartflow/providers/Microsoft.MachineLearningServices/workspaces/{workspace}")


@pytest.fixture()
def mlflow_server() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """MLflow's runs/get as the workspace answers it; records each request's path and Authorization header."""
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({"path": self.path, "authorization": self.headers.get("Authorization", "")})
            run = {"run": {"info": {"run_id": "heartflow-sweep_1", "experiment_id": "1", "status": "FINISHED",
                                    "start_time": 1_000, "end_time": 4_500, "lifecycle_stage": "active"},
                           "data": {"params": [{"key": "n_estimators", "value": "50"}, {"key": "max_features", "value": "0.5"}],
                                    "metrics": [{"key": "accuracy", "value": 0.86, "timestamp": 1, "step": 1}]}}}
            body = json.dumps(run).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_mlflow_reads_a_run_with_heartflows_credential(mlflow_server: tuple[str, list[dict[str, str]]]) -> None:
    host, seen = mlflow_server
    credential = RecordingCredential()
    uri = authenticated_tracking_uri(workspace_uri(f"ws-{uuid4().hex[:8]}"), credential, host_url=host)
    assert "/mlflow/v2.0/" in uri  # azureml-mlflow's form of the URI under MLflow 3
    trial = MlflowClientReader(tracking_uri=uri)("heartflow-sweep_1")
    assert trial.params == {"n_estimators": 50, "max_features": 0.5} and trial.metrics == {"accuracy": 0.86}
    assert credential.scopes and set(credential.scopes) == {(ARM_SCOPE,)}
    assert seen and all(r["authorization"] == "Bearer heartflow-token" for r in seen)
    assert seen[0]["path"].startswith("/mlflow/v2.0/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/")
    # A later registration for the same URI (another credential, e.g. a rotated secret) is the one asked,
    # although MLflow keeps the store it built for that URI.
    rotated = RecordingCredential(token="rotated-token")
    assert authenticated_tracking_uri(workspace_uri(uri.rsplit("/", 1)[1]), rotated, host_url=host) == uri
    MlflowClientReader(tracking_uri=uri)("heartflow-sweep_1")
    assert rotated.scopes and seen[-1]["authorization"] == "Bearer rotated-token"


def _backend(settings: AzureSettings, credential: RecordingCredential) -> tuple[AzureBackend, FakeAzure]:
    fake = FakeAzure(existing=("workspace", "compute", "environment", "datastore"))
    # a workspace of its own, so MLflow's per-URI store cache holds nothing from another test
    fake.stored["workspace"]._mlflow_tracking_uri = workspace_uri(f"ws-{uuid4().hex[:8]}")
    return AzureBackend(settings, ml_client=fake, blob_service=object(), credential=credential), fake


def _model() -> ModelVersion:
    return ModelVersion(name="heart-classifier", version="3", source_run_id="heartflow-sweep_1", sweep_id="heartflow-sweep",
                        metric_name="accuracy", metric_value=0.86, data_sha256="ab" * 32, uri="azureml:heart-classifier:3")


def test_a_refused_credential_stops_the_sweep_instead_of_failing_every_trial(settings: AzureSettings) -> None:
    """The trial reader the sweep builds asks the backend's credential (not azureml-mlflow's chain); a
    credential that cannot sign in is a configuration error, not N failed trials and 'no completed trial'."""
    credential = RecordingCredential(refuse=True)
    backend, fake = _backend(settings, credential)
    with pytest.raises(ConfigurationError, match="could not sign in to read trial"):
        backend.sweep(DataRef(uri="az://data/x.csv", sha256="cd" * 32, rows=200), SweepSpec(max_total_trials=3))
    assert credential.scopes and set(credential.scopes) == {(ARM_SCOPE,)}


def test_plots_and_the_gate_go_through_the_same_credential(settings: AzureSettings, tmp_path: Path) -> None:
    credential = RecordingCredential(refuse=True)
    backend, _ = _backend(settings, credential)
    plot = tmp_path / "roc.png"
    plot.write_bytes(b"\x89PNG")
    with pytest.raises(ConfigurationError, match="could not sign in to attach files"):
        backend.attach_files(_model(), [plot])
    asked = len(credential.scopes)
    assert asked >= 1
    with pytest.raises(ConfigurationError, match="could not sign in to record the gate"):
        backend.record_gate(_model(), {"rule": "accuracy", "rows": 60, "candidate_accuracy": 0.86,
                                       "champion_accuracy": 0.84, "tolerance": 0.02})
    assert len(credential.scopes) > asked and set(credential.scopes) == {(ARM_SCOPE,)}
