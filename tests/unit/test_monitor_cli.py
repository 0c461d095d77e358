"""`heartflow monitor` and `heartflow feedback` refuse what they cannot do with one line; the text summary."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from flows.cli import app
from flows.cli_monitor import render

runner = CliRunner()


def test_monitor_of_an_endpoint_never_deployed_says_so(tmp_path: Path) -> None:
    result = runner.invoke(app, ["monitor", "--home", str(tmp_path), "--endpoint-name", "never-deployed"])
    assert result.exit_code == 1
    assert "no local endpoint never-deployed" in result.output and "Traceback" not in result.output


def test_monitor_rejects_a_bad_window_and_azure_without_a_workspace(tmp_path: Path, clean_env: Path) -> None:
    bad = runner.invoke(app, ["monitor", "--home", str(tmp_path), "--since", "last week"])
    assert bad.exit_code == 1 and "--since 'last week'" in bad.output
    azure = runner.invoke(app, ["monitor", "--backend", "azure"])  # reads the data collector: needs the workspace
    assert azure.exit_code == 1 and "AZURE_SUBSCRIPTION_ID" in azure.output and "Traceback" not in azure.output
    labels = tmp_path / "labels.csv"
    labels.write_text("request_id,label\nabc,1\n")
    feedback = runner.invoke(app, ["feedback", str(labels), "--backend", "azure"])
    assert feedback.exit_code == 1 and "AZURE_SUBSCRIPTION_ID" in feedback.output


def test_feedback_file_without_the_columns_is_refused(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("id,outcome\nabc,1\n")
    result = runner.invoke(app, ["feedback", str(labels), "--home", str(tmp_path)])  # the file is read first
    assert result.exit_code == 1 and "request_id and label" in result.output


def test_render_names_every_figure() -> None:
    text = render({
        "endpoint": "ep", "model": "m", "model_version": "2", "since": "a", "until": "b", "requests": 300,
        "scored_rows": 300, "errors": {"400": 2}, "latency_ms": {"p50": 1.0, "p99": 9.0}, "drifted": ["chol"],
        "prediction_drift": {"drifted": False, "positive_rate": 0.5, "reference_positive_rate": 0.45, "score_psi": 0.02},
        "realized": {"metric": "accuracy", "value": 0.8, "labelled": 100, "interval_95": [0.72, 0.87]},
        "estimated": {"metric": "accuracy", "value": 0.78, "rows": 200}, "degraded": False, "degraded_reason": "fine",
        "rejected": {"bad value in chol": 2}, "unknown_labels": 1, "notes": [],
    })
    for part in ("300 request(s)", "chol", "accuracy 0.8 on 100 labelled", "0.78 on 200", "bad value in chol",
                 "labels with no captured prediction: 1"):
        assert part in text
