"""The watch's judgement on labelled live answers: during the window after a promotion, is the new champion's
realized performance (the run's metric on the live rows that feedback labelled, joined by request id)
significantly below the figure the gate measured for it on the holdout?

The test is one-sided, H0: the realized metric is at least the gate's figure minus ``WATCH_REALIZED_MARGIN``
(the gate's figure is itself an estimate on a finite holdout; the margin is the monitor's, so the watch and
``heartflow monitor`` call the same drop significant). It is judged from ``WATCH_MIN_LABELLED`` labelled rows on.

- accuracy, precision, recall are proportions of Bernoulli trials (accuracy: every labelled row; precision:
  the rows answered positive; recall: the rows labelled positive): the exact binomial test, lower tail
  ``P(X <= hits | trials, floor)``. Exact, so valid at the few dozen rows a watch window may label, where a
  normal approximation is not.
- f1 and roc_auc are no proportion: a one-sided bootstrap over the labelled rows (``BOOTSTRAP`` resamples,
  a fixed seed), p = the share of resamples at or above the floor.

Rollback when p < ``WATCH_REALIZED_ALPHA`` (0.01). The watch looks again as labels arrive (every
``WATCH_LABELS_POLL_S`` and at the window's end): each look is a test, so the chance of a false rollback over
a window is above the per-look alpha; 0.01 keeps it low over the handful of looks a window makes, and a
rollback is cheap to undo (promote again) while a degraded model serving is not.

Backends supply the answers (``LabelledAnswers``); the decision is a plain function, tested directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import numpy as np

from backends.domain.monitoring import EVAL_PREFIX, MARGIN, METRICS, metric_value
from backends.results import Endpoint

WATCH_REALIZED_ALPHA = 0.01
WATCH_MIN_LABELLED = 30
WATCH_REALIZED_MARGIN = MARGIN
WATCH_LABELS_POLL_S = 5.0
BOOTSTRAP = 1000
_PROPORTIONS = ("accuracy", "precision", "recall")


@dataclass(frozen=True)
class LabelledAnswer:
    """One live row the watched deployment answered, with the label feedback gave it."""

    request_id: str  # ``<id>`` for a one-row request, ``<id>/<row>`` for a row of a batch
    prediction: str
    label: str
    positive: str  # the positive class, as the model answers it
    score: float | None = None  # P(positive) when the answer recorded it


@dataclass(frozen=True)
class RealizedCheck:
    """The realized metric of the new champion in the watch window, against the gate's figure."""

    metric: str
    value: float | None
    labelled: int  # labelled rows
    trials: int  # rows the test counts (accuracy: all labelled; precision: answered positive; recall: labelled positive)
    gate_value: float | None
    p_value: float | None
    below: bool  # significantly below the gate's figure: roll back
    reason: str


@runtime_checkable
class LabelledAnswers(Protocol):
    """A backend that joins its endpoints' captured answers to feedback labels (local: capture and feedback
    files; in memory: kept in memory). The watch checks for it; without it the watch judges errors and latency."""

    def labelled_answers(self, endpoint: Endpoint, deployment: str, since: datetime) -> tuple[LabelledAnswer, ...] | None:
        """The live rows ``deployment`` answered since ``since`` that feedback labelled (heartflow's own
        evaluation requests left out); None when this backend cannot read them (said in its log)."""
        ...


