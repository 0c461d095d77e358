"""The whole flow on the embedded dataset, as a user runs it: real MLflow, real worker processes, a real
HTTP endpoint on 127.0.0.1, Prefect's temporary local API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests

from backends.domain.dataset import prepare_data
from backends.errors import PromotionRejected
from backends.client.evaluation import records_of
from backends.local import tracking
from backends.local.backend import LocalBackend
from backends.domain.spec import Choice, DataSpec, DeploySpec, PipelineSpec, SweepSpec
from flows.rollback import rollback_endpoint
from flows.train_and_deploy import train_and_deploy

ENDPOINT = "e2e-endpoint"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("heartflow-home")
    yield path
    LocalBackend(path).teardown(ENDPOINT)


def _spec(home: Path, **sweep: object) -> PipelineSpec:
    return PipelineSpec(
        home=str(home),
        sweep=SweepSpec(max_total_trials=6, max_concurrent_trials=2, **sweep),
        deploy=DeploySpec(endpoint_name=ENDPOINT),
    )


@pytest.fixture(scope="module")
def first_run(home: Path):
    return train_and_deploy(spec=_spec(home))


def test_trials_are_recorded_and_the_champion_is_the_best_trial(home: Path, first_run) -> None:
    client = tracking.make_client(home)
    experiment = client.get_experiment_by_name(tracking.EXPERIMENT)
    children = client.search_runs([experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{first_run.sweep.sweep_id}'")
    assert len(children) == 6 and all(r.info.status == "FINISHED" for r in children)
    best = min(children, key=lambda r: (-r.data.metrics["accuracy"], int(r.data.tags["heartflow.trial_number"])))
    champion = client.get_model_version_by_alias("heart-classifier", "champion")
    assert champion.run_id == best.info.run_id == first_run.model.source_run_id
    assert champion.tags["heartflow.status"] == "champion"


def test_the_report_covers_every_holdout_row_and_came_over_http(home: Path, first_run) -> None:
    holdout = prepare_data(None, None, 0.1).holdout
    report = first_run.report
    assert report.rows == len(holdout) == 32 == len(report.predictions)  # 10 % by row hash: 32 of 303 rows
    assert sum(map(sum, report.confusion_matrix)) == 32
    assert list(report.row_ids) == list(holdout.index)
    assert list(report.labels) == holdout["output"].tolist()
    assert "precision    recall  f1-score   support" in report.report_text
    assert report.requests >= 1 and report.latency_ms_p50 > 0
    # The endpoint is still serving: a client gets the same answers over HTTP.
    endpoint = first_run.endpoint
    key = (home / "endpoints" / ENDPOINT / "key").read_text().strip()
    answer = requests.post(
        endpoint.scoring_uri, json={"data": records_of(holdout.drop(columns=["output"]))},
        headers={"Authorization": f"Bearer {key}"}, timeout=30,
    )
    assert answer.status_code == 200 and answer.json() == list(report.predictions)
    assert requests.post(endpoint.scoring_uri, json={"data": []}, timeout=10).status_code == 401
    # ...and the report is logged to the MLflow run that trained the model.
    client = tracking.make_client(home)
    run = client.get_run(first_run.model.source_run_id)
    assert run.data.metrics["holdout_accuracy"] == pytest.approx(report.accuracy)
    folders = [a.path for a in client.list_artifacts(run.info.run_id, "evaluations")]
    texts = [a.path for f in folders for a in client.list_artifacts(run.info.run_id, f)]
    assert any(t.endswith("classification_report.txt") for t in texts)


def test_reject_then_roll_back_then_roll_back_to_a_chosen_champion(tmp_path: Path) -> None:
    """One story on its own home (each step builds on the one before, inside this test; the tests above
    read the module's first run, which this one leaves alone): a worse model is rejected, a newer one
    promoted, rolled back, then rolled back to a chosen earlier champion."""
    home = tmp_path / "story-home"
    try:
        _story(home, train_and_deploy(spec=_spec(home)))
    finally:
        LocalBackend(home).teardown(ENDPOINT)


def _story(home: Path, first_run) -> None:
    worse = {"n_estimators": Choice(values=[1]), "max_depth": Choice(values=[1]), "max_features": Choice(values=[1])}
    same_data = _spec(home, search_space=worse, sampling="grid").model_copy(update={"data": DataSpec(force=True)})
    with pytest.raises(PromotionRejected, match="rejected by the promotion gate"):
        train_and_deploy(spec=same_data)  # --force: the data is the champion's
    backend = LocalBackend(home)
    endpoint = backend.endpoint(ENDPOINT)
    assert endpoint is not None and endpoint.model_version == first_run.model.version
    assert dict(endpoint.traffic) == {first_run.endpoint.deployment: 100}
    assert backend.champion("heart-classifier").version == first_run.model.version
    rejected = backend.history(ENDPOINT)[-1]
    assert rejected.event == "rejected" and rejected.model_version == "2"
    assert backend.get_model("heart-classifier", "2").tags["heartflow.status"] == "rejected"
    _promote_then_roll_back(home, first_run)
    _roll_back_to_a_chosen_champion(home)


def _promote_then_roll_back(home: Path, first_run) -> None:
    spec = _spec(home, seed=7).model_copy(update={"deploy": DeploySpec(endpoint_name=ENDPOINT, promotion_tolerance=1.0),
                                                  "data": DataSpec(force=True)})
    state = train_and_deploy(spec=spec, return_state=True)
    newer = state.result()
    assert newer.decision.promote and newer.endpoint.model_version != first_run.model.version
    # Seed 7 moves no row across the split: the champion is compared on all 32 rows, none of which it saw.
    gate = newer.decision
    assert gate.rows == 32 and gate.rows_excluded == 0 and gate.champion_rows_known and gate.p_value is not None
    assert gate.difference == pytest.approx(gate.candidate - gate.champion)
    run = tracking.make_client(home).get_run(newer.model.source_run_id)
    assert run.data.metrics["gate_rows"] == 32 and run.data.tags["heartflow.gate.rule"] == "tolerance"
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    # This run's own table: the other test worker's runs write theirs to the same Prefect database.
    with get_client(sync_client=True) as client:
        tables = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["gate-decision"]),
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    assert len(tables) == 1, tables
    latest = tables[0]
    assert '"rows": 32' in str(latest.data) or "'rows': 32" in str(latest.data), latest.data
    message = rollback_endpoint("local", home, ENDPOINT, None, None)
    assert f"v{first_run.model.version}" in message
    backend = LocalBackend(home)
    assert backend.champion("heart-classifier").version == first_run.model.version
    endpoint = backend.endpoint(ENDPOINT)
    assert endpoint.model_version == first_run.model.version and list(endpoint.traffic.values()) == [100]
    assert [e.event for e in backend.history(ENDPOINT)] == ["promoted", "rejected", "promoted", "rollback"]


def _rollback_cli(home: Path, *args: str):
    """`heartflow rollback` through typer's runner: the same command in this process (no new interpreter)."""
    from typer.testing import CliRunner

    from flows.cli import app

    return CliRunner().invoke(app, ["rollback", "--home", str(home), "--endpoint-name", ENDPOINT, *args])


def _roll_back_to_a_chosen_champion(home: Path) -> None:
    import shutil

    backend = LocalBackend(home)
    # v1 promoted, v2 rejected, v3 promoted, v1 rolled back to (it serves). Which targets are refused, and
    # how, is the rollback contract's (tests/contract/test_rollback_target.py, on every backend).
    served = [(e.event, e.model_version) for e in backend.history(ENDPOINT)]
    assert served == [("promoted", "1"), ("rejected", "2"), ("promoted", "3"), ("rollback", "1")]
    result = _rollback_cli(home, "--target", "2")
    assert result.exit_code == 1 and "Traceback" not in result.stderr, result.stderr
    assert "heart-classifier v2 never served on e2e-endpoint as champion" in " ".join(result.stderr.split())

    # v3's files no longer load: it fails its check beside v1, which keeps serving all traffic. (A client's
    # request first: the host drops the deleted deployment's loaded model when it next follows its state.)
    key = (home / "endpoints" / ENDPOINT / "key").read_text().strip()
    row = records_of(prepare_data(None, None, 0.1).holdout.drop(columns=["output"]).head(1))
    answer = requests.post(backend.endpoint(ENDPOINT).scoring_uri, json={"data": row},
                           headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert answer.status_code == 200
    model_dir = tracking.served_model_dir(tracking.make_client(home), home, "heart-classifier", "3")
    saved = home.parent / "v3-model-saved"
    shutil.copytree(model_dir, saved)
    try:
        for file in model_dir.iterdir():
            if file.suffix in {".skops", ".pkl"}:
                file.write_bytes(b"not a model")
        result = _rollback_cli(home, "--target", "3")
        assert result.exit_code == 1 and "Traceback" not in result.stderr, result.stderr
        endpoint = backend.endpoint(ENDPOINT)
        assert endpoint.model_version == "1" and list(endpoint.traffic.values()) == [100]
        assert backend.champion("heart-classifier").version == "1"
        assert result.stderr.count("error:") == 1 and "did not pass its smoke request" in " ".join(result.stderr.split()), result.stderr
        assert len(backend.history(ENDPOINT)) == 4  # nothing was promoted
    finally:
        shutil.rmtree(model_dir)
        shutil.copytree(saved, model_dir)

    result = _rollback_cli(home, "--target", "3")
    assert result.exit_code == 0, result.stderr
    assert "rolled back e2e-endpoint to heart-classifier v3" in " ".join(result.stdout.split())
    assert backend.champion("heart-classifier").version == "3"
    endpoint = backend.endpoint(ENDPOINT)
    assert endpoint.model_version == "3" and list(endpoint.traffic.values()) == [100]
    last = backend.history(ENDPOINT)[-1]
    assert (last.event, last.model_version, last.reason) == ("rollback", "3", "rollback from v1 to v3")


def test_serve_runs_a_chosen_version_in_the_foreground(home: Path, first_run) -> None:
    import re
    import signal

    server = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "serve", "--home", str(home), "--endpoint-name", "serve-check",
         "--model-version", first_run.model.version],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        line = server.stdout.readline()
        match = re.search(r"at (http://127\.0\.0\.1:\d+/score)", line)
        assert match, line
        key = (home / "endpoints" / "serve-check" / "key").read_text().strip()
        row = records_of(prepare_data(None, None, 0.1).holdout.drop(columns=["output"]).head(2))
        answer = requests.post(match.group(1), json={"data": row}, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        assert answer.status_code == 200 and answer.json() == list(first_run.report.predictions[:2])
    finally:
        server.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught: -15 is a clean stop.
        assert server.wait(timeout=30) in (0, -signal.SIGTERM)
