"""The metrics a trial logs and a threshold turns probabilities into labels with.

Every trial logs all of them (the sweep's metric selects; the others are still there to read); the
threshold-free ones (roc_auc, average_precision, log_loss, brier) read the positive class's probability,
the others the labels it gives at the model's threshold.

The threshold: ``None`` (the default, 0.5) is the model's own decision, ``predict`` (the larger probability;
a forest's exact tie goes to the negative class, as scikit-learn's argmax); a stored threshold ``t`` labels a
row positive when its probability is at least ``t`` (scikit-learn's FixedThresholdClassifier rule).

This module runs on Azure's compute as part of a copy of src/, so it imports only third-party packages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

# The metrics a sweep may select by, and which way is better.
METRIC_GOALS: Mapping[str, str] = {
    "accuracy": "maximize", "balanced_accuracy": "maximize", "f1": "maximize", "roc_auc": "maximize",
    "average_precision": "maximize", "log_loss": "minimize",
}
THRESHOLD_FREE = frozenset({"roc_auc", "average_precision", "log_loss"})
THRESHOLD_ATTRIBUTE = "heartflow_threshold_"  # set on the fitted pipeline: the threshold travels with the model
PROBABILITY_CLIP = 1e-15


def labels_at(proba: np.ndarray, threshold: float | None, fallback: np.ndarray | None = None) -> np.ndarray:
    """0/1 labels from the positive class's probability. ``threshold`` None: ``fallback`` (the model's own
    ``predict``) when given, else probability > 0.5 (argmax with ties negative)."""
    proba = np.asarray(proba, dtype=np.float64)
    if threshold is None:
        return np.asarray(fallback).astype(int) if fallback is not None else (proba > 0.5).astype(int)
    return (proba >= float(threshold)).astype(int)


def score_predictions(y_true: np.ndarray, y_pred: np.ndarray, y_score: np.ndarray) -> dict[str, float]:
    """Every metric a trial logs; zero_division=0 so a degenerate fold scores 0, not a warning."""
    y_true = np.asarray(y_true).astype(int)
    y_score = np.clip(np.asarray(y_score, dtype=np.float64), PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
    both = len(np.unique(y_true)) == 2
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)) if both else float("nan"),
        "f1": float(f1_score(y_true, y_pred, zero_division=0)),
        "precision": float(precision_score(y_true, y_pred, zero_division=0)),
        "recall": float(recall_score(y_true, y_pred, zero_division=0)),
        "roc_auc": float(roc_auc_score(y_true, y_score)) if both else float("nan"),
        "average_precision": float(average_precision_score(y_true, y_score)) if y_true.any() else float("nan"),
        "log_loss": float(log_loss(y_true, y_score, labels=[0, 1])),
        "brier": float(brier_score_loss(y_true, y_score, pos_label=1)),
    }


def pick_threshold(y_true: np.ndarray, y_score: np.ndarray, metric: str) -> float:
    """The threshold that maximises F1 (metric ``f1``) or balanced accuracy (any other metric) on these
    predictions: every distinct probability is a candidate; ties go to the one nearest 0.5."""
    y_true = np.asarray(y_true).astype(int)
    y_score = np.asarray(y_score, dtype=np.float64)
    candidates = np.unique(y_score)
    if len(np.unique(y_true)) < 2 or len(candidates) == 0:
        return 0.5
    positives = y_true.sum()
    negatives = len(y_true) - positives
    order = np.argsort(-y_score, kind="stable")
    sorted_score, sorted_true = y_score[order], y_true[order]
    # For threshold = c, the rows with score >= c are predicted positive: cumulative counts at each distinct c.
    last = np.searchsorted(-sorted_score, -candidates, side="right")  # rows with score >= c
    tp = np.concatenate([[0], np.cumsum(sorted_true)])[last]
    fp = last - tp
    if metric == "f1":
        value = 2 * tp / np.maximum(2 * tp + fp + (positives - tp), 1)
    else:
        value = 0.5 * (tp / max(positives, 1) + (negatives - fp) / max(negatives, 1))
    best = value.max()
    tied = candidates[np.isclose(value, best, rtol=0, atol=1e-12)]
    return float(tied[np.argmin(np.abs(tied - 0.5))])


def parse_threshold(value: Any) -> float | str | None:
    """``0.5`` (or None): the model's own decision (None); ``auto``; or a probability in (0, 1)."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    number = float(value)
    if not 0.0 < number < 1.0:
        raise ValueError(f"threshold {value!r}: give 0.5, auto, or a probability strictly between 0 and 1")
    return None if number == 0.5 else number


def model_threshold(model: Any) -> float | None:
    """The threshold stored with a fitted model (None: its own decision)."""
    value = getattr(model, THRESHOLD_ATTRIBUTE, None)
    return None if value is None else float(value)
