"""Permutation importance (pure, with a predictor standing in for the endpoint) and the plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backends.base import DataRef, EvalReport, SweepResult, TrialResult, TrialStatus
from backends.client.importance import FeatureImportance, permutation_importance
from backends.reporting import plots


def _frame(rows: int = 60, seed: int = 0) -> tuple[pd.DataFrame, list[int]]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"signal": rng.integers(0, 2, rows), "noise": rng.normal(size=rows), "cp": rng.integers(0, 4, rows)})
    return frame, frame["signal"].tolist()


def _by_signal(frame: pd.DataFrame) -> list[int]:
    return frame["signal"].astype(int).tolist()


def test_only_the_column_the_model_uses_matters() -> None:
    frame, labels = _frame()
    baseline, importances = permutation_importance(_by_signal, frame, labels, repeats=4, seed=3)
    assert baseline == 1.0
    assert [f.column for f in importances][0] == "signal"
    by_column = {f.column: f for f in importances}
    assert by_column["signal"].mean_drop > 0.3
    assert by_column["noise"].mean_drop == by_column["cp"].mean_drop == 0.0
    assert len(by_column["signal"].drops) == 4


def test_one_row_per_original_column_and_one_predict_call() -> None:
    frame, labels = _frame()
    calls: list[int] = []

    def predict(batch: pd.DataFrame) -> list[int]:
        calls.append(len(batch))
        return _by_signal(batch)

    _, importances = permutation_importance(predict, frame, labels, repeats=2, seed=0)
    assert sorted(f.column for f in importances) == ["cp", "noise", "signal"]
    assert calls == [len(frame) * (1 + 3 * 2)]


def test_the_same_seed_gives_the_same_numbers() -> None:
    frame, labels = _frame()
    noisy = lambda batch: [int(s) if n > -0.5 else 1 - int(s) for s, n in zip(batch["signal"], batch["noise"], strict=True)]  # noqa: E731
    first = permutation_importance(noisy, frame, labels, repeats=3, seed=11)
    assert first == permutation_importance(noisy, frame, labels, repeats=3, seed=11)
    assert first != permutation_importance(noisy, frame, labels, repeats=3, seed=12)


def test_bad_arguments_are_refused() -> None:
    frame, labels = _frame()
    with pytest.raises(ValueError, match="repeats"):
        permutation_importance(_by_signal, frame, labels, repeats=0)
    with pytest.raises(ValueError, match="not in the holdout"):
        permutation_importance(_by_signal, frame, labels, columns=["missing"])


def _sweep() -> SweepResult:
    trials = tuple(
        TrialResult(i, f"run{i}", {"n_estimators": 10 * (i + 1), "criterion": ["gini", "entropy"][i % 2], "max_depth": None if i == 2 else 4},
                    {"accuracy": 0.7 + i / 100}, TrialStatus.COMPLETED, 1.0)
        for i in range(4)
    ) + (TrialResult(4, "run4", {"n_estimators": 5, "criterion": "gini", "max_depth": 4}, {}, TrialStatus.FAILED, 0.0, "boom"),)
    return SweepResult("sweep1", "accuracy", "maximize", trials, trials[3], DataRef("file:///x", "a" * 64, 10))


def test_the_plots_are_written_as_png(tmp_path: Path) -> None:
    report = EvalReport("ep", "blue", "1", 31, (0, 1), (0, 1), 0.77, "", {}, ((8, 6), (1, 16)), 1, 5.0)
    importance = [FeatureImportance("caa", 0.09, 0.02, (0.07, 0.11)), FeatureImportance("chol", -0.01, 0.0, (-0.01, -0.01))]
    files = [
        plots.save_png(plots.sweep_figure(_sweep()), tmp_path / "sweep.png"),
        plots.save_png(plots.confusion_figure(report), tmp_path / "nested" / "confusion.png"),
        plots.save_png(plots.importance_figure(importance, "v1"), tmp_path / "importance.png"),
    ]
    for file in files:
        assert file.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and file.stat().st_size > 5_000
