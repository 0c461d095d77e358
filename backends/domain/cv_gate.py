"""The gate's second witness, with power: the champion's configuration refit on the candidate's
cross-validation folds (the same folds of the same training data: one more trial) and the two compared
fold by fold, paired.

Folds share most of their training rows, so their differences are correlated and the plain paired t-test
is far too confident. Nadeau and Bengio's corrected resampled t-test inflates the variance by the ratio
of test to training rows: t = mean(d) / sqrt((1/k + n_test/n_train) * var(d)), k - 1 degrees of freedom
(Nadeau & Bengio 2003, "Inference for the generalization error"; Bouckaert & Frank 2004). Its power to
see a 5-point drop comes from the noncentral t with the observed spread of the differences (never below
the spread two models that disagree on 10 % of the rows would show on a fold of that size).

Training data is what the holdout is not: large. On the 918-row table of the issue, five folds of ~165
rows each see a 5-point drop that a 92-row holdout (power ~0.2) misses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import nct
from scipy.stats import t as student_t

from backends.domain.lineage import params_of as params_of  # read here by the gate
from backends.domain.gate_stats import ASSUMED_DISCORDANCE, DETECTABLE_DIFFERENCE
from backends.domain.metrics import better



@dataclass(frozen=True)
class CvComparison:
    """Candidate and champion configurations on the same folds, by the run's metric."""

    metric: str
    folds: int
    train_rows: int  # rows a fold trains on (mean)
    test_rows: int  # rows a fold is scored on (mean)
    candidate: tuple[float, ...]  # per fold
    champion: tuple[float, ...]
    difference: float  # mean over folds of how much the candidate is better (log loss: lower)
    low: float  # 95 % corrected-t interval of the difference
    high: float
    p_worse: float  # one-sided corrected resampled t-test: the candidate is worse
    power: float  # chance to see a 5-point drop at alpha

    def summary(self) -> str:
        return (f"{self.folds} folds of ~{self.test_rows} rows: candidate better by {self.difference:+.4f} "
                f"(95 % {self.low:+.4f} to {self.high:+.4f}), corrected t p worse={self.p_worse:.3g}, "
                f"power {self.power:.2f} to see a {DETECTABLE_DIFFERENCE:.0%} drop")

    def record(self) -> dict[str, Any]:
        return {"cv_folds": self.folds, "cv_difference": self.difference, "cv_low": self.low, "cv_high": self.high,
                "cv_p_worse": self.p_worse, "cv_power": self.power}


def corrected_t(differences: Sequence[float], test_rows: float, train_rows: float,
                alpha: float = 0.05) -> tuple[float, float, float, float, float, float]:
    """(mean, corrected standard error, p worse, 95 % low, 95 % high, power to see a 5-point drop)."""
    d = np.asarray(differences, dtype=np.float64)
    k = len(d)
    if k < 2:
        raise ValueError(f"the corrected t-test needs at least 2 folds, not {k}")
    factor = 1.0 / k + test_rows / train_rows
    mean = float(d.mean())
    # A spread of zero (identical folds) would claim certainty: floor it at a 10 %-discordance fold's.
    floor_sd = math.sqrt(ASSUMED_DISCORDANCE / max(test_rows, 1.0))
    sd = max(float(d.std(ddof=1)), floor_sd)
    se = math.sqrt(factor) * sd
    df = k - 1
    p_worse = float(student_t.cdf(mean / se, df))
    half = float(student_t.ppf(0.975, df)) * se
    critical = float(student_t.ppf(alpha, df))
    power = float(nct.cdf(critical, df, -DETECTABLE_DIFFERENCE / se))
    return mean, se, p_worse, mean - half, mean + half, power


def compare(metric: str, candidate: Sequence[float], champion: Sequence[float], test_rows: float, train_rows: float,
            alpha: float = 0.05) -> CvComparison:
    """The corrected resampled t-test on per-fold values of ``metric`` (same folds, same order)."""
    if len(candidate) != len(champion):
        raise ValueError(f"{len(candidate)} candidate folds against {len(champion)} champion folds")
    differences = [better(metric, c, h) for c, h in zip(candidate, champion, strict=True)]
    mean, _se, p_worse, low, high, power = corrected_t(differences, test_rows, train_rows, alpha)
    return CvComparison(metric, len(differences), round(train_rows), round(test_rows), tuple(candidate),
                        tuple(champion), mean, low, high, p_worse, power)


def compare_on_folds(
    frame: Any, schema: Any, candidate_params: Mapping[str, Any], champion_params: Mapping[str, Any], *,
    metric: str, seed: int, folds: int, random_state: int, threshold: float | str | None = None, alpha: float = 0.05,
) -> CvComparison:
    """Fit both configurations on the same stratified folds of ``frame`` (``src.model_train.train_trial``,
    method kfold: the folds depend only on the rows, the labels and ``random_state``) and compare them."""
    from src.model_train import train_trial

    def per_fold(params: Mapping[str, Any]) -> list[float]:
        fit = train_trial(frame, schema, params, seed=seed, method="kfold", folds=folds, random_state=random_state,
                          threshold=threshold, metric=metric, refit=False)
        return [fold[metric] for fold in fit.fold_metrics]

    rows = len(frame)
    test_rows = rows / folds
    return compare(metric, per_fold(candidate_params), per_fold(champion_params), test_rows, rows - test_rows, alpha)
