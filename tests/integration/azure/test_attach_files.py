"""Plots reach the workspace's MLflow: AzureBackend.attach_files logs them as artifacts of the model's
source trial run through MLflow at the workspace's mlflow_tracking_uri. The control plane is a fake built
on the SDK's WorkspaceOperations returning a real Workspace entity; the tracking URI it reports points at a
real MLflow store (SQLite) standing in for the workspace's."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from unittest.mock import create_autospec

import pytest
from azure.ai.ml.entities import Workspace
from azure.ai.ml.operations import WorkspaceOperations
from azure.core.exceptions import ResourceNotFoundError
from mlflow.tracking import MlflowClient

from backends.azure import create_azure_backend
from backends.base import ModelVersion
from backends.errors import ConfigurationError, RegistrationError

WORKSPACE = {"subscription_id": "00000000-0000-0000-0000-000000000000", "resource_group": "rg-heartflow",
             "workspace_name": "ws-heartflow"}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """The stand-in for the workspace's tracking server: (tracking URI, experiment id)."""
    folder = tmp_path_factory.mktemp("workspace-mlflow")
    uri = f"sqlite:///{folder / 'workspace.db'}"
    experiment = MlflowClient(tracking_uri=uri).create_experiment("heartflow", artifact_location=(folder / "artifacts").as_uri())
    return uri, experiment


@pytest.fixture()
def workspace_mlflow(store: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, MlflowClient, str]:
    """One finished trial run, as a sweep leaves it; returns (uri, client, run id)."""
    monkeypatch.chdir(tmp_path)
    uri, experiment = store
    client = MlflowClient(tracking_uri=uri)
    run = client.create_run(experiment, run_name="heartflow-sweep_3")
    client.log_metric(run.info.run_id, "accuracy", 0.86)
    client.set_terminated(run.info.run_id)
    return uri, client, run.info.run_id


def _backend(uri: str) -> tuple[object, object]:
    workspaces = create_autospec(WorkspaceOperations, instance=True)
    workspaces.get.return_value = Workspace(name=WORKSPACE["workspace_name"], mlflow_tracking_uri=uri)
    backend = create_azure_backend(WORKSPACE, env_file=None, ml_client=SimpleNamespace(workspaces=workspaces))
    return backend, workspaces


def _model(run_id: str) -> ModelVersion:
    return ModelVersion(name="heart-classifier", version="3", source_run_id=run_id, sweep_id="heartflow-sweep",
                        metric_name="accuracy", metric_value=0.86, data_sha256="ab" * 32, uri="azureml:heart-classifier:3")


def _plots(folder: Path) -> list[Path]:
    folder.mkdir(exist_ok=True)
    files = [folder / "sweep-accuracy.png", folder / "feature-importance.png"]
    for index, file in enumerate(files):
        file.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes([index]) * 64)
    return files


def test_plots_become_artifacts_of_the_trial_run(workspace_mlflow: tuple[str, MlflowClient, str], tmp_path: Path) -> None:
    uri, client, run_id = workspace_mlflow
    backend, workspaces = _backend(uri)
    files = _plots(tmp_path / "report")
    backend.attach_files(_model(run_id), files)

    workspaces.get.assert_called_once_with(WORKSPACE["workspace_name"])
    stored = {Path(a.path).name for a in client.list_artifacts(run_id, "plots")}
    assert stored == {"sweep-accuracy.png", "feature-importance.png"}
    for file in files:
        local = client.download_artifacts(run_id, f"plots/{file.name}", str(tmp_path / "back"))
        assert Path(local).read_bytes() == file.read_bytes()
    assert client.get_run(run_id).data.metrics["accuracy"] == 0.86  # the run is the trial's, untouched


def test_a_missing_file_attaches_nothing(workspace_mlflow: tuple[str, MlflowClient, str], tmp_path: Path) -> None:
    uri, client, run_id = workspace_mlflow
    backend, _ = _backend(uri)
    files = [*_plots(tmp_path / "report"), tmp_path / "report" / "not-drawn.png"]
    with pytest.raises(ConfigurationError, match="not-drawn.png"):
        backend.attach_files(_model(run_id), files)
    assert client.list_artifacts(run_id) == []


def test_an_unknown_run_or_workspace_is_one_clear_error(workspace_mlflow: tuple[str, MlflowClient, str], tmp_path: Path) -> None:
    uri, _, _ = workspace_mlflow
    backend, workspaces = _backend(uri)
    with pytest.raises(RegistrationError, match="could not attach 2 file"):
        backend.attach_files(_model("0123456789abcdef0123456789abcdef"), _plots(tmp_path / "report"))
    workspaces.get.side_effect = ResourceNotFoundError("workspace not found")
    with pytest.raises(RegistrationError, match="tracking URI of workspace ws-heartflow"):
        backend.attach_files(_model("any"), _plots(tmp_path / "report"))


def test_the_gates_numbers_reach_the_trial_run_in_the_workspace_mlflow(workspace_mlflow) -> None:
    uri, client, run_id = workspace_mlflow
    backend, _ = _backend(uri)
    record = {"n": 32, "candidate_accuracy": 0.8125, "champion_accuracy": 0.78, "p_value": 0.5, "rule": "paired",
              "promote": True, "power": None}
    backend.record_gate(_model(run_id), record)
    run = client.get_run(run_id)
    assert run.data.metrics["gate_n"] == 32 and run.data.metrics["gate_candidate_accuracy"] == 0.8125
    assert run.data.tags["heartflow.gate.rule"] == "paired" and run.data.tags["heartflow.gate.promote"] == "True"
    assert run.data.tags["heartflow.gate.power"] == "None"
    with pytest.raises(RegistrationError, match="no source trial run"):
        backend.record_gate(_model(""), record)
