"""Permutation importance per original column, measured through the live endpoint.

The holdout's columns are shuffled one at a time *before* they reach the model, so a categorical column
that the pipeline one-hot encodes counts as one feature, as a person reads the table. Predictions come
from the endpoint over HTTP (``backends.client.evaluation.call_endpoint``), so the same code measures a local
host and an Azure managed endpoint. Seeded: the same holdout, seed and repeats give the same numbers.
"""

from __future__ import annotations

import logging
import statistics
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import requests

from backends.base import Endpoint
from backends.errors import EvaluationError
from backends.client.evaluation import EVAL_ID_PREFIX, WITH_CLASSES, call_endpoint, predictions_of, records_of

logger = logging.getLogger(__name__)

Predictor = Callable[[pd.DataFrame], list[int]]


@dataclass(frozen=True)
class FeatureImportance:
    """How much holdout accuracy drops when ``column`` is shuffled (one value per repeat)."""

    column: str
    mean_drop: float
    std_drop: float
    drops: tuple[float, ...]


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
                "min_drop": round(min(f.drops), 4),
                "max_drop": round(max(f.drops), 4),
                "repeats": len(f.drops),
            }
            for rank, f in enumerate(self.features, start=1)
        ]


def _accuracy(labels: np.ndarray, predictions: np.ndarray) -> float:
    return float(np.mean(labels == predictions))


def permutation_importance(
    predict: Predictor, features: pd.DataFrame, labels: Sequence[int], *, columns: Sequence[str] | None = None,
    repeats: int = 5, seed: int = 0,
) -> tuple[float, tuple[FeatureImportance, ...]]:
    """Baseline accuracy and the importance of each of ``columns`` (default: every column of ``features``).

    Every permuted copy is stacked into one frame and sent through ``predict`` once, so the number of
    requests depends on the predictor's batch size, not on the number of columns.
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
    baseline = _accuracy(truth, predictions[:n])
    results = []
    for c, column in enumerate(columns):
        drops = []
        for r in range(repeats):
            start = n * (1 + c * repeats + r)
            drops.append(baseline - _accuracy(truth, predictions[start : start + n]))
        results.append(
            FeatureImportance(
                column=column, mean_drop=float(statistics.fmean(drops)),
                std_drop=float(statistics.pstdev(drops)) if len(drops) > 1 else 0.0, drops=tuple(drops),
            )
        )
    results.sort(key=lambda f: (-f.mean_drop, f.column))
    return baseline, tuple(results)


class EndpointPredictor:
    """Predictions of one deployment of a live endpoint, in batches of at most ``batch_size`` rows."""

    def __init__(self, endpoint: Endpoint, key: str, *, deployment: str | None = None, batch_size: int = 500) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self.endpoint = endpoint
        self.deployment = deployment or endpoint.deployment
        self.batch_size = batch_size
        self.requests = 0
        self._key = key

    def __call__(self, frame: pd.DataFrame) -> list[int]:
        predictions: list[int] = []
        try:
            with requests.Session() as session:
                for start in range(0, len(frame), self.batch_size):
                    batch = records_of(frame.iloc[start : start + self.batch_size])
                    answer = call_endpoint(session, self.endpoint, self._key, batch, deployment=self.deployment, extra=WITH_CLASSES,
                                           request_id=f"{EVAL_ID_PREFIX}importance-{uuid.uuid4().hex[:12]}")
                    self.requests += 1
                    predictions.extend(predictions_of(answer, len(batch), self.endpoint))
        except requests.RequestException as exc:
            raise EvaluationError(
                f"endpoint {self.endpoint.name} at {self.endpoint.scoring_uri} did not answer: {exc}"
            ) from exc
        return predictions


def endpoint_importance(
    endpoint: Endpoint, key: str, holdout: pd.DataFrame, target: str, *, model_name: str, model_version: str,
    deployment: str | None = None, repeats: int = 5, seed: int = 0, batch_size: int = 500,
) -> ImportanceResult:
    """Permutation importance of the model behind ``deployment``, per original column of ``holdout``."""
    predictor = EndpointPredictor(endpoint, key, deployment=deployment, batch_size=batch_size)
    features = holdout.drop(columns=[target])
    baseline, importances = permutation_importance(
        predictor, features, holdout[target].astype(int).tolist(), repeats=repeats, seed=seed
    )
    logger.info(
        "permutation importance of %s v%s through %s: %d columns x %d repeats in %d request(s)",
        model_name, model_version, predictor.deployment, len(importances), repeats, predictor.requests,
    )
    return ImportanceResult(
        model_name=model_name, model_version=model_version, deployment=predictor.deployment,
        baseline_accuracy=baseline, rows=len(holdout), repeats=repeats, seed=seed, features=importances,
        requests=predictor.requests,
    )
