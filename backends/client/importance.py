"""Permutation importance per original column, measured through the serving deployment.

The holdout's columns are shuffled one at a time *before* they reach the model, so a categorical column
that the pipeline one-hot encodes counts as one feature, as a person reads the table. Predictions come
from the backend's predictor (``Backend.predictor``: over HTTP for a local host and an Azure managed
endpoint), so the same code measures every backend. Seeded: the same holdout, seed and repeats give the
same numbers.

Its cost is bounded, whatever the table's size: at most ``MAX_IMPORTANCE_ROWS`` holdout rows (a seeded
uniform sample) are permuted, so a call sends at most rows x (1 + columns x repeats) rows. What the sample
costs in precision is stated per column: ``FeatureImportance.interval`` is the half-width of the 95 %
interval of the mean drop over the whole holdout (normal approximation over the rows' paired differences,
with the finite-population correction; 0 when every row was used and no sampling happened).
"""

from __future__ import annotations

import logging
import statistics
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from backends.base import Endpoint
from backends.errors import EvaluationError
from backends.client.evaluation import EndpointPredictor, Predictor

logger = logging.getLogger(__name__)

PredictFn = Callable[[pd.DataFrame], list[int]]

# 2,000 rows: a drop's 95 % interval is at most +-0.044 (1.96 x 1 / sqrt(2000), the widest a paired
# difference of 0/1 correctness allows) and usually far less; the cost stays that of a 2,000-row holdout.
MAX_IMPORTANCE_ROWS = 2000
Z_95 = 1.959964


@dataclass(frozen=True)
class FeatureImportance:
    """How much holdout accuracy drops when ``column`` is shuffled (one value per repeat)."""

    column: str
    mean_drop: float
    std_drop: float  # across repeats
    drops: tuple[float, ...]
    interval: float = 0.0  # half-width of the 95 % interval of mean_drop over the holdout (row sampling)


@dataclass(frozen=True)
class ImportanceResult:
    """Permutation importance of one served model on the holdout, most important column first."""

    model_name: str
    model_version: str
    deployment: str
    baseline_accuracy: float
    rows: int
    repeats: int
    seed: int
    features: tuple[FeatureImportance, ...]
    requests: int = 0
    holdout_rows: int = 0  # the holdout's size; ``rows`` of them were sampled (all when equal)

    @property
    def sampled(self) -> bool:
        return 0 < self.rows < self.holdout_rows

    def top(self, k: int = 3) -> tuple[str, ...]:
        """The ``k`` columns whose shuffling costs the most accuracy (only those that cost any)."""
        return tuple(f.column for f in self.features if f.mean_drop > 0)[:k]

    def rows_for_table(self) -> list[dict[str, Any]]:
        return [
            {
                "rank": rank,
                "column": f.column,
                "mean_accuracy_drop": round(f.mean_drop, 4),
                "std": round(f.std_drop, 4),
                "ci95_half_width": round(f.interval, 4),
                "min_drop": round(min(f.drops), 4),
                "max_drop": round(max(f.drops), 4),
                "repeats": len(f.drops),
            }
            for rank, f in enumerate(self.features, start=1)
        ]


def _accuracy(labels: np.ndarray, predictions: np.ndarray) -> float:
    return float(np.mean(labels == predictions))


