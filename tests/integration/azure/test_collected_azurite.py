"""Azure's live traffic read back from the data collector's records in blob storage (Azurite): the real
src/score.py with the real azureml-ai-monitoring Collector posts to a sidecar that writes the documented
format (tests/integration/azure/collector_sidecar.py); the control plane is the SDK-spec'd fakes.

`heartflow monitor --backend azure` finds drifted `chol` rows, `heartflow feedback --backend azure` joins labels
by request id (unknown ids counted), the shadow reads both deployments' answers and rejects a candidate that
fails on live rows, and the watch rolls back a new champion that fails on live rows."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from azure.storage.blob import BlobServiceClient

from backends.azure import create_azure_backend
from backends.azure.collected import open_collected
from backends.azure.monitoring import AzureMonitor
from backends.base import ModelVersion
from backends.domain.shadow import run_shadow, run_watch, shadow_verdict
from backends.domain.spec import DeploySpec, SweepSpec
from backends.results import WatchRecord
from src.features import HEART_SCHEMA
from tests.azurite import DEV_ACCOUNT
from tests.faulty_models import save_failing_model
from tests.integration.azure.collector_sidecar import (
    CollectorSidecar, append_lines, collecting_score, collector_line, post,
)
from tests.unit.azure.builders import report

WORKSPACE = {"subscription_id": "00000000-0000-0000-0000-000000000000", "resource_group": "rg", "workspace_name": "ws"}


class Workspace:
    """An Azure backend on the fakes whose default datastore is a container in Azurite, with a champion
    (version 1 on ``blue``) trained on the heart table, whose training split is stored there."""

    def __init__(self, azurite: str, home: Path, frame: pd.DataFrame) -> None:
        from azure.ai.ml.entities import AzureBlobDatastore

        from backends.azure.resilience import RetryPolicy
        from tests.unit.azure.fakes import FakeAzure

        self.service = BlobServiceClient.from_connection_string(azurite)
        self.container_name = f"azureml-blobstore-{uuid.uuid4().hex[:10]}"
        self.service.create_container(self.container_name)
        self.container = self.service.get_container_client(self.container_name)
        self.fake = FakeAzure(existing=("workspace",))
        self.fake.datastores.get_default.side_effect = lambda **kw: AzureBlobDatastore(
            name="workspaceblobstore", account_name=DEV_ACCOUNT, container_name=self.container_name)
        self.backend = create_azure_backend(
            {**WORKSPACE, "ledger_path": str(home / "ledger.json"), "poll_interval_s": 0}, env_file=None,
            ml_client=self.fake, blob_service=self.service, trial_reader=self.fake.trial_reader,
            retry=RetryPolicy(attempts=2, initial_s=0, max_s=0, sleep=lambda s: None), sleep=lambda s: None)
        self.data = self.backend.upload(frame)
        self.first = self.model()
        self.endpoint = self.backend.deploy(self.first, DeploySpec())
        self.backend.promote(self.endpoint, self.first, report(0.85))

    def model(self) -> ModelVersion:
        spec = SweepSpec(sampling="grid", max_total_trials=3, max_concurrent_trials=2)
        return self.backend.register(self.backend.sweep(self.data, spec))

    def texts(self) -> str:
        return "".join(self.container.download_blob(b.name).readall().decode() for b in self.container.list_blobs())


@pytest.fixture()
def workspace(azurite: str, upload_env: Path, heart_frame: pd.DataFrame) -> Workspace:
    return Workspace(azurite, upload_env, heart_frame)


@pytest.fixture()
def sidecar(workspace: Workspace) -> Iterator[CollectorSidecar]:
    made = CollectorSidecar(workspace.container, workspace.endpoint.name, "blue")
    yield made
    made.close()


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(frame.drop(columns=[HEART_SCHEMA.target]).to_json(orient="records"))


@pytest.mark.slow
def test_monitor_reads_drifted_collected_rows_and_feedback_joins_labels_by_request_id(
    workspace: Workspace, sidecar: CollectorSidecar, trained_model_dir: Path, heart_frame: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started = datetime.now(UTC) - timedelta(seconds=5)
    live = heart_frame.sample(300, replace=True, random_state=3).reset_index(drop=True)
    drifted = _rows(live.assign(chol=(live["chol"] * 1.5).round().astype(int)))  # 1.5x the training values
    holdout = _rows(heart_frame.sample(40, random_state=5))
    with collecting_score(trained_model_dir, sidecar, monkeypatch) as score:
        for i, row in enumerate(holdout):  # the evaluation stage's requests, as it names them
            assert isinstance(post(score, [row], f"heartflow-holdout-run1-{i}"), list)
        answers = [post(score, [row], f"req-{i}") for i, row in enumerate(drifted)]
        refused = post(score, [{"age": 63, "zz_not_kept": "zz-secret-value"}], "bad-1")
    assert all(isinstance(a, list) and len(a) == 1 for a in answers), [a.get_data() for a in answers if not isinstance(a, list)][:3]
    assert getattr(refused, "status_code", None) == 400
    assert sidecar.received == 2 * (40 + 300) + 1  # inputs and outputs per answer; one output for the refusal
    assert "zz-secret-value" not in workspace.texts()  # a refused body is counted, never kept

    monitor = AzureMonitor(workspace.backend)
    report_ = monitor.monitor("heart-classify-endpoint", started)  # the tutorial's name: the workspace's own
    figures = report_.to_json()
    assert figures["requests"] == 301 and figures["scored_rows"] == 300
    assert "chol" in figures["drifted"], figures["drift"]
    assert figures["rejected"] == {"missing column(s)": 1} and figures["errors"] == {"400": 1}
    assert figures["prediction_drift"]["reference_rows"] == 40  # the holdout's answers, from the collector too
    assert figures["realized"] is None and figures["estimated"]["rows"] == 300
    assert figures["latency_ms"]["p50"] is not None and figures["latency_ms"]["p50"] > 0

    labels = {f"req-{i}": str(live.loc[i, HEART_SCHEMA.target]) for i in range(100)}
    items = [{"request_id": rid, "label": label} for rid, label in labels.items()]
    items += [{"request_id": "never-sent-1", "label": "1"}, {"request_id": "never-sent-2", "label": "0"}]
    got = monitor.add_feedback("heart-classify-endpoint", items, "labels.csv")
    assert (got.stored, got.matched, got.unknown) == (102, 100, 2) and set(got.unknown_ids) == {"never-sent-1", "never-sent-2"}
    assert any(b.name.startswith(f"heartflow/feedback/{workspace.endpoint.name}/") for b in workspace.container.list_blobs())

    # the CLI's azure branch: the same figures, as one JSON object
    from typer.testing import CliRunner

    from flows import cli_monitor
    from flows.cli import app

    monkeypatch.setattr(cli_monitor, "_azure_monitor", lambda: AzureMonitor(workspace.backend))
    done = CliRunner().invoke(app, ["monitor", "--backend", "azure", "--json", "--since", started.isoformat()])
    assert done.exit_code == 0, done.output
    printed = json.loads(done.output)
    assert "chol" in printed["drifted"] and printed["requests"] == 301
    assert printed["realized"]["labelled"] == 100 and printed["realized"]["metric"] == "accuracy"
    assert printed["unknown_labels"] == 2


def _traffic(score: Any, rows: list[dict[str, Any]], prefix: str) -> list[Any]:
    return [post(score, [row], f"{prefix}-{i}") for i, row in enumerate(rows)]


def _live_rows(frame: pd.DataFrame, n: int, failing: int) -> list[dict[str, Any]]:
    """``n`` live rows, ``failing`` of them with thall=9 (a category the holdout never has)."""
    rows = _rows(frame.sample(n, replace=True, random_state=11))
    for row in rows[:failing]:
        row["thall"] = 9
    return rows


@pytest.fixture(scope="module")
def failing_model_dir(tmp_path_factory: pytest.TempPathFactory, heart_frame: pd.DataFrame) -> Path:
    return save_failing_model(heart_frame, tmp_path_factory.mktemp("faulty") / "model")


@pytest.mark.slow
def test_the_azure_shadow_reads_mirrored_answers_and_rejects_a_candidate_failing_on_live_rows(
    workspace: Workspace, sidecar: CollectorSidecar, trained_model_dir: Path, failing_model_dir: Path,
    heart_frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch,
) -> None:
    second = workspace.model()
    candidate = workspace.backend.deploy(second, DeploySpec())
    rows = _live_rows(heart_frame, 60, failing=6)

    def mirrored_traffic(seconds: float) -> None:  # the mirror window: the gateway copies each request
        if seconds != 20:  # run_shadow's later pauses wait for the record to settle: no new traffic then
            return
        sidecar.deployment = "blue"
        with collecting_score(trained_model_dir, sidecar, monkeypatch) as score:
            assert all(isinstance(a, list) for a in _traffic(score, rows, "live"))
        sidecar.deployment = candidate.deployment
        with collecting_score(failing_model_dir, sidecar, monkeypatch) as score:
            failed = [a for a in _traffic(score, rows, "live") if isinstance(a, Exception)]
        assert len(failed) == 6

    assert workspace.backend.mirrored_answers(candidate, workspace.backend.start_mirror(candidate, candidate.deployment, 50)) == ((), 0)
    workspace.backend.stop_mirror(candidate)
    figures = run_shadow(workspace.backend, candidate, candidate.deployment, 20, 50, percent=50, sleep=mirrored_traffic)
    assert workspace.fake.online_endpoints.get(candidate.name).mirror_traffic in ({}, None)  # the mirror stopped
    assert (figures.mirrored, figures.candidate_errors, figures.champion_errors) == (60, 6, 0)
    assert figures.rows == 54 and figures.disagreement is not None and figures.candidate_p99_ms is not None
    verdict = shadow_verdict(figures)
    assert not verdict.promote_allowed and "failed 6 of 60 mirrored live requests" in verdict.reason
    workspace.backend.reject(candidate, second, verdict.reason, report=report(0.9, candidate.deployment), shadow=figures)
    last = workspace.backend.history(candidate.name)[-1]
    assert last.event == "rejected" and last.shadow == figures


@pytest.mark.slow
def test_the_azure_watch_rolls_back_a_champion_failing_on_live_rows(
    workspace: Workspace, sidecar: CollectorSidecar, failing_model_dir: Path, heart_frame: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = workspace.backend
    second = workspace.model()
    candidate = backend.deploy(second, DeploySpec())
    session = backend.start_watch(candidate, candidate.deployment, "blue")
    backend.promote(candidate, second, report(0.9, candidate.deployment), watch=WatchRecord("watching", 30))
    assert backend.serving(candidate.name).deployment == candidate.deployment
    rows = _live_rows(heart_frame, 40, failing=5)

    calls: list[float] = []

    def live_traffic(seconds: float) -> None:  # clients reach the new champion, which fails on thall=9
        calls.append(seconds)
        if len(calls) > 1:
            return
        sidecar.deployment = candidate.deployment
        with collecting_score(failing_model_dir, sidecar, monkeypatch) as score:
            _traffic(score, rows, "after")

    record = run_watch(backend, candidate, session, 30, reference_p99_ms=None, sleep=live_traffic,
                       clock=iter(range(0, 10_000, 5)).__next__)  # 5 s a reading: a passing watch would end
    assert record.outcome == "rolled_back" and (record.requests, record.errors) == (40, 5), record
    assert len(calls) == 1  # rolled back at the first reading after the failures
    assert "answered 5 of 40 live requests with a server error" in record.reason
    restored = dataclasses.replace(candidate, deployment="blue", model_version=workspace.first.version)
    backend.promote(restored, workspace.first, report(0.85), event="rollback", reason=record.reason,
                    triggered_by="watch", watch=record)
    backend.stop_watch(candidate)
    assert backend.serving(candidate.name).deployment == "blue"
    assert backend.history(candidate.name)[-1].triggered_by == "watch"


def test_the_azure_watch_rolls_back_a_champion_whose_labelled_live_answers_are_wrong(
    workspace: Workspace, sidecar: CollectorSidecar, trained_model_dir: Path, heart_frame: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No request fails, yet labels fed back during the window contradict the new champion's answers: its
    realized accuracy, read from the collector's records joined to the stored labels, rolls it back."""
    from backends.domain.realized import realized_check

    backend = workspace.backend
    second = workspace.model()
    candidate = backend.deploy(second, DeploySpec())
    since = datetime.now(UTC) - timedelta(seconds=5)
    session = backend.start_watch(candidate, candidate.deployment, "blue")
    backend.promote(candidate, second, report(0.9, candidate.deployment), watch=WatchRecord("watching", 30))
    sidecar.deployment = candidate.deployment
    with collecting_score(trained_model_dir, sidecar, monkeypatch) as score:
        answers = _traffic(score, _rows(heart_frame.sample(40, random_state=21)), "labelled")
    assert all(isinstance(a, list) for a in answers)
    wrong = [{"request_id": f"labelled-{i}", "label": "0" if str(a[0]) == "1" else "1"} for i, a in enumerate(answers)]
    assert AzureMonitor(backend).add_feedback(candidate.name, wrong, "labels.csv").matched == 40

    joined = backend.labelled_answers(candidate, candidate.deployment, since)
    assert len(joined) == 40 and all(a.prediction != a.label for a in joined)
    assert backend.labelled_answers(candidate, "blue", since) == ()  # the other deployment's answers stay apart
    record = run_watch(backend, candidate, session, 30, reference_p99_ms=None, sleep=lambda s: None,
                       clock=iter(range(0, 10_000, 5)).__next__, labels_every_s=0,
                       realized=lambda: realized_check(backend.labelled_answers(candidate, candidate.deployment, since),
                                                       "accuracy", 0.9))
    assert record.outcome == "rolled_back" and "accuracy" in record.reason, record
    backend.stop_watch(candidate)


