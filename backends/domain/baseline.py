"""The no-skill floor: a model is promoted only if it beats, on the holdout, what a model that learned
nothing scores there (``backends.domain.metrics.no_skill_value``), by a one-sided test at the gate's alpha.

The test fits the metric:

- accuracy: McNemar's exact test against the constant predictor that always answers the majority class,
  on the same rows (the rows where exactly one of the two is right; one-sided: the model is better);
- every other metric: a stratified bootstrap of the holdout (positives and negatives resampled apart, so
  each resample keeps the prevalence and with it the baseline); p is the share of resamples where the
  model does not beat the baseline ((1 + count) / (1 + resamples), never 0).

A floor that is not beaten ends the run: ``no model beats the no-skill baseline: <metric> <value> vs
<baseline> (<n> rows, p=<p>)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest, rankdata

from backends.domain.metrics import better, goal_of, metric_value, no_skill_value
from src.metrics import PROBABILITY_CLIP, THRESHOLD_FREE
from backends.results import EvalReport

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 17


@dataclass(frozen=True)
class FloorCheck:
    """A model's metric on the holdout beside its no-skill baseline, and the one-sided test."""

    metric: str
    value: float
    baseline: float
    rows: int
    p_value: float  # one-sided: the model is no better than the baseline
    alpha: float
    test: str  # "mcnemar-exact vs majority class" or "stratified bootstrap (N resamples)"

    @property
    def beats(self) -> bool:
        return better(self.metric, self.value, self.baseline) > 0 and self.p_value < self.alpha

    def reason(self) -> str:
        return (f"no model beats the no-skill baseline: {self.metric} {self.value:.4f} vs {self.baseline:.4f} "
                f"({self.rows} rows, p={self.p_value:.3g})")

    def summary(self) -> str:
        verdict = "beats" if self.beats else "does not beat"
        return (f"{self.metric} {self.value:.4f} {verdict} the no-skill baseline {self.baseline:.4f} "
                f"({self.rows} rows, one-sided p={self.p_value:.3g} at alpha {self.alpha}, {self.test})")


def _mcnemar_vs_majority(labels: np.ndarray, predictions: np.ndarray) -> float:
    majority = int(labels.mean() >= 0.5) if labels.mean() != 0.5 else 0
    model_right = predictions == labels
    constant_right = labels == majority
    only_model = int(np.sum(model_right & ~constant_right))
    only_constant = int(np.sum(constant_right & ~model_right))
    if only_model + only_constant == 0:
        return 1.0
    return float(binomtest(only_model, only_model + only_constant, 0.5, alternative="greater").pvalue)


def resampled_metric(metric: str, labels: np.ndarray, predictions: np.ndarray, scores: np.ndarray,
                     rows: np.ndarray) -> np.ndarray:
    """``metric`` on each resample at once (``rows``: one resample of row indices per line); the same
    values scikit-learn gives, vectorised, since a bootstrap of thousands of resamples one sklearn call at
    a time costs tens of seconds."""
    y = labels[rows].astype(np.float64)
    positives = y.sum(axis=1)
    negatives = y.shape[1] - positives
    if metric in {"balanced_accuracy", "f1"}:
        p = predictions[rows].astype(np.float64)
        tp, fp = (p * y).sum(axis=1), (p * (1 - y)).sum(axis=1)
        if metric == "f1":
            return 2 * tp / np.maximum(2 * tp + fp + (positives - tp), 1)
        return 0.5 * (tp / np.maximum(positives, 1) + (negatives - fp) / np.maximum(negatives, 1))
    s = np.clip(scores[rows], PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
    if metric == "log_loss":
        return -(y * np.log(s) + (1 - y) * np.log(1 - s)).mean(axis=1)
    if metric == "roc_auc":  # Mann-Whitney U with average ranks for ties
        ranks = rankdata(s, axis=1)
        return ((ranks * y).sum(axis=1) - positives * (positives + 1) / 2) / np.maximum(positives * negatives, 1)
    if metric == "average_precision":  # precision at each positive's tie group end, averaged (sklearn's step rule)
        order = np.argsort(-s, axis=1, kind="stable")
        s_sorted, y_sorted = np.take_along_axis(s, order, 1), np.take_along_axis(y, order, 1)
        n = s.shape[1]
        index = np.arange(n)
        last = np.ones_like(s_sorted, dtype=bool)
        last[:, :-1] = s_sorted[:, :-1] != s_sorted[:, 1:]
        precision = np.cumsum(y_sorted, axis=1) / (index + 1)
        group_end = np.minimum.accumulate(np.where(last, index, n)[:, ::-1], axis=1)[:, ::-1]
        return (y_sorted * np.take_along_axis(precision, group_end, 1)).sum(axis=1) / np.maximum(positives, 1)
    raise ValueError(f"no bootstrap for metric {metric!r}")


def _bootstrap(metric: str, labels: np.ndarray, predictions: np.ndarray, scores: np.ndarray, baseline: float,
               resamples: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    positives, negatives = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    not_better = 0
    chunk = max(1, 2_000_000 // max(len(labels), 1))  # bounds memory on a large holdout
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        rows = np.concatenate([rng.choice(positives, (size, len(positives))),
                               rng.choice(negatives, (size, len(negatives)))], axis=1)
        values = resampled_metric(metric, labels, predictions, scores, rows)
        not_better += int(np.sum(values <= baseline if goal_of(metric) == "maximize" else values >= baseline))
    return (1 + not_better) / (1 + resamples)


def check_floor(
    metric: str, labels: Sequence[int], predictions: Sequence[int], scores: Sequence[float] = (),
    *, alpha: float = 0.05, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
) -> FloorCheck:
    """Whether the answers beat ``metric``'s no-skill baseline on these rows (see the module)."""
    y, pred = np.asarray(labels, dtype=int), np.asarray(predictions, dtype=int)
    score = np.asarray(scores, dtype=np.float64)
    goal_of(metric)  # an unknown metric fails here, with the list
    value = metric_value(metric, y, pred, score)
    baseline = no_skill_value(metric, y)
    if metric == "accuracy":
        p, test = _mcnemar_vs_majority(y, pred), "McNemar exact vs the majority class"
    elif metric in THRESHOLD_FREE and len(score) != len(y):
        raise ValueError(f"{metric} needs the endpoint's probabilities and the evaluation has none")
    elif y.min() == y.max():
        p, test = 1.0, "none: the holdout holds one class"
    else:
        p = _bootstrap(metric, y, pred, score, baseline, resamples, seed)
        test = f"stratified bootstrap ({resamples} resamples)"
    return FloorCheck(metric, value, baseline, len(y), float(p), alpha, test)


def check_report(report: EvalReport, metric: str, alpha: float = 0.05) -> FloorCheck:
    """``check_floor`` of an evaluation through the endpoint."""
    return check_floor(metric, report.labels, report.predictions, report.scores, alpha=alpha)