def importance_sample(frame: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    """At most ``max_rows`` rows of ``frame``: all of them, or a seeded uniform sample without replacement
    (in the frame's order, so the same seed gives the same rows)."""
    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, not {max_rows}")
    if len(frame) <= max_rows:
        return frame
    chosen = np.sort(np.random.default_rng(seed).choice(len(frame), size=max_rows, replace=False))
    return frame.iloc[chosen]


def _interval(per_row: np.ndarray, population: int) -> float:
    """Half-width of the 95 % interval of the mean of ``per_row`` as an estimate of the mean over
    ``population`` rows (finite-population correction: 0 when the sample is the population)."""
    n = len(per_row)
    if n < 2 or population <= n:
        return 0.0
    correction = math.sqrt((population - n) / (population - 1))
    return float(Z_95 * np.std(per_row, ddof=1) / math.sqrt(n) * correction)


def permutation_importance(
    predict: PredictFn, features: pd.DataFrame, labels: Sequence[int], *, columns: Sequence[str] | None = None,
    repeats: int = 5, seed: int = 0, population: int | None = None,
) -> tuple[float, tuple[FeatureImportance, ...]]:
    """Baseline accuracy and the importance of each of ``columns`` (default: every column of ``features``).

    Every permuted copy is stacked into one frame and sent through ``predict`` once, so the number of
    requests depends on the predictor's batch size, not on the number of columns. ``population``: the
    number of rows ``features`` was sampled from (default: itself), for each drop's stated interval.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, not {repeats}")
    if features.empty:
        raise EvaluationError("the holdout is empty: no permutation importance to measure")
    columns = list(columns) if columns is not None else [str(c) for c in features.columns]
    missing = [c for c in columns if c not in features.columns]
    if missing:
        raise ValueError(f"columns {missing} are not in the holdout")
    truth = np.asarray(labels, dtype=int)
    n = len(features)
    rng = np.random.default_rng(seed)
    copies = [features.reset_index(drop=True)]
    for column in columns:
        for _ in range(repeats):
            shuffled = features.reset_index(drop=True).copy()
            shuffled[column] = shuffled[column].to_numpy()[rng.permutation(n)]
            copies.append(shuffled)
    stacked = pd.concat(copies, ignore_index=True)
    predictions = np.asarray(predict(stacked), dtype=int)
    if len(predictions) != len(stacked):
        raise EvaluationError(f"got {len(predictions)} predictions for {len(stacked)} rows")
    right = (predictions[:n] == truth).astype(float)
    baseline = float(right.mean())
    results = []
    for c, column in enumerate(columns):
        drops = []
        per_row = np.zeros(n)  # each row's correctness lost, averaged over the repeats
        for r in range(repeats):
            start = n * (1 + c * repeats + r)
            permuted = predictions[start : start + n]
            drops.append(baseline - _accuracy(truth, permuted))
            per_row += right - (permuted == truth)
        results.append(
            FeatureImportance(
                column=column, mean_drop=float(statistics.fmean(drops)),
                std_drop=float(statistics.pstdev(drops)) if len(drops) > 1 else 0.0, drops=tuple(drops),
                interval=_interval(per_row / repeats, population if population is not None else n),
            )
        )
    results.sort(key=lambda f: (-f.mean_drop, f.column))
    return baseline, tuple(results)


def measure_importance(
    predictor: Predictor, holdout: pd.DataFrame, target: str, *, model_name: str, model_version: str,
    deployment: str, repeats: int = 5, seed: int = 0, max_rows: int = MAX_IMPORTANCE_ROWS,
) -> ImportanceResult:
    """Permutation importance of the model behind ``predictor``, per original column of ``holdout``, on
    at most ``max_rows`` of its rows (each drop's interval says what the sample costs)."""
    sample = importance_sample(holdout, max_rows, seed)
    features = sample.drop(columns=[target])
    baseline, importances = permutation_importance(
        predictor, features, sample[target].astype(int).tolist(), repeats=repeats, seed=seed,
        population=len(holdout),
    )
    logger.info(
        "permutation importance of %s v%s through %s: %d columns x %d repeats on %d of %d holdout rows in %d "
        "request(s)", model_name, model_version, deployment, len(importances), repeats, len(sample), len(holdout),
        predictor.requests,
    )
    return ImportanceResult(
        model_name=model_name, model_version=model_version, deployment=deployment,
        baseline_accuracy=baseline, rows=len(sample), repeats=repeats, seed=seed, features=importances,
        requests=predictor.requests, holdout_rows=len(holdout),
    )


def endpoint_importance(
    endpoint: Endpoint, key: str, holdout: pd.DataFrame, target: str, *, model_name: str, model_version: str,
    deployment: str | None = None, repeats: int = 5, seed: int = 0, batch_size: int = 500,
    max_rows: int = MAX_IMPORTANCE_ROWS,
) -> ImportanceResult:
    """``measure_importance`` through a live endpoint over HTTP."""
    predictor = EndpointPredictor(endpoint, key, deployment=deployment, batch_size=batch_size)
    return measure_importance(predictor, holdout, target, model_name=model_name, model_version=model_version,
                              deployment=predictor.deployment, repeats=repeats, seed=seed, max_rows=max_rows)
