"""Pure decisions: which trial is best, and whether a candidate may replace the champion.

The gate compares candidate and champion on the same holdout rows, answered by both through the endpoint,
and only on rows the champion cannot have trained on (``backends.domain.split``). Two rules:

- ``tolerance`` (the default): promote when the candidate's accuracy on those rows is at least the
  champion's minus the tolerance (default 0).
- ``paired``: promote unless the candidate is significantly worse (McNemar's exact test, one-sided, at
  ``alpha``), and never when it drops more than the tolerance (default 0.05 for this rule).

Whatever the rule, the decision carries n, both accuracies, their difference, the discordant counts, the
exact McNemar p-values and the test's power to see a 5-point drop on n rows.

Before any comparison, the no-skill floor (``backends.domain.baseline``): a candidate that does not beat
its metric's no-skill baseline on the holdout is rejected, first version included. With a metric other
than accuracy, the comparison with the champion is by that metric (a paired bootstrap,
``backends.domain.paired_metric``); McNemar's figures on the labels are still recorded beside it.
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
from backends.domain.baseline import check_report
from backends.domain.cv_gate import CvComparison
from backends.domain.paired_metric import MetricComparison, paired_metric_comparison
from backends.domain.split import TAG_SPLIT, unseen_rows
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
    metric: str = "accuracy"  # the run's metric: the floor and (when not accuracy) the comparison use it
    candidate_value: float | None = None  # the metric on the holdout (the floor) or the compared rows
    champion_value: float | None = None
    baseline: float | None = None  # the metric's no-skill baseline on the holdout
    baseline_p: float | None = None  # one-sided: the candidate is no better than the baseline
    beats_baseline: bool = True
    cv: CvComparison | None = None  # the champion's configuration refit on the candidate's folds, compared
    difference_low: float | None = None  # 95 % interval of the holdout difference in the run's metric (accuracy:
    difference_high: float | None = None  # paired Wald on the discordant rows; another metric: the bootstrap's)

    @property
    def floor_failed(self) -> bool:
        return not self.beats_baseline

    def record(self) -> dict[str, Any]:
        """The numbers, flat, for MLflow and artifacts."""
        data = asdict(self)
        data["warnings"] = list(self.warnings)
        data.pop("cv")
        if self.cv is not None:
            data.update(self.cv.record())
        return data

    def figures(self) -> GateFigures:
        """The numbers a history entry keeps (``HistoryEntry.gate``)."""
        return GateFigures(rule=self.rule, rows=self.rows, candidate_accuracy=self.candidate,
                           champion_accuracy=self.champion, difference=self.difference, p_value=self.p_value,
                           p_worse=self.p_worse, tolerance=self.tolerance, metric=self.metric,
                           candidate_value=self.candidate_value, champion_value=self.champion_value,
                           baseline=self.baseline, baseline_p=self.baseline_p,
                           **(self.cv.record() if self.cv is not None else {}))


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
    alpha: float = 0.05, champion_tags: Mapping[str, str] | None = None, metric: str = "accuracy",
    cv: CvComparison | None = None, candidate_tags: Mapping[str, str] | None = None,
) -> GateDecision:
    """The gate's decision on the paired holdout answers of candidate and champion (see the module)."""
    if rule not in GATE_RULES:
        raise ValueError(f"gate rule must be one of {', '.join(GATE_RULES)}, not {rule!r}")
    tol = gate_tolerance(rule, tolerance)
    floor = check_report(candidate, metric, alpha)
    floor_fields: dict[str, Any] = dict(metric=metric, candidate_value=floor.value, baseline=floor.baseline,
                                        baseline_p=floor.p_value, beats_baseline=floor.beats)
    if champion is None:
        if not floor.beats:
            return GateDecision(False, floor.reason(), candidate.accuracy, None, tol, rule, alpha,
                                rows=candidate.rows, **floor_fields)
        return GateDecision(
            True, f"no champion yet; candidate holdout {_named(metric)} {floor.value:.4f} on {candidate.rows} rows "
            f"({floor.summary()})", candidate.accuracy, None, tol, rule, alpha, rows=candidate.rows, **floor_fields,
        )
    ids, labels, cand, champ = _aligned(candidate, champion)
    has_split_keys = bool(candidate.row_ids or champion.row_ids)
    keys_split = (candidate_tags or {}).get(TAG_SPLIT)  # how the holdout's keys were made (the candidate's split)
    unseen, known = unseen_rows(ids, champion_tags or {}, keys_split) if has_split_keys else (frozenset(ids), False)
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
    by_metric = None
    if metric != "accuracy":
        by_metric = _compare_by_metric(metric, candidate, champion, ids, keep)
        floor_fields.update(candidate_value=by_metric.candidate, champion_value=by_metric.champion)
        numbers = (f"{_named(metric)}: candidate {by_metric.candidate:.4f}, champion {by_metric.champion:.4f}, "
                   f"better by {by_metric.difference:+.4f} (95 % {by_metric.low:+.4f} to {by_metric.high:+.4f}, "
                   f"paired bootstrap p worse={by_metric.p_worse:.3g}); accuracy: {numbers}")
    difference = by_metric.difference if by_metric else stats.difference
    if by_metric is not None:
        interval = (by_metric.low, by_metric.high)
    else:  # the paired difference's variance: ((b + c) - (b - c)^2 / n) / n^2
        b, c = stats.candidate_only_right, stats.champion_only_right
        half = 1.96 * math.sqrt(max((b + c) - (b - c) ** 2 / stats.n, 0.0)) / stats.n
        interval = (stats.difference - half, stats.difference + half)
    p_worse = by_metric.p_worse if by_metric else stats.p_worse
    if rule == "tolerance" and by_metric is None:
        base = decide_promotion(stats.candidate_accuracy, stats.champion_accuracy, tol)
        promote, reason = base.promote, f"{base.reason} ({numbers})"
    elif rule == "tolerance":
        promote = difference + 1e-12 >= -tol
        sign = ">=" if promote else "<"
        reason = f"candidate holdout {_named(metric)} {sign} champion's within tolerance {tol:.4f} ({numbers})"
    elif difference < -tol - 1e-12:
        promote, reason = False, f"candidate drops more than the tolerance {tol:.4f} ({numbers})"
    elif p_worse < alpha:
        promote, reason = False, f"candidate is significantly worse at alpha {alpha} ({numbers})"
    else:
        verdict = "not significantly worse" if difference < 0 else "at least as good"
        promote, reason = True, f"candidate is {verdict} at alpha {alpha}, within tolerance {tol:.4f} ({numbers})"
    if cv is not None:
        numbers += f"; on the training folds: {cv.summary()}"
        # Significantly worse on the folds rejects; under the tolerance rule only beyond its tolerance (an
        # operator's --tolerance 1 accepts anything), under the paired rule at any size.
        allowed = tol if rule == "tolerance" else 0.0
        if promote and cv.p_worse < alpha and cv.difference < -allowed - 1e-12:
            promote, reason = False, (f"the champion's configuration refit on the candidate's folds is significantly "
                                      f"better at alpha {alpha} ({numbers})")
        elif promote:
            reason = f"{reason}; on the training folds: {cv.summary()}"
    if not floor.beats:  # whatever the champion scores: a model without skill never serves
        promote, reason = False, f"{floor.reason()}; against the champion: {numbers}"
    return GateDecision(
        promote, reason, stats.candidate_accuracy, stats.champion_accuracy, tol, rule, alpha, rows=stats.n,
        rows_excluded=excluded, difference=stats.difference, candidate_only_right=stats.candidate_only_right,
        champion_only_right=stats.champion_only_right, p_value=stats.p_value, p_worse=stats.p_worse, power=power,
        champion_rows_known=known, warnings=tuple(warnings), cv=cv, difference_low=interval[0],
        difference_high=interval[1], **floor_fields,
    )


def _named(metric: str) -> str:
    return metric.replace("_", " ")


def _compare_by_metric(metric: str, candidate: EvalReport, champion: EvalReport, ids: list[str],
                       keep: list[int]) -> MetricComparison:
    """The paired bootstrap on the compared rows; a threshold-free metric needs both models' probabilities."""
    def answers(report: EvalReport) -> tuple[list[int], list[float]]:
        scores = [report.scores[i] for i in keep] if len(report.scores) == len(ids) else []
        return [report.predictions[i] for i in keep], scores

    return paired_metric_comparison(metric, [candidate.labels[i] for i in keep], answers(candidate), answers(champion))
