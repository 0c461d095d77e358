"""The live suite's lifecycle (tests/integration/azure/live.py) rehearsed without a subscription: the
control plane is the fake built on the SDK's operations classes, the upload goes to Azurite, and the
evaluation through the endpoint (the data plane, which needs a real endpoint) is the one stand-in. It
proves the order of the stages and that the teardown runs, and removes what the run created, also when a
stage fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from backends.azure import AzureBackend
from backends.azure.resilience import RetryPolicy
from backends.azure.settings import load_settings
from backends.base import EvalReport
from backends.domain.dataset import prepare_data
from backends.errors import DeploymentError
from tests.integration.azure.live import LIVE_INSTANCE_TYPE, LiveNames, live_cost, live_overrides, run_lifecycle
from tests.unit.azure.fakes import FakeAzure, http_error

pytestmark = pytest.mark.slow

STAGES = ["provision", "upload", "sweep", "register", "deploy", "evaluate", "gate", "rollback", "teardown"]


def _backend(connection_string: str, workdir: Path, names: LiveNames, fake: FakeAzure) -> AzureBackend:
    settings = load_settings({
        "subscription_id": "00000000-0000-0000-0000-000000000000", "resource_group": "rg-heartflow",
        "workspace_name": "ws-heartflow", "storage_connection_string": connection_string, "poll_interval_s": 0,
        **live_overrides(names, workdir)}, env_file=None)
    return AzureBackend(settings, ml_client=fake, trial_reader=fake.trial_reader,
                        retry=RetryPolicy(attempts=2, initial_s=0, max_s=0, sleep=lambda s: None), sleep=lambda s: None)


def _fake(**kwargs: Any) -> FakeAzure:
    fake = FakeAzure(existing=("workspace", "environment"), trials={
        0: ("Completed", {"n_estimators": 10, "max_depth": 6}, {"accuracy": 0.80}),
        1: ("Completed", {"n_estimators": 30, "max_depth": 6}, {"accuracy": 0.84})}, **kwargs)
    fake.stored["workspace"]._mlflow_tracking_uri = "sqlite:///unused.db"
    return fake


def _evaluate(endpoint: Any, holdout: Any, target: str, deployment: str | None = None) -> EvalReport:
    """The data plane's stand-in: what evaluate_over_http returns for this endpoint and deployment."""
    rows = len(holdout)
    return EvalReport(endpoint=endpoint.name, deployment=deployment or endpoint.deployment,
                      model_version=endpoint.model_version, rows=rows, labels=(0, 1), predictions=(0, 1), accuracy=0.84,
                      report_text="", report={}, confusion_matrix=((1, 0), (0, 1)), requests=1, latency_ms_p50=5.0)


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_lifecycle_runs_every_stage_and_leaves_nothing_behind(azurite: str, workdir: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    names, fake = LiveNames(), _fake()
    backend = _backend(azurite, workdir, names, fake)
    monkeypatch.setattr(backend, "record_gate", lambda model, numbers: None)  # the workspace's MLflow: live only
    steps: list[str] = []
    run_lifecycle(backend, prepare_data(None, None, 0.1), names, steps, evaluate=_evaluate)
    assert steps == STAGES
    compute = fake.compute.begin_create_or_update.call_args.args[0]
    assert (compute.name, compute.max_instances) == (names.compute, 1)
    assert fake.online_deployments.begin_create_or_update.call_count == 3
    assert {d.instance_type for d in (c.args[0] for c in fake.online_deployments.begin_create_or_update.call_args_list)} == {
        LIVE_INSTANCE_TYPE}
    assert names.endpoint not in fake.endpoints and not fake.deployments
    fake.compute.begin_delete.assert_called_once()
    assert [c.kwargs["version"] for c in fake.models.archive.call_args_list] == ["1", "2"]


def test_the_teardown_runs_when_a_stage_fails(azurite: str, workdir: Path) -> None:
    names, fake = LiveNames(), _fake(deployment_error=http_error(400, "ScoringScriptFailed"))
    backend = _backend(azurite, workdir, names, fake)
    steps: list[str] = []
    with pytest.raises(DeploymentError, match="ScoringScriptFailed"):
        run_lifecycle(backend, prepare_data(None, None, 0.1), names, steps, evaluate=_evaluate)
    assert steps == ["provision", "upload", "sweep", "register", "teardown"]
    assert names.endpoint not in fake.endpoints and not fake.deployments
    fake.compute.begin_delete.assert_called_once()
    assert backend.teardown_all(yes=False).planned == ()  # the run's ledger is empty


def test_the_cost_estimate_names_both_meters(workdir: Path) -> None:
    names = LiveNames()
    settings = load_settings({**live_overrides(names, workdir)}, env_file=None)
    estimate = live_cost(settings)
    text = estimate.render()
    assert "cluster" in text and "endpoint" in text and estimate.total_usd > 0
    assert estimate.cluster_node_minutes >= 2 * 6 and estimate.endpoint_instance_minutes >= 3 * 15
