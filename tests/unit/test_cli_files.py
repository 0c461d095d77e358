"""The CLI's file options: --spec (the whole PipelineSpec, as a deployment's parameters), --search-space,
`schema infer`; each refused file gets the same one-line message the flow's parameter validation gives."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from flows.cli import app
from tests.tables import TARGET, user_table, write_table

runner = CliRunner()


def test_schema_infer_prints_yaml_and_refuses_an_unknown_target(tmp_path: Path) -> None:
    table = write_table(user_table(rows=80), tmp_path / "t.csv")
    result = runner.invoke(app, ["schema", "infer", str(table), "--target", TARGET])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.output)["categorical"]
    result = runner.invoke(app, ["schema", "infer", str(table), "--target", "disease"])
    assert result.exit_code == 1 and "target column 'disease' is not in the table" in result.output


def test_a_bad_spec_file_gets_the_flow_parameters_message(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"spec": {"sweep": {"max_total_trials": 5000}, "deploy": {"endpoint_name": "x"}}}))
    result = runner.invoke(app, ["run", "--spec", str(spec)])
    assert result.exit_code == 1
    assert "invalid settings: sweep.max_total_trials" in result.output and "deploy.endpoint_name" in result.output
    result = runner.invoke(app, ["run", "--spec", str(spec), "--trials", "3"])
    assert result.exit_code == 1 and "put --trials in" in result.output


def test_a_bad_search_space_file_is_refused_before_anything_runs(tmp_path: Path) -> None:
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"model": {"type": "choice", "values": ["rf", "svm"]}}))
    result = runner.invoke(app, ["run", "--search-space", str(space)])
    assert result.exit_code == 1 and "search_space.model must be a choice among rf, hgb, logreg" in result.output
    space.write_text(json.dumps({"n_estimators": {"type": "choice"}}))
    result = runner.invoke(app, ["run", "--search-space", str(space)])
    assert result.exit_code == 1 and "invalid settings: --search-space (sweep.search_space.n_estimators.choice.values): Field required" in result.output


def test_a_table_without_schema_or_target_says_what_to_pass(tmp_path: Path) -> None:
    table = write_table(user_table(rows=80), tmp_path / "t.csv")
    result = runner.invoke(app, ["run", "--data", str(table), "--home", str(tmp_path / "home")])
    # Without --schema or --target a file is read as the tutorial's heart table, and the refusal says how to
    # describe another one.
    assert result.exit_code == 1 and "use --schema or --target to describe another table" in result.output
