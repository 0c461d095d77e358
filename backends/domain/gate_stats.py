"""Paired statistics of two classifiers scored on the same rows: accuracies, their difference and
McNemar's exact test on the rows where exactly one of them is right.

Both models answer every row, so the comparison is paired: the rows both get right or both get wrong say
nothing about which is better, and under "no difference" each discordant row is a fair coin. McNemar's
exact test is that binomial test (``scipy.stats.binomtest``) on the discordant counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from scipy.stats import binom, binomtest

DETECTABLE_DIFFERENCE = 0.05  # the drop a gate should be able to see: 5 points of accuracy
POWER_TARGET = 0.8
ASSUMED_DISCORDANCE = 0.10  # share of rows two comparable models disagree on, when none is observed


@dataclass(frozen=True)
class PairedComparison:
    n: int
    candidate_accuracy: float
    champion_accuracy: float
    difference: float  # candidate - champion
    candidate_only_right: int
    champion_only_right: int
    p_value: float  # McNemar exact, two-sided
    p_worse: float  # one-sided: the candidate is worse

    @property
    def discordant(self) -> int:
        return self.candidate_only_right + self.champion_only_right


def paired_comparison(labels: Sequence[int], candidate: Sequence[int], champion: Sequence[int]) -> PairedComparison:
    """Compare two prediction vectors aligned row by row with ``labels``."""
    if not (len(labels) == len(candidate) == len(champion)) or not labels:
        raise ValueError(
            f"paired comparison needs equally long, non-empty rows: {len(labels)} labels, "
            f"{len(candidate)} and {len(champion)} predictions"
        )
    cand_right = [p == y for p, y in zip(candidate, labels, strict=True)]
    champ_right = [p == y for p, y in zip(champion, labels, strict=True)]
    b = sum(1 for c, h in zip(cand_right, champ_right, strict=True) if c and not h)
    c = sum(1 for cr, h in zip(cand_right, champ_right, strict=True) if h and not cr)
    n = len(labels)
    if b + c:
        two_sided = float(binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)
        worse = float(binomtest(b, b + c, 0.5, alternative="less").pvalue)
    else:
        two_sided = worse = 1.0
    cand_acc, champ_acc = sum(cand_right) / n, sum(champ_right) / n
    return PairedComparison(n, cand_acc, champ_acc, cand_acc - champ_acc, b, c, two_sided, worse)


@lru_cache(maxsize=4096)
def _critical(discordant: int, alpha: float) -> int:
    """The largest count of candidate-only wins that the one-sided test rejects at ``alpha``; -1: none."""
    k = -1
    while k + 1 <= discordant and binom.cdf(k + 1, discordant, 0.5) < alpha:
        k += 1
    return k


def mcnemar_power(
    n: int, difference: float = DETECTABLE_DIFFERENCE, discordance: float = ASSUMED_DISCORDANCE, alpha: float = 0.05
) -> float:
    """The chance that the one-sided exact McNemar test at ``alpha`` finds a candidate worse when it truly
    is ``difference`` below the champion, on ``n`` rows of which a share ``discordance`` are discordant.
    Exact: the discordant count is Binomial(n, discordance), the candidate's wins among them Binomial."""
    if n <= 0:
        return 0.0
    discordance = min(1.0, max(discordance, difference))
    p_candidate = (discordance - difference) / 2 / discordance  # among discordant rows
    power = 0.0
    for d in range(n + 1):
        weight = float(binom.pmf(d, n, discordance))
        if weight < 1e-15:
            continue
        k = _critical(d, alpha)
        if k >= 0:
            power += weight * float(binom.cdf(k, d, p_candidate))
    return power


def rows_for_power(
    target: float = POWER_TARGET, difference: float = DETECTABLE_DIFFERENCE,
    discordance: float = ASSUMED_DISCORDANCE, alpha: float = 0.05, limit: int = 20000,
) -> int | None:
    """The smallest number of rows (searched in steps of 10) with at least ``target`` power."""
    for n in range(10, limit + 1, 10):
        if mcnemar_power(n, difference, discordance, alpha) >= target:
            return n
    return None


def gate_metrics_and_tags(numbers: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """A gate decision's record as MLflow would keep it on the model's run: numbers as ``gate_<name>``
    metrics, text, flags and missing values as ``heartflow.gate.<name>`` tags."""
    metrics = {f"gate_{k}": float(v) for k, v in numbers.items()
               if isinstance(v, int | float) and not isinstance(v, bool) and v == v}
    tags = {f"heartflow.gate.{k}": str(v)[:4000] for k, v in numbers.items() if isinstance(v, str | bool) or v is None}
    return metrics, tags