def _at(text: Any) -> datetime | None:
    try:
        when = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def join_labelled(records: Iterable[Mapping[str, Any]], labels: Mapping[str, Any], deployment: str,
                  since: datetime) -> tuple[LabelledAnswer, ...]:
    """Captured answers (records as both backends read them: ``kind``, ``request_id``, ``deployment``,
    ``time``, ``predictions``, ``probabilities``, ``classes``) of ``deployment`` since ``since`` joined to
    ``labels`` by request id (``<id>/<row>`` for a row of a batch); heartflow's own evaluation left out."""
    if not labels:
        return ()
    out: list[LabelledAnswer] = []
    for record in records:
        rid = str(record.get("request_id", ""))
        when = _at(record.get("time", ""))
        if (record.get("kind") != "scored" or record.get("deployment") != deployment or rid.startswith(EVAL_PREFIX)
                or when is None or when < since):
            continue
        predictions = record.get("predictions") or []
        proba = record.get("probabilities") or []
        classes = record.get("classes") or []
        positive = str(classes[-1]) if classes else "1"
        single = len(predictions) == 1
        for i, prediction in enumerate(predictions):
            key = rid if single else f"{rid}/{i}"
            if key in labels:
                score = proba[i] if i < len(proba) else None
                out.append(LabelledAnswer(key, str(prediction), str(labels[key]), positive,
                                          None if score is None else float(score)))
    return tuple(out)


def realized_check(
    answers: Sequence[LabelledAnswer], metric: str, gate_value: float | None, *, alpha: float = WATCH_REALIZED_ALPHA,
    min_labelled: int = WATCH_MIN_LABELLED, margin: float = WATCH_REALIZED_MARGIN,
) -> RealizedCheck:
    """Is the realized ``metric`` on ``answers`` significantly below ``gate_value`` - ``margin``?"""
    metric = metric if metric in METRICS else "accuracy"
    n = len(answers)
    truth = np.asarray([a.label == a.positive for a in answers], dtype=bool)
    predicted = np.asarray([a.prediction == a.positive for a in answers], dtype=bool)
    scores = np.asarray([np.nan if a.score is None else a.score for a in answers], dtype=float)
    value = metric_value(metric, truth, predicted, scores) if n else None
    hits, trials = _trials(metric, truth, predicted)
    if gate_value is None:
        return RealizedCheck(metric, value, n, trials, None, None, False,
                             f"realized {metric} not judged: the gate recorded no figure for this model")
    floor = gate_value - margin
    shown = "n/a" if value is None else f"{value:.4f}"
    if n < min_labelled or value is None:
        return RealizedCheck(metric, value, n, trials, gate_value, None, False, (
            f"realized {metric} {shown} on {n} labelled row(s): fewer than {min_labelled} usable, not judged"))
    if metric in _PROPORTIONS:
        from scipy.stats import binomtest

        p_value = float(binomtest(hits, trials, floor, alternative="less").pvalue) if trials else 1.0
        test = f"exact binomial, {hits}/{trials}"
    else:
        p_value = _bootstrap_p(metric, truth, predicted, scores, floor)
        test = f"bootstrap, {BOOTSTRAP} resamples"
    below = p_value < alpha
    verdict = "significantly below" if below else "not significantly below"
    return RealizedCheck(metric, value, n, trials, gate_value, round(p_value, 6), below, (
        f"watch: realized {metric} {shown} on {n} labelled live row(s) is {verdict} the gate's {gate_value:.4f} - "
        f"{margin:g} (one-sided {test}, p = {p_value:.2g}, alpha {alpha:g})"))


def _trials(metric: str, truth: np.ndarray, predicted: np.ndarray) -> tuple[int, int]:
    if metric == "precision":
        return int(np.sum(truth & predicted)), int(np.sum(predicted))
    if metric == "recall":
        return int(np.sum(truth & predicted)), int(np.sum(truth))
    return int(np.sum(truth == predicted)), len(truth)


def _bootstrap_p(metric: str, truth: np.ndarray, predicted: np.ndarray, scores: np.ndarray, floor: float) -> float:
    rng = np.random.default_rng(0)
    n = len(truth)
    at_or_above = counted = 0
    for _ in range(BOOTSTRAP):
        pick = rng.integers(0, n, n)
        value = metric_value(metric, truth[pick], predicted[pick], scores[pick])
        if value is not None:
            counted += 1
            at_or_above += value >= floor
    return (at_or_above + 1) / (counted + 1)
