"""prefect.yaml against a real server: both deployments exist with their schedule and parameters; the local
one runs through a process worker to Completed, with named runs and the keyed artifacts; failures and a
rejected promotion end Failed with a message that says what failed; a rerun reuses the cached stages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterId

from backends.local import tracking
from tests.integration.prefect.conftest import GATE_ENDPOINT, MAIN_ENDPOINT, TINY_SWEEP, finish, trigger
from tests.integration.prefect.server import PrefectServer, pool_name, prefect_yaml

pytestmark = pytest.mark.slow

ARTIFACT_KEYS = {
    "sweep-progress", "sweep-leaderboard", "classification-report", "model-version", "feature-importance", "endpoint",
}


def artifacts_of(api: SyncPrefectClient, flow_run_id: Any) -> dict[str, Any]:
    found = api.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    by_key: dict[str, Any] = {}
    for artifact in sorted(found, key=lambda a: a.created):
        if artifact.key:
            by_key[artifact.key] = artifact  # the latest version of each key
    return by_key


def task_states(api: SyncPrefectClient, flow_run_id: Any) -> dict[str, str]:
    runs = api.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {run.name: run.state.name for run in runs if run.state is not None}


def test_prefect_yaml_names_a_process_pool_and_both_backends() -> None:
    config = prefect_yaml()
    backends = {d["name"]: d["parameters"]["spec"]["backend"] for d in config["deployments"]
                if d["entrypoint"].endswith(":train_and_deploy")}
    assert backends == {"local": "local", "azure-nightly": "azure"}
    assert all(d["description"].strip() for d in config["deployments"])
    assert pool_name() == "heartflow-process"


def test_both_deployments_exist_with_their_schedule_and_parameters(api: SyncPrefectClient) -> None:
    local = api.read_deployment_by_name("train-and-deploy/local")
    nightly = api.read_deployment_by_name("train-and-deploy/azure-nightly")
    assert local.schedules == []
    assert local.work_pool_name == nightly.work_pool_name == "heartflow-process"
    assert local.parameters["spec"]["backend"] == "local"
    assert local.parameters["spec"]["deploy"]["stop_endpoint"] is True
    assert local.description and "local backend" in local.description
    assert [s.schedule.cron for s in nightly.schedules] == ["0 2 * * *"]
    assert nightly.schedules[0].schedule.timezone == "Europe/Amsterdam"
    assert nightly.schedules[0].active
    assert nightly.parameters["spec"]["backend"] == "azure"
    assert nightly.parameters["spec"]["sweep"]["max_total_trials"] == 25
    # The UI renders the pydantic spec as a form: the schema carries it.
    assert "spec" in local.parameter_openapi_schema["properties"]
    pool = api.read_work_pool("heartflow-process")
    assert pool.type == "process"


def test_the_local_deployment_runs_to_completed_with_a_name_that_says_what_ran(
    local_runs: dict[str, Any], prefect_server: PrefectServer,
) -> None:
    run = local_runs["good"]
    assert run.state.type.value == "COMPLETED", f"{run.state}\n{prefect_server.log_tail('worker.log')}"
    # Renamed once the data hash and then the model version were known.
    assert run.name.startswith("local-data-") and run.name.endswith("-heart-classifier-v1"), run.name


def test_every_keyed_artifact_is_readable_through_the_api(
    api: SyncPrefectClient, local_runs: dict[str, Any], heartflow_home: Path,
) -> None:
    artifacts = artifacts_of(api, local_runs["good"].id)
    assert set(artifacts) >= ARTIFACT_KEYS, sorted(artifacts)

    assert artifacts["sweep-progress"].type == "progress" and float(artifacts["sweep-progress"].data) == 100.0

    leaderboard = artifacts["sweep-leaderboard"]
    rows = json.loads(leaderboard.data) if isinstance(leaderboard.data, str) else leaderboard.data
    assert leaderboard.type == "table" and len(rows) == TINY_SWEEP["max_total_trials"]
    assert {"trial", "status", "n_estimators", "max_depth", "accuracy", "duration_s"} <= set(rows[0])
    assert "sweep-accuracy.png" in leaderboard.description

    report = artifacts["classification-report"].data
    assert "precision" in report and "Confusion matrix" in report and "confusion-matrix.png" in report

    model = artifacts["model-version"].data
    assert "version 1" in model and "PROMOTED" in model and "top features" in model
    assert "sweep-accuracy.png" in model and "feature-importance.png" in model

    importance = artifacts["feature-importance"]
    table = json.loads(importance.data) if isinstance(importance.data, str) else importance.data
    columns = {row["column"] for row in table}
    # One row per original column: cp and restecg are one-hot encoded inside the model, yet appear once.
    assert {"cp", "restecg", "age", "caa"} <= columns and len(columns) == len(table) == 13
    assert not any("_" in c and c.split("_")[0] in {"cp", "restecg"} for c in columns)

    endpoint = artifacts["endpoint"].data
    assert "/score" in endpoint and "Bearer" not in endpoint
    key_file = heartflow_home / "endpoints" / MAIN_ENDPOINT / "key"
    assert key_file.is_file()
    assert key_file.read_text().strip() not in json.dumps([(a.data, a.description) for a in artifacts.values()])


def test_the_plots_are_logged_to_mlflow(heartflow_home: Path, local_runs: dict[str, Any]) -> None:
    assert local_runs["good"].state.is_completed()
    pngs = {p.name for p in (heartflow_home / "artifacts").rglob("plots/*.png")}
    assert pngs == {"sweep-accuracy.png", "confusion-matrix.png", "reliability.png", "feature-importance.png"}
    client = tracking.make_client(heartflow_home)
    model = client.get_model_version("heart-classifier", "1")
    logged = {f.path for f in client.list_artifacts(model.run_id, "plots")}
    assert logged == {"plots/confusion-matrix.png", "plots/reliability.png", "plots/feature-importance.png"}


def test_a_failed_stage_is_named_in_the_flow_runs_final_state(local_runs: dict[str, Any]) -> None:
    run = local_runs["bad"]
    assert run.state.type.value == "FAILED"
    message = run.state.message
    assert "stage validate-data-heart failed: DataValidationError" in message, message
    assert "/nonexistent/heart.csv does not exist" in message


def test_a_rerun_through_the_worker_reuses_cached_stages(
    api: SyncPrefectClient, prefect_server: PrefectServer, heartflow_home: Path, local_runs: dict[str, Any],
) -> None:
    assert local_runs["good"].state.is_completed()
    # Same data (forced: else the run ends early, see test_retrain), same sweep, same home: upload and sweep
    # come from the cache; the endpoint stays up.
    again = finish(api, prefect_server, trigger(api, "local", {
        "backend": "local", "home": str(heartflow_home), "sweep": TINY_SWEEP, "data": {"force": True},
        "deploy": {"endpoint_name": GATE_ENDPOINT, "stop_endpoint": False},
    }))
    assert again.state.is_completed(), again.state
    states = task_states(api, again.id)
    cached = {name.split("-")[0] + "-" + name.split("-")[1] for name, state in states.items() if state == "Cached"}
    assert cached == {"upload-data", "run-sweep"}, states
    artifacts = artifacts_of(api, again.id)
    # The sweep's best is the champion's own trial: nothing is redeployed, so no evaluation artifacts.
    assert {"data-source", "sweep-progress", "sweep-leaderboard", "sweep-plot"} <= set(artifacts)
    assert "reused" in artifacts["sweep-progress"].description
    assert "the sweep's best model is champion heart-classifier v1 (same trial run): no new deployment" in again.state.message
    # A rejection's state and model report are the flow's branch: tests/flow (in memory) and the e2e story.

