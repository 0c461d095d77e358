"""The CLI's help, `schema infer` and its one-line refusal of a bad table, through typer's runner in this process (a
subprocess would prove nothing more: the same code runs; the real `heartflow run` is the e2e tier's)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from backends.domain.dataset import prepare_data
from backends.domain.spec import DataSpec
from flows.cli import app
from tests.flow.bed import ENDPOINT, MODEL, FlowBed
from tests.tables import LABELS, TARGET, user_table, write_table

runner = CliRunner()


def test_cli_help_documents_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("run", "serve", "upload", "history", "rollback", "teardown", "provision", "status"):
        assert command in result.stdout
    run_help = runner.invoke(app, ["run", "--help"])
    for flag in ("--backend", "--home", "--data", "--schema", "--trials", "--concurrency", "--sampling", "--seed", "--stop-endpoint"):
        assert flag in run_help.stdout


def test_bad_data_fails_in_one_line_with_nothing_tracked(prefect_harness: None, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    prepare_data(None, None, 0.1).train.drop(columns=["chol"]).to_csv(bad, index=False)
    home = tmp_path / "home"
    result = runner.invoke(app, ["run", "--home", str(home), "--data", str(bad)])
    assert result.exit_code == 1
    assert "column 'chol': is in the schema but not in the file" in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.count("error:") == 1 and "1 problem(s) in the table" in result.stderr  # one error, every problem
    assert not (home / "mlflow.db").exists() and not (home / "data").exists()


def test_schema_infer_prints_a_commented_schema(tmp_path: Path) -> None:
    table = write_table(user_table(rows=600, seed=3), tmp_path / "my patients.csv")
    result = runner.invoke(app, ["schema", "infer", str(table), "--target", TARGET])
    assert result.exit_code == 0, result.output
    schema = yaml.safe_load(result.stdout)
    assert schema["target"] == TARGET and schema["positive_class"] == "Presence" and schema["drop"] == ["Patient ID"]
    assert "# ID-like" in result.stdout


def test_a_run_reads_its_data_once_and_the_flow_runs_on_those_rows(bed: FlowBed, first_table: pd.DataFrame,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from backends.domain import sources
    from flows import early_server

    reads: list[str | None] = []
    real = sources.load_spec_data

    def counted(spec: DataSpec, **kwargs: Any) -> Any:
        reads.append(spec.path)
        return real(spec, **kwargs)

    monkeypatch.setattr(sources, "load_spec_data", counted)
    monkeypatch.setattr("tasks.watch.load_spec_data", counted)
    monkeypatch.setattr(early_server, "start_temporary_server_early", early_server.EarlyServer)  # the harness serves
    path = bed.table(first_table, "clinic")
    result = runner.invoke(app, ["run", "--home", str(bed.folder / "home"), "--data", path, "--target", TARGET,
                                 "--positive-class", LABELS[1], "--trials", "2", "--sampling", "grid", "--concurrency", "1",
                                 "--validation", "split", "--model-name", MODEL, "--endpoint-name", ENDPOINT])
    assert result.exit_code == 0, result.output
    assert reads == [path]  # the CLI's read; the flow published it without reading the file again
    champion = bed.backend.champion(MODEL)
    assert champion is not None and champion.data_sha256 == sources.load_spec_data(DataSpec(path=path, target=TARGET, positive_class=LABELS[1])).prepared.train_sha256


def test_the_flow_stores_where_handed_rows_came_from_not_the_rows(bed: FlowBed, first_table: pd.DataFrame,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect import get_client

    from backends.domain.sources import load_spec_data
    from flows.train_and_deploy import train_and_deploy
    from tasks.watch import CheckedData

    spec = bed.spec(bed.table(first_table, "handed"))
    loaded = load_spec_data(spec.data)
    monkeypatch.setattr("tasks.watch.load_spec_data", lambda *a, **k: pytest.fail("the flow read the data again"))
    state = train_and_deploy(spec=spec, data=CheckedData.of(spec.data, loaded), return_state=True)
    assert state.is_completed(), state.message
    assert state.result().model.data_sha256 == loaded.prepared.train_sha256
    with get_client(sync_client=True) as client:
        stored = client.read_flow_run(state.state_details.flow_run_id).parameters["data"]
    assert stored == {"spec": spec.data.model_dump(mode="json"), "uri": loaded.source.uri,
                      "sha256": loaded.source.sha256, "train_sha256": loaded.prepared.train_sha256}
    other = spec.model_copy(update={"data": spec.data.model_copy(update={"force": True})})
    refused = train_and_deploy(spec=other, data=CheckedData.of(spec.data, loaded), return_state=True)
    assert refused.is_failed() and "was read for" in refused.message
