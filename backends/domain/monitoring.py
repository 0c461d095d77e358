"""What a deployment was asked and how its answers turned out, over a window of captured records: the
figures of ``heartflow monitor`` and the ``monitor-endpoint`` flow, the same for both backends.

Input drift uses the retraining drift rules (``backends.domain.drift``: PSI, chi-square) against the serving
model's training data. Prediction drift compares the share of positive answers (two-proportion z-test) and
the distribution of P(positive) (PSI) with the model's answers on its holdout, captured when it was
evaluated through the endpoint (requests ``heartflow-holdout-*``). heartflow's own evaluation traffic
(``heartflow-*`` ids) is never counted as live traffic.

Realized performance: the model's metric on the labelled rows, with a 95 % percentile bootstrap interval.
Estimated performance (confidence-based, as NannyML's CBPE) on the unlabelled rows: each row counts as
P(positive) of a positive, so the expected confusion matrix gives the metric. It assumes the probabilities
are calibrated and that P(label | inputs) is what it was in training: it follows covariate shift, and is
blind to concept shift (the same inputs now meaning another label), which only labels reveal.

Degraded: realized performance whose interval's upper end is below the gate's figure minus ``MARGIN``, or
an estimate below it on at least ``MIN_ESTIMATE_ROWS`` unlabelled rows.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from backends.domain import drift as drift_rules
from backends.domain.drift import DriftReport
from backends.errors import DataValidationError

EVAL_PREFIX = "heartflow-"
HOLDOUT_PREFIX = "heartflow-holdout-"
MARGIN = 0.05
MIN_ESTIMATE_ROWS = 50
MIN_DRIFT_ROWS = 30
BOOTSTRAP = 1000
RATE_DIFF = 0.1
METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
ASSUMPTIONS = ("confidence-based (CBPE): assumes calibrated probabilities and an unchanged P(label | inputs); "
               "it follows covariate shift but cannot see concept shift")


@dataclass(frozen=True)
class PredictionDrift:
    rows: int
    positive_rate: float | None
    reference_rows: int
    reference_positive_rate: float | None
    rate_p_value: float | None  # two-proportion z-test, two-sided
    score_psi: float | None  # P(positive) against the holdout's, drift.numeric_psi
    drifted: bool


@dataclass(frozen=True)
class ColumnQuality:
    column: str
    nulls: int
    unseen: int  # categorical: values the training data never had
    out_of_range: int  # numeric: outside the training data's [min, max]


@dataclass(frozen=True)
class Performance:
    metric: str
    value: float | None
    rows: int
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class MonitorReport:
    """One window of one endpoint: traffic, drift, quality, realized and estimated performance."""

    endpoint: str
    model_name: str
    model_version: str
    since: str
    until: str
    requests: int
    scored_rows: int
    errors: Mapping[str, int]
    rejected: Mapping[str, int]
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    drift: DriftReport | None
    prediction_drift: PredictionDrift
    quality: tuple[ColumnQuality, ...]
    realized: Performance | None
    estimated: Performance | None
    gate_value: float | None
    degraded: bool
    degraded_reason: str
    unknown_labels: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def drifted(self) -> tuple[str, ...]:
        return self.drift.drifted if self.drift is not None else ()

    def to_json(self) -> dict[str, Any]:
        perf = self.realized
        return {
            "endpoint": self.endpoint, "model": self.model_name, "model_version": self.model_version,
            "since": self.since, "until": self.until, "requests": self.requests, "scored_rows": self.scored_rows,
            "errors": dict(self.errors), "rejected": dict(self.rejected),
            "latency_ms": {"p50": self.latency_p50_ms, "p99": self.latency_p99_ms},
            "drifted": list(self.drifted),
            "drift": self.drift.rows_for_table() if self.drift is not None else [],
            "prediction_drift": asdict(self.prediction_drift),
            "data_quality": {q.column: {"nulls": q.nulls, "unseen": q.unseen, "out_of_range": q.out_of_range}
                             for q in self.quality},
            "realized": None if perf is None else {"metric": perf.metric, "value": perf.value, "labelled": perf.rows,
                                                   "interval_95": [perf.low, perf.high]},
            "estimated": None if self.estimated is None else {
                "metric": self.estimated.metric, "value": self.estimated.value, "rows": self.estimated.rows,
                "method": ASSUMPTIONS},
            "gate_value": self.gate_value, "degraded": self.degraded, "degraded_reason": self.degraded_reason,
            "unknown_labels": self.unknown_labels, "notes": list(self.notes),
        }


def parse_since(text: str | None, now: datetime | None = None, default: str = "24h") -> datetime:
    """``30m``, ``6h``, ``7d`` (that long ago) or an ISO 8601 time (UTC when it names no zone)."""
    now = now or datetime.now(UTC)
    raw = (text or default).strip()
    relative = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd])", raw)
    if relative:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[relative.group(2)]
        return now - timedelta(**{unit: float(relative.group(1))})
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise DataValidationError(f"--since {raw!r}: give a duration (30m, 6h, 7d) or an ISO time (2026-12-03T09:00)") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@dataclass
class _Rows:
    frame: list[dict[str, Any]] = field(default_factory=list)
    predictions: list[str] = field(default_factory=list)
    proba: list[float] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)


def is_holdout_answer(record: Mapping[str, Any], model_version: str) -> bool:
    """A captured answer of ``model_version`` to its holdout (sent by the evaluation stage)."""
    return (record.get("kind") == "scored" and str(record.get("request_id", "")).startswith(HOLDOUT_PREFIX)
            and str(record.get("model_version")) == str(model_version))


def _collect(records: Iterable[Mapping[str, Any]], holdout_records: Iterable[Mapping[str, Any]]) -> tuple[dict[str, Any], _Rows, _Rows, str | None]:
    counts: dict[str, Any] = {"requests": 0, "errors": Counter(), "rejected": Counter(), "latency": []}
    live, holdout = _Rows(), _Rows()
    for record in holdout_records:
        _add_rows(holdout, record, str(record.get("request_id", "")))
    positive: str | None = None
    for record in records:
        kind = record.get("kind")
        rid = str(record.get("request_id", ""))
        if kind == "unsampled":
            counts["requests"] += int(record.get("count", 0))
            continue
        if rid.startswith(EVAL_PREFIX):  # heartflow's own evaluation traffic is not what the endpoint is asked
            continue
        counts["requests"] += 1
        if kind == "rejected":
            counts["rejected"][str(record.get("reason", "unknown"))] += 1
            counts["errors"][str(record.get("status"))] += 1
        elif kind == "error":
            counts["errors"][str(record.get("status"))] += 1
        elif kind == "scored":
            counts["latency"].append(float(record.get("latency_ms", 0.0)))
            _add_rows(live, record, rid)
            classes = record.get("classes") or []
            if classes:
                positive = str(classes[-1])
    return counts, live, holdout, positive


def _add_rows(into: _Rows, record: Mapping[str, Any], rid: str) -> None:
    rows = record.get("rows") or []
    predictions = record.get("predictions") or []
    proba = record.get("probabilities") or [math.nan] * len(rows)
    single = len(rows) == 1
    for i, (row, prediction, p) in enumerate(zip(rows, predictions, proba, strict=False)):
        into.frame.append(row if isinstance(row, dict) else {})
        into.predictions.append(str(prediction))
        into.proba.append(float(p) if p is not None else math.nan)
        into.ids.append(rid if single else f"{rid}/{i}")


def summarize(
    records: Iterable[Mapping[str, Any]], labels: Mapping[str, Any], *, endpoint: str, model_name: str,
    model_version: str, since: datetime, until: datetime, reference: pd.DataFrame | None,
    numeric: Sequence[str], categorical: Sequence[str], metric: str = "accuracy", gate_value: float | None = None,
    holdout: Iterable[Mapping[str, Any]] = (),
) -> MonitorReport:
    """The figures of one window. ``labels``: request id (``<id>/<row>`` for a row of a batch) -> label.
    ``holdout``: the model's captured answers to its holdout (``is_holdout_answer``), whenever they were sent."""
    metric = metric if metric in METRICS else "accuracy"
    counts, live, holdout_rows, positive = _collect(records, holdout)
    notes: list[str] = []
    latency = np.asarray(counts["latency"], dtype=float)
    frame = pd.DataFrame(live.frame)
    drift = None
    if reference is None:
        notes.append("input drift not measured: the serving model's training data is not readable")
    elif len(frame) < MIN_DRIFT_ROWS:
        notes.append(f"input drift not measured: {len(frame)} captured rows, fewer than {MIN_DRIFT_ROWS}")
    else:
        ref, cur = _comparable(reference, frame, numeric, categorical)
        drift = drift_rules.compare(ref, cur, [c for c in numeric if c in cur], [c for c in categorical if c in cur])
    quality = _quality(frame, reference, numeric, categorical)
    prediction = _prediction_drift(live, holdout_rows, positive)
    if prediction.reference_rows == 0:
        notes.append("prediction drift against no reference: the model's holdout answers are not in the capture")
    realized, estimated, unknown = _performance(live, labels, positive, metric)
    degraded, reason = _degraded(realized, estimated, gate_value)
    return MonitorReport(
        endpoint=endpoint, model_name=model_name, model_version=str(model_version), since=_iso(since), until=_iso(until),
        requests=int(counts["requests"]), scored_rows=len(live.frame), errors=dict(counts["errors"]),
        rejected=dict(counts["rejected"]),
        latency_p50_ms=round(float(np.percentile(latency, 50)), 3) if latency.size else None,
        latency_p99_ms=round(float(np.percentile(latency, 99)), 3) if latency.size else None,
        drift=drift, prediction_drift=prediction, quality=quality, realized=realized, estimated=estimated,
        gate_value=gate_value, degraded=degraded, degraded_reason=reason, unknown_labels=unknown, notes=tuple(notes),
    )