def test_the_reader_joins_batched_lines_by_row_and_skips_other_model_versions(workspace: Workspace) -> None:
    """Lines as the collector may write them: two requests batched into one line under one id, an answer
    whose inputs the sampling dropped, an older model's answer under a reused deployment name."""
    name, now = workspace.endpoint.name, datetime.now(UTC).timestamp()
    outputs = [
        {"correlationid": "a", "request_id": "a", "row": 0, "status": 200, "latency_ms": 2.0, "model_version": "1",
         "prediction": 1, "probability": 0.8, "positive_class": 1},
        {"correlationid": "b/0", "request_id": "b", "row": 0, "status": 200, "latency_ms": 3.0, "model_version": "1",
         "prediction": 0, "probability": 0.3, "positive_class": 1},
        {"correlationid": "b/1", "request_id": "b", "row": 1, "status": 200, "latency_ms": 3.0, "model_version": "1",
         "prediction": 1, "probability": 0.6, "positive_class": 1},
    ]
    lines = [collector_line("model_outputs", outputs, "a", now, endpoint=name, deployment="blue"),
             collector_line("model_outputs", [{**outputs[0], "correlationid": "c", "request_id": "c"}], "c", now,
                            endpoint=name, deployment="blue"),
             collector_line("model_outputs", [{**outputs[0], "correlationid": "old", "request_id": "old", "model_version": "0"}],
                            "old", now, endpoint=name, deployment="blue")]
    append_lines(workspace.container, name, "blue", "model_outputs", lines, now)
    inputs = [{"chol": 200, "correlationid": "a"}, {"chol": 210, "correlationid": "b/0"}, {"chol": 220, "correlationid": "b/1"}]
    append_lines(workspace.container, name, "blue", "model_inputs",
                 [collector_line("model_inputs", inputs, "a", now, endpoint=name, deployment="blue")], now)
    records = {r["request_id"]: r for r in open_collected(workspace.backend).records(
        name, "blue", datetime.now(UTC) - timedelta(minutes=1), datetime.now(UTC) + timedelta(minutes=1))}
    assert records["b"]["rows"] == [{"chol": 210}, {"chol": 220}] and records["b"]["predictions"] == [0, 1]
    assert records["a"]["rows"] == [{"chol": 200}] and "rows" not in records["c"]  # c's inputs were not sampled
    report_ = AzureMonitor(workspace.backend).monitor(name, datetime.now(UTC) - timedelta(minutes=1))
    assert (report_.requests, report_.scored_rows) == (3, 3)  # a, b (2 rows), c; "old" belongs to model version 0


