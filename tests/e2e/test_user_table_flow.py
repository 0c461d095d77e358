"""The whole flow on tables users bring (generated here): text categories, Presence/Absence labels, empty
cells, an ID column, names with spaces and dots; then 10,000 rows by 25 columns. Real MLflow, worker
processes, the HTTP endpoint on 127.0.0.1 and Prefect's temporary API, as test_local_flow.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
import yaml

from backends.client.evaluation import records_of
from backends.local import tracking
from backends.local.backend import LocalBackend
from backends.domain.spec import DataSpec, DeploySpec, PipelineSpec, SweepSpec, family_search_space
from flows.train_and_deploy import train_and_deploy
from tests.tables import LABELS, TARGET, user_table, write_table

ENDPOINT = "tables-endpoint"
MODEL = "table-classifier"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("heartflow-tables")
    yield path
    LocalBackend(path).teardown(ENDPOINT)
    LocalBackend(path).teardown(ENDPOINT + "-wide")


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_table(user_table(rows=600, seed=3), tmp_path_factory.mktemp("data") / "my patients.csv")


def _key(home: Path, endpoint: str) -> str:
    return (home / "endpoints" / endpoint / "key").read_text().strip()


@pytest.fixture(scope="module")
def run(home: Path, table: Path):
    spec = PipelineSpec(
        home=str(home), model_name=MODEL, data=DataSpec(path=str(table), target=TARGET),
        sweep=SweepSpec(search_space=family_search_space(["rf", "hgb", "logreg"]), max_total_trials=6, max_concurrent_trials=2),
        deploy=DeploySpec(endpoint_name=ENDPOINT),
    )
    return train_and_deploy(spec=spec)


def test_the_endpoint_answers_with_the_tables_labels(home: Path, table: Path, run) -> None:
    import pandas as pd

    raw = pd.read_csv(table, dtype=str, keep_default_na=False).head(8)
    records = records_of(raw.drop(columns=[TARGET, "Patient ID"]))
    for record in records:  # as a client would send them: numbers as numbers, empty cells as null
        record["Age"] = int(record["Age"])
        record["Cholesterol mg/dl"] = float(record["Cholesterol mg/dl"]) if record["Cholesterol mg/dl"] else None
        record["Chest.Pain Type"] = record["Chest.Pain Type"] or None
    headers = {"Authorization": f"Bearer {_key(home, ENDPOINT)}"}
    answer = requests.post(run.endpoint.scoring_uri, json={"data": records, "return_probabilities": True}, headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["classes"] == list(LABELS) and set(body["predictions"]) <= set(LABELS)
    bad = requests.post(run.endpoint.scoring_uri, json={"data": [dict(records[0], Age="old")]}, headers=headers, timeout=30)
    assert bad.status_code == 400 and "Age" in bad.json()["error"]
    openapi = requests.get(run.endpoint.scoring_uri.rsplit("/", 1)[0] + "/openapi.json", timeout=30).json()
    assert "Chest.Pain Type" in json.dumps(openapi)


def _about_a_tenth(held_out: int, rows: int) -> bool:
    """The holdout is chosen by a hash of each row, so it is a tenth in expectation: within 4 standard deviations."""
    return abs(held_out - rows * 0.1) <= 4 * (rows * 0.1 * 0.9) ** 0.5


def test_the_registered_model_records_its_schema_and_the_report_is_sound(home: Path, run) -> None:
    assert _about_a_tenth(run.report.rows, 600) and run.report.accuracy > 0.7
    assert all(label in run.report.report_text for label in LABELS)  # the report speaks the data's labels
    from backends.reporting.reports import leaderboard_rows

    families = {t.params.get("model") for t in run.sweep.trials}
    assert len(families) >= 2 and families <= {"rf", "hgb", "logreg"}  # 6 seeded random draws over 3 families
    assert all(row["model"] in families for row in leaderboard_rows(run.sweep))  # the leaderboard shows it
    client = tracking.make_client(home)
    version = client.get_model_version(MODEL, run.model.version)
    model_dir = tracking.local_path(client.get_run(version.run_id).info.artifact_uri) / "model"
    meta = yaml.safe_load((model_dir / "MLmodel").read_text())["metadata"]
    assert meta["heartflow_schema"]["labels"] == list(LABELS)
    assert meta["heartflow_schema"]["drop"] == ["Patient ID"]
    assert set(meta["heartflow_imputed_cells"]) == {"Cholesterol mg/dl", "Chest.Pain Type"}


@pytest.mark.timeout(1800)  # 10,000 rows, 5-fold forests: minutes on a shared 2-core machine
def test_ten_thousand_rows_by_twenty_five_columns_run_the_default_flow(home: Path, tmp_path: Path) -> None:
    frame = user_table(rows=10_000, seed=5, extra_numeric=11, extra_categorical=6)
    assert frame.shape == (10_000, 25)
    path = write_table(frame, tmp_path / "wide.csv")
    spec = PipelineSpec(home=str(home), model_name=MODEL + "-wide", data=DataSpec(path=str(path), target=TARGET),
                        sweep=SweepSpec(max_total_trials=2, max_concurrent_trials=2),
                        deploy=DeploySpec(endpoint_name=ENDPOINT + "-wide"))
    summary = train_and_deploy(spec=spec)
    assert _about_a_tenth(summary.report.rows, 10_000) and summary.report.accuracy > 0.7
    assert summary.decision.promote


def test_schema_show_gives_back_the_schema_to_retrain_with(home: Path, run) -> None:
    from typer.testing import CliRunner

    from backends.domain.dataset import check_schema_mapping
    from flows.cli import app

    result = CliRunner().invoke(app, ["schema", "show", "--home", str(home), "--model-name", MODEL])
    assert result.exit_code == 0, result.output
    mapping = yaml.safe_load(result.output)
    check_schema_mapping(mapping, "shown")
    assert mapping["target"] == TARGET and mapping["drop"] == ["Patient ID"] and mapping["missing"] == "impute"