def _comparable(reference: pd.DataFrame, current: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Numbers as floats without missing values; categories as text (a CSV's 1 and a request's "1" alike)."""
    ref, cur = {}, {}
    for column in numeric:
        if column in reference and column in current:
            ref[column] = pd.to_numeric(reference[column], errors="coerce")
            cur[column] = pd.to_numeric(current[column], errors="coerce")
    for column in categorical:
        if column in reference and column in current:
            ref[column] = _text(reference[column])
            cur[column] = _text(current[column])
    return pd.DataFrame(ref), pd.DataFrame(cur)


def _text(series: pd.Series) -> pd.Series:
    def one(value: Any) -> str:
        if value is None or (isinstance(value, float) and value != value):
            return "<missing>"
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)
    return series.map(one)


def _quality(frame: pd.DataFrame, reference: pd.DataFrame | None, numeric: Sequence[str], categorical: Sequence[str]) -> tuple[ColumnQuality, ...]:
    out = []
    for column in [*numeric, *categorical]:
        if column not in frame:
            continue
        values = frame[column]
        nulls = int(values.isna().sum())
        unseen = out_of_range = 0
        if reference is not None and column in reference:
            if column in categorical:
                known = set(_text(reference[column]))
                unseen = int((~_text(values[values.notna()]).isin(known)).sum())
            else:
                ref = pd.to_numeric(reference[column], errors="coerce")
                cur = pd.to_numeric(values, errors="coerce")
                out_of_range = int(((cur < ref.min()) | (cur > ref.max())).sum())
        out.append(ColumnQuality(column, nulls, unseen, out_of_range))
    return tuple(out)


def _prediction_drift(live: _Rows, holdout: _Rows, positive: str | None) -> PredictionDrift:
    def rate(rows: _Rows) -> float | None:
        return None if not rows.predictions or positive is None else sum(p == positive for p in rows.predictions) / len(rows.predictions)

    current, reference = rate(live), rate(holdout)
    p_value = psi = None
    if current is not None and reference is not None:
        p_value = _two_proportion_p(current, len(live.predictions), reference, len(holdout.predictions))
        live_scores = pd.Series([p for p in live.proba if p == p])
        ref_scores = pd.Series([p for p in holdout.proba if p == p])
        if len(live_scores) and len(ref_scores):
            psi = round(drift_rules.numeric_psi(ref_scores, live_scores), 4)
    drifted = (psi is not None and psi >= drift_rules.MAJOR_PSI) or (
        p_value is not None and p_value < drift_rules.CHI2_ALPHA and abs((current or 0) - (reference or 0)) >= RATE_DIFF)
    return PredictionDrift(len(live.predictions), current, len(holdout.predictions), reference, p_value, psi, bool(drifted))


def _two_proportion_p(p1: float, n1: int, p2: float, n2: int) -> float:
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0 if p1 == p2 else 0.0
    return float(math.erfc(abs(p1 - p2) / se / math.sqrt(2)))


def _performance(live: _Rows, labels: Mapping[str, Any], positive: str | None, metric: str) -> tuple[Performance | None, Performance | None, int]:
    known_ids = set(live.ids)
    unknown = sum(1 for rid in labels if rid not in known_ids)
    labelled = [i for i, rid in enumerate(live.ids) if rid in labels]
    realized = None
    if labelled and positive is not None:
        truth = np.asarray([str(labels[live.ids[i]]) == positive for i in labelled])
        predicted = np.asarray([live.predictions[i] == positive for i in labelled])
        scores = np.asarray([live.proba[i] for i in labelled])
        value = _metric(metric, truth, predicted, scores)
        low, high = _bootstrap(metric, truth, predicted, scores)
        realized = Performance(metric, value, len(labelled), low, high)
    unlabelled = [i for i, rid in enumerate(live.ids) if rid not in labels and live.proba[i] == live.proba[i]]
    estimated = None
    if unlabelled and positive is not None and metric != "roc_auc":
        p = np.asarray([live.proba[i] for i in unlabelled])
        predicted = np.asarray([live.predictions[i] == positive for i in unlabelled])
        tp, fp = float(p[predicted].sum()), float((1 - p[predicted]).sum())
        fn, tn = float(p[~predicted].sum()), float((1 - p[~predicted]).sum())
        estimated = Performance(metric, _round(_from_confusion(metric, tp, fp, fn, tn)), len(unlabelled))
    return realized, estimated, unknown


def metric_value(metric: str, truth: np.ndarray, predicted: np.ndarray, scores: np.ndarray) -> float | None:
    """``metric`` of boolean truth and predictions (roc_auc: of the scores); None where it is undefined."""
    return _metric(metric, truth, predicted, scores)


def _metric(metric: str, truth: np.ndarray, predicted: np.ndarray, scores: np.ndarray) -> float | None:
    if metric == "roc_auc":
        if truth.all() or not truth.any() or np.isnan(scores).any():
            return None
        from sklearn.metrics import roc_auc_score

        return _round(float(roc_auc_score(truth, scores)))
    tp = float(np.sum(truth & predicted))
    fp = float(np.sum(~truth & predicted))
    fn = float(np.sum(truth & ~predicted))
    tn = float(np.sum(~truth & ~predicted))
    return _round(_from_confusion(metric, tp, fp, fn, tn))


def _from_confusion(metric: str, tp: float, fp: float, fn: float, tn: float) -> float | None:
    total = tp + fp + fn + tn
    if metric == "accuracy":
        return (tp + tn) / total if total else None
    if metric == "precision":
        return tp / (tp + fp) if tp + fp else None
    if metric == "recall":
        return tp / (tp + fn) if tp + fn else None
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None  # f1


def _bootstrap(metric: str, truth: np.ndarray, predicted: np.ndarray, scores: np.ndarray) -> tuple[float | None, float | None]:
    rng = np.random.default_rng(0)
    n = len(truth)
    values = []
    for _ in range(BOOTSTRAP):
        pick = rng.integers(0, n, n)
        value = _metric(metric, truth[pick], predicted[pick], scores[pick])
        if value is not None:
            values.append(value)
    if not values:
        return None, None
    return _round(float(np.percentile(values, 2.5))), _round(float(np.percentile(values, 97.5)))


def _degraded(realized: Performance | None, estimated: Performance | None, gate: float | None) -> tuple[bool, str]:
    if gate is None:
        return False, "no gate figure recorded on the serving model"
    floor = gate - MARGIN
    if realized is not None and realized.high is not None and realized.high < floor:
        return True, (f"realized {realized.metric} {realized.value} on {realized.rows} labelled rows: its 95 % interval "
                      f"[{realized.low}, {realized.high}] lies below the gate's {gate:.4f} - {MARGIN}")
    if estimated is not None and estimated.value is not None and estimated.rows >= MIN_ESTIMATE_ROWS and estimated.value < floor:
        return True, (f"estimated {estimated.metric} {estimated.value} on {estimated.rows} unlabelled rows is below "
                      f"the gate's {gate:.4f} - {MARGIN}")
    return False, f"within {MARGIN} of the gate's {gate:.4f} (or not significantly below it)"


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