@pytest.mark.slow
def test_under_azmlinfsrv_each_collected_answer_carries_the_id_the_client_sees(
    workspace: Workspace, sidecar: CollectorSidecar, trained_model_dir: Path, tmp_path: Path,
) -> None:
    """score.py as a managed deployment runs it (azmlinfsrv, the collector on): the id in the answer's
    x-request-id header (the client's, or one azmlinfsrv made up) is the one its collected record carries."""
    import os
    import sys
    import time

    import requests

    from tests.integration.endpoint.conftest import RECORD
    from tests.net import free_port
    from tests.servers import answers_http, running_server

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, **sidecar.env(), "AZUREML_MODEL_DIR": str(trained_model_dir.parent)}
    script = Path(__file__).resolve().parents[3] / "src" / "score.py"
    command = [str(Path(sys.executable).with_name("azmlinfsrv")), "--entry_script", str(script), "--port", str(port)]
    with running_server(command, ready=answers_http(f"{base}/"), what="azmlinfsrv", log=tmp_path / "server.log",
                        timeout_s=60, env=env):
        named = requests.post(f"{base}/score", json={"data": [RECORD]}, headers={"x-request-id": "client-1"}, timeout=10)
        unnamed = requests.post(f"{base}/score", json={"data": [RECORD, RECORD]}, timeout=10)
        refused = requests.post(f"{base}/score", json={"data": [{"age": 63}]}, headers={"x-request-id": "client-2"}, timeout=10)
        deadline = time.monotonic() + 30
        while sidecar.received < 5 and time.monotonic() < deadline:  # the collector sends in the background
            time.sleep(0.1)
        sidecar.flush()
    assert (named.status_code, unnamed.status_code, refused.status_code) == (200, 200, 400)
    assert named.headers["x-request-id"] == "client-1"
    made_up = unnamed.headers["x-request-id"]
    records = {r["request_id"]: r for r in open_collected(workspace.backend).records(
        workspace.endpoint.name, "blue", datetime.now(UTC) - timedelta(minutes=5), datetime.now(UTC) + timedelta(minutes=1))}
    assert set(records) == {"client-1", made_up, "client-2"}
    assert records["client-1"]["predictions"] == named.json() and records["client-1"]["rows"][0]["chol"] == RECORD["chol"]
    assert len(records[made_up]["rows"]) == 2 and records[made_up]["latency_ms"] > 0
    assert (records["client-2"]["kind"], records["client-2"]["status"], records["client-2"]["reason"]) == (
        "rejected", 400, "missing column(s)")


