"""Pure decisions: which trial is best, and whether a candidate may replace the champion."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from backends.base import TrialResult, TrialStatus
from backends.errors import SweepError


def pick_best_trial(trials: Iterable[TrialResult], metric: str, goal: str = "maximize") -> TrialResult:
    """The completed trial with the best ``metric``.

    Ties are broken deterministically by the lowest trial number (the earliest in the sweep's order),
    so the same sweep always names the same winner. Failed trials and trials without the metric (or
    with NaN) are ignored. Raises SweepError when no trial qualifies.
    """
    if goal not in {"maximize", "minimize"}:
        raise ValueError(f"goal must be 'maximize' or 'minimize', not {goal!r}")
    usable = [
        t
        for t in trials
        if t.status is TrialStatus.COMPLETED
        and metric in t.metrics
        and not math.isnan(float(t.metrics[metric]))
    ]
    if not usable:
        raise SweepError(
            f"no trial completed with a value for {metric!r}: see the failed trials' errors in the sweep's runs"
        )
    sign = -1.0 if goal == "maximize" else 1.0
    return min(usable, key=lambda t: (sign * float(t.metrics[metric]), t.number))


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    candidate: float
    champion: float | None
    tolerance: float


def decide_promotion(candidate: float, champion: float | None, tolerance: float = 0.0) -> GateDecision:
    """Promote when there is no champion, or when the candidate's holdout accuracy is at least the
    champion's minus ``tolerance``."""
    if champion is None:
        return GateDecision(True, f"no champion yet; candidate holdout accuracy {candidate:.4f}", candidate, None, tolerance)
    floor = champion - tolerance
    if candidate + 1e-12 >= floor:
        return GateDecision(
            True,
            f"candidate holdout accuracy {candidate:.4f} >= champion {champion:.4f} - tolerance {tolerance:.4f}",
            candidate, champion, tolerance,
        )
    return GateDecision(
        False,
        f"candidate holdout accuracy {candidate:.4f} < champion {champion:.4f} - tolerance {tolerance:.4f}",
        candidate, champion, tolerance,
    )
