"""The CLI's help, `schema infer` and its one-line refusal of a bad table, through typer's runner in this process (a
subprocess would prove nothing more: the same code runs; the real `heartflow run` is the e2e tier's)."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from backends.domain.dataset import prepare_data
from flows.cli import app
from tests.tables import TARGET, user_table, write_table

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