@pytest.mark.slow
def test_the_monitor_flow_on_azure_keeps_history_logs_to_mlflow_emits_drift_and_exports_the_labelled_window(
    workspace: Workspace, sidecar: CollectorSidecar, trained_model_dir: Path, heart_frame: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, azurite: str, prefect_harness: None,
) -> None:
    """The monitor-endpoint flow with ``backend="azure"`` (on the session's Prefect test harness): the figures
    appended to the history blob (bounded), the figures as metrics on the champion's trial run in the
    workspace's MLflow (SQLite standing in), the drift event naming the labelled window, and that window a
    CSV blob a run reads as data; then `heartflow status --backend azure` shows those last figures."""
    from mlflow.tracking import MlflowClient
    from typer.testing import CliRunner

    import flows.monitor_endpoint as monitor_flow
    import tasks.monitoring as monitor_tasks
    from backends.azure import monitoring
    from backends.domain.sources import read_stored_table
    from flows import cli_status
    from flows.cli import app

    uri = f"sqlite:///{tmp_path / 'workspace-mlflow.db'}"  # what the workspace reports as its MLflow
    workspace.fake.stored["workspace"]._mlflow_tracking_uri = uri
    mlflow = MlflowClient(tracking_uri=uri)
    run_id = mlflow.create_run(mlflow.create_experiment("heartflow")).info.run_id
    workspace.backend.tag_model(workspace.first, {"heartflow.trial_run": run_id})  # the champion's trial run

    live = heart_frame.sample(100, replace=True, random_state=13).reset_index(drop=True)
    drifted = _rows(live.assign(chol=(live["chol"] * 1.5).round().astype(int)))
    with collecting_score(trained_model_dir, sidecar, monkeypatch) as score:
        assert all(isinstance(post(score, [row], f"heartflow-holdout-run1-{i}"), list)
                   for i, row in enumerate(_rows(heart_frame.sample(40, random_state=5))))
        assert all(isinstance(a, list) for a in _traffic(score, drifted, "win"))
    name = workspace.endpoint.name
    labels = {f"win-{i}": str(live.loc[i, HEART_SCHEMA.target]) for i in range(40)}
    got = AzureMonitor(workspace.backend).add_feedback(name, [{"request_id": r, "label": v} for r, v in labels.items()], "x.csv")
    assert got.matched == 40

    sent: list[dict[str, Any]] = []
    emit = monitor_tasks.emit_event
    monkeypatch.setattr(monitor_tasks, "emit_event", lambda **kw: sent.append(kw) or emit(**kw))
    monkeypatch.setattr(monitor_flow, "create_backend", lambda backend, **kw: workspace.backend)
    figures = monitor_flow.monitor_endpoint(since="10m", backend="azure", min_labelled=30)
    assert figures["requests"] == 100 and "chol" in figures["drifted"] and figures["realized"]["labelled"] == 40

    kept = json.loads(workspace.container.download_blob(f"heartflow/monitor/{name}/history.json").readall())
    assert [entry["requests"] for entry in kept] == [100] and kept[0]["until"] == figures["until"]
    assert workspace.backend.monitor_history("heart-classify-endpoint") == kept  # the tutorial's name resolves too

    metrics = mlflow.get_run(run_id).data.metrics
    assert metrics["monitor_requests"] == 100 and metrics["monitor_labelled_rows"] == 40 and metrics["monitor_psi.chol"] >= 0.25

    (drift,) = [e for e in sent if e["event"] == "heartflow.endpoint.drifted"]
    assert drift["resource"]["prefect.resource.id"] == f"heartflow.endpoint.{name}"  # the workspace's endpoint
    assert drift["resource"]["heartflow.endpoint"] == "heart-classify-endpoint"  # the name runs (and their slot) use
    assert (drift["resource"]["heartflow.backend"], drift["resource"]["heartflow.retrain"]) == ("azure", "true")
    data_uri = drift["payload"]["data_uri"]
    assert data_uri.startswith(workspace.container.url) and data_uri.endswith(".csv")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite)  # as a run configured for this storage reads it
    window = read_stored_table(data_uri)
    assert len(window) == 40 and set(window.columns) == set(heart_frame.columns)
    assert sorted(window[HEART_SCHEMA.target].astype(str)) == sorted(labels.values())
    assert (window["chol"].astype(float) > heart_frame["chol"].min() * 1.4).all()  # the drifted rows, as asked

    monkeypatch.setattr(cli_status, "_azure_backend", lambda model_name: workspace.backend)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    done = CliRunner().invoke(app, ["status", "--backend", "azure", "--json"])
    assert done.exit_code == 0, done.output
    record = json.loads(done.output)
    assert record["serving"] and record["champion_version"] == workspace.first.version
    assert record["monitor"]["requests"] == 100 and "chol" in record["monitor"]["drifted"]

    monkeypatch.setattr(monitoring, "HISTORY_LIMIT", 1)  # the history stays bounded: the newest entries kept
    again = workspace.backend.monitor(name, datetime.now(UTC) - timedelta(minutes=10))
    kept = json.loads(workspace.container.download_blob(f"heartflow/monitor/{name}/history.json").readall())
    assert len(kept) == 1 and kept[0]["until"] == again.to_json()["until"]
