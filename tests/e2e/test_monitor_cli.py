"""What serves, watched: a run, then 300 live requests whose chol is 1.5x the training values; `heartflow
monitor --json` flags chol and counts the 300 requests; `heartflow feedback` with labels for 100 of them
makes `realized` report the metric on 100 labelled requests. The user's table: text categories, text labels
(Presence/Absence), empty cells, an ID column."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import requests

from backends.client.evaluation import records_of
from backends.domain.sources import read_stored_table
from backends.local.backend import LocalBackend
from tests.tables import LABELS, TARGET, user_table

pytestmark = pytest.mark.slow
ENDPOINT = "e2e-monitor"


def heartflow(home: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEARTFLOW_HOME": str(home), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("PREFECT_API_URL", None)
    return subprocess.run([sys.executable, "-m", "flows.cli", *args, "--home", str(home)], capture_output=True,
                          text=True, timeout=timeout, env=env, check=False)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("monitor-home")
    table = user_table(400, seed=7).rename(columns={"Cholesterol mg/dl": "chol"})
    data = home / "patients.csv"
    table.to_csv(data, index=False)
    done = heartflow(home, "run", "--data", str(data), "--target", TARGET, "--positive-class", LABELS[1],
                     "--trials", "2", "--concurrency", "1", "--endpoint-name", ENDPOINT)
    assert done.returncode == 0, done.stdout + done.stderr
    yield home
    LocalBackend(home).teardown(ENDPOINT)


def test_drift_counts_and_realized_performance_from_live_traffic(served: Path, tmp_path: Path) -> None:
    home = served
    local = LocalBackend(home)
    endpoint = local.endpoint(ENDPOINT)
    assert endpoint is not None
    model = local.registry.get(endpoint.model_name, endpoint.model_version)
    training = read_stored_table(model.tags["heartflow.data_uri"])
    rows = training.sample(n=300, replace=True, random_state=3).reset_index(drop=True)
    labels = rows[TARGET].tolist()
    features = rows.drop(columns=[TARGET])
    features["chol"] = pd.to_numeric(features["chol"]) * 1.5
    for column in features.columns[features.dtypes == bool]:  # pandas read TRUE/FALSE as booleans: send the text
        features[column] = features[column].map({True: "TRUE", False: "FALSE"})
    key = local.endpoint_key(endpoint)
    started = datetime.now(UTC)
    time.sleep(0.01)
    with requests.Session() as session:
        for i, record in enumerate(records_of(features)):
            answer = session.post(endpoint.scoring_uri, json={"data": [record]}, timeout=30,
                                  headers={"Authorization": f"Bearer {key}", "x-request-id": f"live-{i}"})
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-request-id"] == f"live-{i}"
    time.sleep(1.0)  # the capture writer flushes within a fraction of a second

    since = started.strftime("%Y-%m-%dT%H:%M:%S.%f")
    first = heartflow(home, "monitor", "--endpoint-name", ENDPOINT, "--since", since, "--json", timeout=300)
    assert first.returncode == 0, first.stderr
    figures = json.loads(first.stdout)
    assert figures["requests"] == 300 and figures["scored_rows"] == 300
    assert "chol" in figures["drifted"], figures
    assert figures["realized"] is None
    assert figures["estimated"]["metric"] == "accuracy" and 0.5 <= figures["estimated"]["value"] <= 1.0
    assert figures["prediction_drift"]["reference_rows"] > 0  # the holdout's answers, captured at evaluation

    labelled = tmp_path / "labels.csv"
    # the data's own labels; the stored training split keeps the target as the data wrote it, or as 0/1
    words = [LABELS[int(v)] if str(v) in ("0", "1") else str(v) for v in labels[:100]]
    pd.DataFrame({"request_id": [f"live-{i}" for i in range(100)] + ["never-sent"],
                  "label": words + [LABELS[0]]}).to_csv(labelled, index=False)
    stored = heartflow(home, "feedback", str(labelled), "--endpoint-name", ENDPOINT, timeout=300)
    assert stored.returncode == 0, stored.stderr
    assert "100 match a captured prediction, 1 unknown" in stored.stdout

    second = heartflow(home, "monitor", "--endpoint-name", ENDPOINT, "--since", since, "--json", timeout=300)
    figures = json.loads(second.stdout)
    realized = figures["realized"]
    assert realized["metric"] == "accuracy" and realized["labelled"] == 100
    low, high = realized["interval_95"]
    assert 0.0 <= low <= realized["value"] <= high <= 1.0
    assert figures["estimated"]["rows"] == 200 and figures["unknown_labels"] == 1

    status = heartflow(home, "status", "--endpoint-name", ENDPOINT, "--json", timeout=300)
    last = json.loads(status.stdout)["monitor"]
    assert last["requests"] == 300 and last["realized"]["labelled"] == 100 and "chol" in last["drifted"]


def test_monitor_flow_logs_to_mlflow_and_exports_the_labelled_window(served: Path) -> None:
    """After the first test (300 requests, 100 labelled): the monitor-endpoint flow's figures, its metrics on
    the serving model's run, and the labelled window a retrain would train on."""
    from backends.local import tracking
    from flows.monitor_endpoint import monitor_endpoint

    figures = monitor_endpoint(endpoint_name=ENDPOINT, since="2h", home=str(served))
    assert figures["requests"] >= 300 and "chol" in figures["drifted"]
    local = LocalBackend(served)
    endpoint = local.endpoint(ENDPOINT)
    model = local.registry.get(endpoint.model_name, endpoint.model_version)
    metrics = tracking.make_client(served).get_run(model.source_run_id).data.metrics
    assert metrics["monitor_requests"] >= 300 and metrics["monitor_labelled_rows"] == 100
    assert metrics["monitor_psi.chol"] >= 0.25
    windows = list((served / "endpoints" / ENDPOINT / "monitor" / "windows").glob("labelled-*.csv"))
    assert len(windows) == 1
    window = pd.read_csv(windows[0])
    assert len(window) == 100 and set(window[TARGET]) <= set(LABELS)
    assert Path(f"{windows[0]}.schema.json").exists()


def test_a_retrain_on_the_labelled_window_runs_once_per_event(served: Path) -> None:
    """The automation's flow on the exported window: it retrains once, names the event in the history's
    "triggered by", and the same event id does nothing the second time."""
    from flows.retrain_on_event import retrain_on_event

    window = next((served / "endpoints" / ENDPOINT / "monitor" / "windows").glob("labelled-*.csv"))
    event_id = uuid.uuid4().hex
    done = retrain_on_event(event="heartflow.model.degraded", event_id=event_id, endpoint_name=ENDPOINT, retrain=True,
                            data_uri=str(window), home=str(served), trials=2)
    assert done.startswith("retrained"), done
    again = retrain_on_event(event="heartflow.model.degraded", event_id=event_id, endpoint_name=ENDPOINT, retrain=True,
                             data_uri=str(window), home=str(served), trials=2)
    assert again.startswith("skipped") and "already triggered" in again
    latest = LocalBackend(served).history(ENDPOINT)[-1]
    assert f"on-degraded-{event_id[:8]}" in latest.triggered_by
