"""The metric a run is judged by: its direction, its value on an evaluation, its no-skill baseline, and the
metric a table's class balance calls for.

Every trial logs every metric (``src.metrics``); the sweep's ``metric`` selects the best trial and drives
the gate, the history and the reports. Accuracy stays the default (the tutorial's); on a table whose
positive class is rare, accuracy rewards answering "no" and a threshold-free metric says more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from backends.results import EvalReport
from src.metrics import METRIC_GOALS, PROBABILITY_CLIP, THRESHOLD_FREE, score_predictions

RARE_POSITIVE_SHARE = 0.2  # below this share of positive rows, accuracy is a poor judge
METRIC_LABELS = {
    "accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "f1": "F1", "roc_auc": "ROC AUC",
    "average_precision": "average precision", "log_loss": "log loss",
}


def goal_of(metric: str) -> str:
    """``maximize`` or ``minimize`` (log loss)."""
    return METRIC_GOALS[metric]


def better(metric: str, value: float, other: float) -> float:
    """How much ``value`` is better than ``other`` (positive: better), whatever the metric's direction."""
    return value - other if goal_of(metric) == "maximize" else other - value


def metric_value(metric: str, labels: ArrayLike, predictions: ArrayLike, scores: ArrayLike) -> float:
    """``metric`` of one set of answers; a threshold-free metric needs the positive class's probabilities."""
    y, given = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    if metric in THRESHOLD_FREE and len(given) != len(y):
        raise ValueError(f"{metric} needs the endpoint's probabilities and the evaluation has none")
    proba = given if len(given) == len(y) else np.asarray(predictions, dtype=np.float64)
    return float(score_predictions(y, np.asarray(predictions), proba)[metric])


def report_metric(report: EvalReport, metric: str) -> float:
    """``metric`` of an evaluation through the endpoint (accuracy as the report states it)."""
    if metric == "accuracy":
        return report.accuracy
    return metric_value(metric, report.labels, report.predictions, report.scores)


def no_skill_value(metric: str, labels: ArrayLike) -> float:
    """What a model that learned nothing scores on ``labels``: the majority class for accuracy; 0.5 for
    balanced accuracy and ROC AUC; the prevalence for average precision; the prior's log loss; the F1 of
    always answering positive."""
    y = np.asarray(labels, dtype=np.float64)
    if not len(y):
        raise ValueError("no rows: no baseline")
    share = float(y.mean())
    if metric == "accuracy":
        return max(share, 1.0 - share)
    if metric in {"balanced_accuracy", "roc_auc"}:
        return 0.5
    if metric == "average_precision":
        return share
    if metric == "f1":
        return 2 * share / (1 + share)
    if metric == "log_loss":
        p = min(max(share, PROBABILITY_CLIP), 1 - PROBABILITY_CLIP)
        return float(-(share * math.log(p) + (1 - share) * math.log(1 - p)))
    raise ValueError(f"unknown metric {metric!r}; choose among {', '.join(METRIC_GOALS)}")


@dataclass(frozen=True)
class ClassBalance:
    """How the label splits, and the metric it calls for."""

    rows: int
    positives: int
    positive_label: str
    recommended: str
    why: str

    @property
    def share(self) -> float:
        return self.positives / self.rows if self.rows else 0.0


def class_balance(rows: int, positives: int, positive_label: str = "1") -> ClassBalance:
    """The balance of a table's label and the metric to sweep by: accuracy when the classes are balanced
    enough (the tutorial's), average precision when the positive class is rare."""
    share = positives / rows if rows else 0.0
    if share < RARE_POSITIVE_SHARE:
        majority = 1.0 - share
        return ClassBalance(
            rows, positives, positive_label, "average_precision",
            f"the positive class is rare ({share:.1%}): always answering the other class scores accuracy "
            f"{majority:.3f}, so accuracy rewards a model that never finds a positive; average precision "
            f"(baseline {share:.3f}) or roc_auc (baseline 0.5) judge how well positives are ranked "
            "(pass --metric average_precision, and --threshold auto to choose the decision threshold)",
        )
    if share > 1.0 - RARE_POSITIVE_SHARE:
        return ClassBalance(
            rows, positives, positive_label, "balanced_accuracy",
            f"the negative class is rare ({1 - share:.1%}): always answering positive scores accuracy {share:.3f}; "
            "balanced accuracy (baseline 0.5) weighs both classes (pass --metric balanced_accuracy)",
        )
    return ClassBalance(rows, positives, positive_label, "accuracy",
                        f"the classes are balanced enough ({share:.1%} positive) for accuracy, the default")
