"""Best-trial choice and the promotion gate: pure decisions."""

from __future__ import annotations

import math

import pytest

from backends.base import TrialResult, TrialStatus
from backends.errors import SweepError
from backends.domain.selection import decide_promotion, pick_best_trial


def _trial(number: int, accuracy: float | None, status: TrialStatus = TrialStatus.COMPLETED) -> TrialResult:
    metrics = {} if accuracy is None else {"accuracy": accuracy}
    return TrialResult(number=number, run_id=f"r{number}", params={}, metrics=metrics, status=status)


def test_best_is_the_highest_and_ties_go_to_the_lowest_number() -> None:
    trials = [_trial(3, 0.8), _trial(1, 0.9), _trial(2, 0.9), _trial(0, 0.7)]
    assert pick_best_trial(trials, "accuracy").number == 1
    assert pick_best_trial(list(reversed(trials)), "accuracy").number == 1
    assert pick_best_trial(trials, "accuracy", "minimize").number == 0


def test_failed_and_nan_trials_are_ignored() -> None:
    trials = [_trial(0, 0.99, TrialStatus.FAILED), _trial(1, math.nan), _trial(2, 0.6), _trial(3, None)]
    assert pick_best_trial(trials, "accuracy").number == 2


def test_no_usable_trial_raises_a_sweep_error() -> None:
    with pytest.raises(SweepError, match="no trial completed"):
        pick_best_trial([_trial(0, None, TrialStatus.FAILED)], "accuracy")


def test_gate() -> None:
    assert decide_promotion(0.8, None).promote
    assert decide_promotion(0.8, 0.8).promote
    assert not decide_promotion(0.79, 0.8).promote
    assert decide_promotion(0.79, 0.8, tolerance=0.02).promote
    rejected = decide_promotion(0.5, 0.9, tolerance=0.1)
    assert not rejected.promote and "0.5000 < champion 0.9000" in rejected.reason
