"""Pure decisions: which trial is best, and whether a candidate may replace the champion.

The gate compares candidate and champion on the same holdout rows, answered by both through the endpoint,
and only on rows the champion cannot have trained on (``backends.domain.split``). Two rules:

- ``tolerance`` (the default): promote when the candidate's accuracy on those rows is at least the
  champion's minus the tolerance (default 0).
- ``paired``: promote unless the candidate is significantly worse (McNemar's exact test, one-sided, at
  ``alpha``), and never when it drops more than the tolerance (default 0.05 for this rule).

Whatever the rule, the decision carries n, both accuracies, their difference, the discordant counts, the
exact McNemar p-values and the test's power to see a 5-point drop on n rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from backends.base import EvalReport, TrialResult, TrialStatus
from backends.results import GateFigures
from backends.domain.gate_stats import (
    ASSUMED_DISCORDANCE,
    DETECTABLE_DIFFERENCE,
    POWER_TARGET,
    mcnemar_power,
    paired_comparison,
)
from backends.domain.split import unseen_rows
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


GateRule = Literal["tolerance", "paired"]
GATE_RULES: tuple[str, ...] = ("tolerance", "paired")
PAIRED_DEFAULT_TOLERANCE = 0.05


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    candidate: float  # accuracy on the compared rows
    champion: float | None
    tolerance: float
    rule: str = "tolerance"
    alpha: float = 0.05
    rows: int = 0  # holdout rows the comparison used
    rows_excluded: int = 0  # holdout rows left out: the champion trained on them
    difference: float | None = None  # candidate - champion
    candidate_only_right: int | None = None
    champion_only_right: int | None = None
    p_value: float | None = None  # McNemar exact, two-sided
    p_worse: float | None = None  # one-sided: the candidate is worse
    power: float | None = None  # chance to detect a 5-point drop on ``rows`` rows at ``alpha``
    champion_rows_known: bool = True  # False: the champion predates the hash split; rows may be biased
    warnings: tuple[str, ...] = ()

    def record(self) -> dict[str, Any]:
        """The numbers, flat, for MLflow and artifacts."""
        data = asdict(self)
        data["warnings"] = list(self.warnings)
        return data

    def figures(self) -> GateFigures:
        """The numbers a history entry keeps (``HistoryEntry.gate``)."""
        return GateFigures(rule=self.rule, rows=self.rows, candidate_accuracy=self.candidate,
                           champion_accuracy=self.champion, difference=self.difference, p_value=self.p_value,
                           p_worse=self.p_worse, tolerance=self.tolerance)


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


def gate_tolerance(rule: str, tolerance: float | None) -> float:
    """The tolerance a rule uses when none is given: 0 for ``tolerance``, 0.05 for ``paired``."""
    if tolerance is not None:
        return tolerance
    return PAIRED_DEFAULT_TOLERANCE if rule == "paired" else 0.0


def _aligned(candidate: EvalReport, champion: EvalReport) -> tuple[list[str], list[int], list[int], list[int]]:
    """Row keys, labels and both predictions, row by row. Both reports must cover the same rows."""
    if len(candidate.labels) != len(champion.labels):
        raise ValueError(f"the candidate was scored on {candidate.rows} rows and the champion on {champion.rows}")
    if candidate.row_ids and champion.row_ids and tuple(candidate.row_ids) != tuple(champion.row_ids):
        raise ValueError("the candidate and the champion were not scored on the same rows in the same order")
    if tuple(candidate.labels) != tuple(champion.labels):
        raise ValueError("the candidate's and the champion's reports carry different labels for the same rows")
    ids = list(candidate.row_ids or champion.row_ids or (str(i) for i in range(len(candidate.labels))))
    return ids, list(candidate.labels), list(candidate.predictions), list(champion.predictions)


def decide_gate(
    candidate: EvalReport, champion: EvalReport | None, *, rule: str = "tolerance", tolerance: float | None = None,
    alpha: float = 0.05, champion_tags: Mapping[str, str] | None = None,
) -> GateDecision:
    """The gate's decision on the paired holdout answers of candidate and champion (see the module)."""
    if rule not in GATE_RULES:
        raise ValueError(f"gate rule must be one of {', '.join(GATE_RULES)}, not {rule!r}")
    tol = gate_tolerance(rule, tolerance)
    if champion is None:
        return GateDecision(
            True, f"no champion yet; candidate holdout accuracy {candidate.accuracy:.4f} on {candidate.rows} rows",
            candidate.accuracy, None, tol, rule, alpha, rows=candidate.rows,
        )
    ids, labels, cand, champ = _aligned(candidate, champion)
    has_split_keys = bool(candidate.row_ids or champion.row_ids)
    unseen, known = unseen_rows(ids, champion_tags or {}) if has_split_keys else (frozenset(ids), False)
    keep = [i for i, key in enumerate(ids) if key in unseen]
    warnings: list[str] = []
    if not known:
        warnings.append("the champion's training rows are unknown (it predates the split by row hash): "
                        "the comparison may include rows it trained on")
    if not keep:
        warnings.append("every holdout row was in the champion's training data: compared on all of them (biased)")
        keep = list(range(len(ids)))
    stats = paired_comparison([labels[i] for i in keep], [cand[i] for i in keep], [champ[i] for i in keep])
    discordance = max(stats.discordant / stats.n, ASSUMED_DISCORDANCE)
    power = mcnemar_power(stats.n, DETECTABLE_DIFFERENCE, discordance, alpha)
    if power < POWER_TARGET:
        warnings.append(
            f"the comparison used {stats.n} rows: too few to detect a {DETECTABLE_DIFFERENCE:.0%} difference "
            f"(power {power:.2f} at alpha {alpha}, assuming {discordance:.0%} discordant rows); "
            "a larger holdout or more labelled data is needed for a decision that is more than noise"
        )
    excluded = len(ids) - len(keep)
    numbers = (
        f"{stats.n} holdout rows{f' ({excluded} left out: the champion trained on them)' if excluded else ''}; "
        f"candidate {stats.candidate_accuracy:.4f}, champion {stats.champion_accuracy:.4f}, difference "
        f"{stats.difference:+.4f}; {stats.candidate_only_right} rows only the candidate got right, "
        f"{stats.champion_only_right} only the champion; McNemar exact p={stats.p_value:.3g} (worse: p={stats.p_worse:.3g})"
    )
    if rule == "tolerance":
        base = decide_promotion(stats.candidate_accuracy, stats.champion_accuracy, tol)
        promote, reason = base.promote, f"{base.reason} ({numbers})"
    elif stats.difference < -tol - 1e-12:
        promote, reason = False, f"candidate drops more than the tolerance {tol:.4f} ({numbers})"
    elif stats.p_worse < alpha:
        promote, reason = False, f"candidate is significantly worse at alpha {alpha} ({numbers})"
    else:
        verdict = "not significantly worse" if stats.difference < 0 else "at least as good"
        promote, reason = True, f"candidate is {verdict} at alpha {alpha}, within tolerance {tol:.4f} ({numbers})"
    return GateDecision(
        promote, reason, stats.candidate_accuracy, stats.champion_accuracy, tol, rule, alpha, rows=stats.n,
        rows_excluded=excluded, difference=stats.difference, candidate_only_right=stats.candidate_only_right,
        champion_only_right=stats.champion_only_right, p_value=stats.p_value, p_worse=stats.p_worse, power=power,
        champion_rows_known=known, warnings=tuple(warnings),
    )
