"""Candidate against champion on the same holdout rows, by the run's metric when it is not accuracy
(accuracy has McNemar's exact test, ``backends.domain.gate_stats``): a paired stratified bootstrap of
the difference, both models scored on the same resampled rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from backends.domain.baseline import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, resampled_metric
from backends.domain.metrics import better, metric_value


@dataclass(frozen=True)
class MetricComparison:
    metric: str
    n: int
    candidate: float
    champion: float
    difference: float  # how much the candidate is better (log loss: champion - candidate)
    low: float  # 95 % bootstrap interval of the difference
    high: float
    p_worse: float  # one-sided: the candidate is worse


def paired_metric_comparison(
    metric: str, labels: Sequence[int], candidate: tuple[Sequence[int], Sequence[float]],
    champion: tuple[Sequence[int], Sequence[float]], *, resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> MetricComparison:
    """``candidate`` and ``champion``: (predictions, positive-class probabilities) aligned with ``labels``."""
    y = np.asarray(labels, dtype=int)
    c_pred, c_score = np.asarray(candidate[0], dtype=int), np.asarray(candidate[1], dtype=np.float64)
    h_pred, h_score = np.asarray(champion[0], dtype=int), np.asarray(champion[1], dtype=np.float64)
    cand = metric_value(metric, y, c_pred, c_score)
    champ = metric_value(metric, y, h_pred, h_score)
    difference = better(metric, cand, champ)
    positives, negatives = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    if not len(positives) or not len(negatives):
        return MetricComparison(metric, len(y), cand, champ, difference, difference, difference, 1.0)
    rng = np.random.default_rng(seed)
    rows = np.concatenate([rng.choice(positives, (resamples, len(positives))),
                           rng.choice(negatives, (resamples, len(negatives)))], axis=1)
    diffs = better(metric, resampled_metric(metric, y, c_pred, c_score, rows),  # type: ignore[arg-type]
                   resampled_metric(metric, y, h_pred, h_score, rows))  # type: ignore[arg-type]
    p_worse = (1 + int(np.sum(np.asarray(diffs) >= 0))) / (1 + resamples)
    low, high = np.quantile(diffs, [0.025, 0.975])
    return MetricComparison(metric, len(y), cand, champ, difference, float(low), float(high), float(p_worse))
