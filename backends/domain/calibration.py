"""Calibration in view: how far the endpoint's probabilities are from the frequencies they claim.

The Brier score (mean squared error of the positive class's probability; 0 is perfect, the prior's
prevalence * (1 - prevalence) is what a constant scores) and the reliability table behind the plot: per
bin of predicted probability, the mean prediction against the observed share of positives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ReliabilityBin:
    low: float
    high: float
    rows: int
    mean_predicted: float
    observed: float  # share of positive labels in the bin


@dataclass(frozen=True)
class Calibration:
    rows: int
    brier: float
    brier_no_skill: float  # a constant at the holdout's prevalence
    bins: tuple[ReliabilityBin, ...]

    def summary(self) -> str:
        return (f"Brier score {self.brier:.4f} on {self.rows} rows (a constant at the prevalence: "
                f"{self.brier_no_skill:.4f}; 0 is perfect)")


def calibration(labels: Sequence[int], scores: Sequence[float], bins: int = 10) -> Calibration | None:
    """None when the evaluation carries no probabilities. Bins are equal-width on [0, 1]; empty ones omitted."""
    if not len(scores) or len(scores) != len(labels):
        return None
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1], right=False), 0, bins - 1)
    table = tuple(
        ReliabilityBin(float(edges[b]), float(edges[b + 1]), int(np.sum(which == b)), float(p[which == b].mean()),
                       float(y[which == b].mean()))
        for b in range(bins) if np.any(which == b)
    )
    prevalence = float(y.mean())
    return Calibration(len(y), float(np.mean((p - y) ** 2)), prevalence * (1 - prevalence), table)
