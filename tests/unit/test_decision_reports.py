"""What people read of a decision: the metric beside its no-skill baseline, the threshold, the comparison on
the training folds and the calibration (Brier score, reliability plot) in the reports and the history line."""

from __future__ import annotations

import numpy as np

from backends.base import DataRef, EvalReport, ModelVersion, SweepResult, TrialResult, TrialStatus
from backends.domain.calibration import calibration
from backends.domain.cv_gate import compare
from backends.domain.selection import decide_gate
from backends.reporting import plots, reports


def _report(version: str, flip: int, seed: int = 0) -> EvalReport:
    rng = np.random.default_rng(seed)
    labels = (rng.random(80) < 0.4).astype(int)
    scores = np.clip(0.6 * labels + 0.4 * rng.random(80), 0, 1)
    predictions = (scores > 0.5).astype(int)
    predictions[:flip] = 1 - predictions[:flip]
    return EvalReport(endpoint="e", deployment="green", model_version=version, rows=80,
                      labels=tuple(labels.tolist()), predictions=tuple(predictions.tolist()),
                      accuracy=float(np.mean(predictions == labels)), report_text="", report={},
                      confusion_matrix=((0, 0), (0, 0)), requests=1, latency_ms_p50=1.0,
                      scores=tuple(scores.tolist()))


def test_the_reports_put_the_metric_beside_its_baseline_and_show_threshold_folds_and_calibration() -> None:
    candidate, champion = _report("2", flip=3), _report("1", flip=0)
    cv = compare("roc_auc", [0.90, 0.91, 0.89], [0.88, 0.90, 0.88], test_rows=100, train_rows=200)
    decision = decide_gate(candidate, champion, rule="paired", metric="roc_auc", cv=cv)
    text = reports.classification_markdown(candidate, decision=decision)
    assert f"Holdout roc_auc **{decision.candidate_value:.4f}** beats the no-skill baseline 0.5000" in text
    assert "Brier score" in text
    trial = TrialResult(1, "run1", {"n_estimators": 10}, {"roc_auc": 0.9, "threshold": 0.27}, TrialStatus.COMPLETED)
    sweep = SweepResult("s", "roc_auc", "maximize", (trial,), trial, DataRef("file:///x", "a" * 64, 10))
    model = ModelVersion("m", "2", "run1", "s", "roc_auc", 0.9, "a" * 64, "models:/m/2")
    card = reports.model_markdown(model, sweep, decision)
    assert "| decision threshold | 0.2700 (stored with the model" in card
    assert "on the training folds | 3 folds of ~100 rows" in card
    summary = reports.gate_summary(decision.figures())
    assert "roc_auc" in summary and "vs no-skill 0.5000" in summary and "training folds: 3" in summary


def test_the_reliability_plot_renders_as_an_inline_png() -> None:
    report = _report("1", flip=0)
    found = calibration(report.labels, report.scores)
    assert found is not None
    uri = plots.png_data_uri(plots.reliability_figure(found, "v1"))
    assert uri.startswith("data:image/png;base64,") and len(uri) > 1000
