"""Scheduled retraining end to end on a real Prefect server, real MLflow, a real endpoint on 127.0.0.1:

1. a run on a folder of CSVs, then a rerun on the same data (read from Azurite through its blob URL):
   Completed, no new version, no deployment change, the reason in the state message;
2. new rows with a shifted column, served over http on 127.0.0.1: the drift flags that column, the
   champion's decay is recorded, the candidate is evaluated;
3. the promotion and no-new-data events are read back through the Prefect API.

(A stopped endpoint's champion restored by a rerun is a flow branch: tests/flow, on the in-memory backend.)
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests
from azure.storage.blob import BlobServiceClient
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.settings import PREFECT_API_URL, temporary_settings

from backends.local import tracking
from backends.local.backend import LocalBackend
from backends.local.watch import DECAY_METRIC
from backends.domain.spec import DataSpec, DeploySpec, PipelineSpec, SweepSpec
from flows.train_and_deploy import RunSummary, train_and_deploy
from tests.integration.prefect.server import PrefectServer, running_server
from tests.tables import resampled_heart_table, write_table

ENDPOINT = "e2e-retrain"
MODEL = "heart-classifier"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    with running_server(tmp_path_factory.mktemp("prefect-retrain")) as started:
        with temporary_settings(updates={PREFECT_API_URL: started.api_url}):
            yield started


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("heartflow-retrain")
    yield path
    LocalBackend(path).teardown(ENDPOINT)


@pytest.fixture(scope="module")
def first_table() -> pd.DataFrame:
    return resampled_heart_table(400, 21)


def _spec(home: Path, path: str, **data: Any) -> PipelineSpec:
    return PipelineSpec(
        home=str(home), model_name=MODEL, data=DataSpec(path=path, **data),
        sweep=SweepSpec(max_total_trials=4, max_concurrent_trials=2), deploy=DeploySpec(endpoint_name=ENDPOINT),
    )


def _serving(home: Path) -> tuple[str, str, dict[str, int]] | None:
    endpoint = LocalBackend(home).endpoint(ENDPOINT)
    return None if endpoint is None else (endpoint.deployment, endpoint.model_version, dict(endpoint.traffic))


def _versions(home: Path) -> list[str]:
    return sorted(str(v.version) for v in tracking.make_client(home).search_model_versions(f"name = '{MODEL}'"))


@pytest.fixture(scope="module")
def first_run(server: PrefectServer, home: Path, first_table: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> RunSummary:
    folder = tmp_path_factory.mktemp("incoming")
    write_table(first_table, folder / "2026-10.csv")
    summary = train_and_deploy(spec=_spec(home, str(folder)))
    assert isinstance(summary, RunSummary) and summary.decision.promote
    return summary


def test_a_rerun_on_the_same_data_changes_nothing(first_run: RunSummary, home: Path, azurite: str,
                                                   first_table: pd.DataFrame, monkeypatch: pytest.MonkeyPatch,
                                                   server: PrefectServer) -> None:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite)
    container = BlobServiceClient.from_connection_string(azurite).get_container_client("retrain")
    container.create_container()
    url = container.upload_blob("heart.csv", first_table.to_csv(index=False).encode()).url
    before = _serving(home)
    state = train_and_deploy(spec=_spec(home, url), return_state=True)
    assert state.is_completed(), state.message
    v1 = first_run.model
    assert state.message == f"no new data since {MODEL} v{v1.version} (sha256 {v1.data_sha256[:12]}); no deployment change"
    assert _versions(home) == [v1.version] and _serving(home) == before
    assert _events(server, "heartflow.data.unchanged")  # what an automation would react to


@pytest.fixture()
def served_folder(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    yield tmp_path, f"http://127.0.0.1:{http.server_address[1]}"
    http.shutdown()
    http.server_close()


def test_new_rows_with_a_shifted_column_show_drift_and_decay(first_run: RunSummary, home: Path, server: PrefectServer,
                                                             first_table: pd.DataFrame, served_folder: tuple[Path, str]) -> None:
    folder, base = served_folder
    grown = pd.concat([first_table, resampled_heart_table(300, 22, shift=90)], ignore_index=True)
    write_table(grown, folder / "grown.csv")
    state = train_and_deploy(spec=_spec(home, f"{base}/grown.csv"), return_state=True)
    # The candidate was evaluated through the endpoint and the gate decided, either way.
    entries = LocalBackend(home).history(ENDPOINT)
    assert entries[-1].model_version != first_run.model.version and entries[-1].event in {"promoted", "rejected"}
    assert entries[-1].accuracy is not None and entries[-1].champion_accuracy is not None
    gate = entries[-1].gate  # the promotion gate's figures travel with the entry, not only in its reason
    assert gate is not None and gate.rows > 0 and gate.champion_accuracy is not None and gate.p_value is not None
    assert f"{gate.rows} holdout rows" in entries[-1].reason
    assert state.is_completed() == (entries[-1].event == "promoted")
    # Decay: champion v1 scored on the 300 rows it never saw, recorded on its MLflow run.
    client = tracking.make_client(home)
    decay = client.get_metric_history(first_run.model.source_run_id, DECAY_METRIC)
    assert len(decay) == 1 and 0.0 <= decay[0].value <= 1.0
    with SyncPrefectClient(api=server.api_url) as api:
        found = api.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    artifacts = {a.key: a for a in found if a.key}
    table = artifacts["data-drift"].data
    drift = {row["column"]: row for row in (json.loads(table) if isinstance(table, str) else table)}
    assert drift["chol"]["drifted"] is True and not any(r["drifted"] for c, r in drift.items() if c != "chol")
    assert "data:image/png;base64," in artifacts["data-drift-summary"].data
    assert "data:image/png;base64," in artifacts["champion-decay-plot"].data
    assert f"| URI | `{base}/grown.csv` |" in artifacts["data-source"].data and "| rows | 700 |" in artifacts["data-source"].data
    assert "data:image/png;base64," in artifacts["model-version"].data
    # What was read is recorded on the new version's tags.
    tags = client.get_model_version(MODEL, entries[-1].model_version).tags
    assert tags["heartflow.source_uri"] == f"{base}/grown.csv" and tags["heartflow.source_rows"] == "700"
    assert tags["heartflow.drift.drifted"] == "chol"


def _events(server: PrefectServer, name: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while True:
        answer = requests.post(f"{server.api_url}/events/filter",
                               json={"filter": {"event": {"name": [name]}}, "limit": 50}, timeout=10)
        answer.raise_for_status()
        found = answer.json()["events"]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_the_promotion_event_is_read_back(first_run: RunSummary, server: PrefectServer) -> None:
    promoted = [e for e in _events(server, "heartflow.model.promoted")
                if e["resource"]["heartflow.version"] == first_run.model.version]
    assert promoted, "no heartflow.model.promoted event for v1"
    resource = promoted[0]["resource"]
    assert resource["prefect.resource.id"] == f"heartflow.model.{MODEL}.{first_run.model.version}"
    assert resource["heartflow.endpoint"] == ENDPOINT and resource["heartflow.data.sha256"] == first_run.model.data_sha256
    roles = {r["prefect.resource.role"]: r["prefect.resource.id"] for r in promoted[0]["related"]
             if r.get("prefect.resource.role") in {"endpoint", "data"}}
    assert roles == {"endpoint": f"heartflow.endpoint.{ENDPOINT}", "data": f"heartflow.data.{first_run.model.data_sha256}"}
