"""The typed results every stage returns: frozen dataclasses, never a dict and never an SDK object, so
that tasks, the CLI and Prefect artifacts see the same shape whichever backend ran.

They live apart from the Backend interface (backends.base re-exports them) so that modules the interface
uses, such as the HTTP evaluation client, can import them without importing the interface.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import Enum
from types import MappingProxyType
from typing import Any


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class DataRef:
    """Where the training split was stored, and what it holds."""

    uri: str
    sha256: str
    rows: int
    columns: tuple[str, ...] = ()
    split: str = ""  # how these training rows were chosen (backends.domain.split.split_tag), recorded on the model


class TrialStatus(str, Enum):
    COMPLETED = "completed"
    FAILED = "failed"


@dataclass(frozen=True)
class TrialResult:
    """One trial of a sweep: its parameters, its validation metrics and how it ended."""

    number: int
    run_id: str
    params: Mapping[str, Any]
    metrics: Mapping[str, float]
    status: TrialStatus
    duration_s: float = 0.0
    error: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", _frozen(self.params))
        object.__setattr__(self, "metrics", _frozen(self.metrics))


@dataclass(frozen=True)
class SweepResult:
    """Every trial of a sweep and the best one (chosen by ``backends.domain.selection.pick_best_trial``)."""

    sweep_id: str
    primary_metric: str
    goal: str
    trials: tuple[TrialResult, ...]
    best: TrialResult
    data: DataRef
    url: str | None = None  # MLflow UI or Azure ML Studio page of the sweep

    @property
    def completed(self) -> tuple[TrialResult, ...]:
        return tuple(t for t in self.trials if t.status is TrialStatus.COMPLETED)

    @property
    def failed(self) -> tuple[TrialResult, ...]:
        return tuple(t for t in self.trials if t.status is TrialStatus.FAILED)


@dataclass(frozen=True)
class ModelVersion:
    """A registered model version and where it came from."""

    name: str
    version: str
    source_run_id: str
    sweep_id: str
    metric_name: str
    metric_value: float
    data_sha256: str
    uri: str
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", _frozen(self.tags))


@dataclass(frozen=True)
class Endpoint:
    """A real-time endpoint and the deployment a call is addressed to.

    The key is never part of this object: ``key_hint`` says how a person gets it, and
    ``Backend.endpoint_key`` returns it to code that must call the endpoint.
    """

    name: str
    deployment: str
    scoring_uri: str
    model_name: str
    model_version: str
    key_hint: str
    traffic: Mapping[str, int] = field(default_factory=dict)
    url: str | None = None  # a page to look at (local: the OpenAPI docs; azure: the Studio page)

    def __post_init__(self) -> None:
        object.__setattr__(self, "traffic", _frozen(self.traffic))


@dataclass(frozen=True)
class EvalReport:
    """Holdout predictions that came back over HTTP, and what they score."""

    endpoint: str
    deployment: str
    model_version: str
    rows: int
    labels: tuple[int, ...]
    predictions: tuple[int, ...]
    accuracy: float
    report_text: str  # sklearn.metrics.classification_report, text format
    report: Mapping[str, Any]  # the same report as a dict
    confusion_matrix: tuple[tuple[int, ...], ...]
    requests: int
    latency_ms_p50: float
    row_ids: tuple[str, ...] = ()  # each row's content key (backends.domain.split), aligned with labels
    scores: tuple[float, ...] = ()  # the positive class's probability per row, when the endpoint gave them


@dataclass(frozen=True)
class GateFigures:
    """The promotion gate's numbers behind a decision (``backends.domain.selection.GateDecision.figures``):
    what a history entry keeps so "why was it promoted" is answered by numbers, not only by reason text."""

    rule: str  # the gate's mode: "tolerance" or "paired"
    rows: int  # holdout rows compared (those the champion did not train on)
    candidate_accuracy: float  # on the compared rows
    champion_accuracy: float | None = None  # None: there was no champion to compare with
    difference: float | None = None  # candidate - champion
    p_value: float | None = None  # McNemar exact, two-sided; None when no paired comparison ran
    p_worse: float | None = None  # McNemar exact, one-sided (the candidate is worse): the paired rule's test
    tolerance: float | None = None
    metric: str = "accuracy"  # the run's metric (issue 17): the floor and the comparison use it
    candidate_value: float | None = None  # the metric, candidate (None: a record written before metrics)
    champion_value: float | None = None
    baseline: float | None = None  # the metric's no-skill baseline on the holdout
    baseline_p: float | None = None  # one-sided p that the candidate is no better than the baseline
    cv_folds: int | None = None  # the CV-paired comparison (backends.domain.cv_gate), when it ran
    cv_difference: float | None = None
    cv_low: float | None = None
    cv_high: float | None = None
    cv_p_worse: float | None = None
    cv_power: float | None = None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> GateFigures:
        """From ``dataclasses.asdict`` of one (what the history stores keep)."""
        def number(key: str) -> float | None:
            value = record.get(key)
            return None if value is None else float(value)

        return cls(rule=str(record["rule"]), rows=int(record["rows"]),
                   candidate_accuracy=float(record["candidate_accuracy"]),
                   champion_accuracy=number("champion_accuracy"), difference=number("difference"),
                   p_value=number("p_value"), p_worse=number("p_worse"), tolerance=number("tolerance"),
                   metric=str(record.get("metric") or "accuracy"), candidate_value=number("candidate_value"),
                   champion_value=number("champion_value"), baseline=number("baseline"),
                   baseline_p=number("baseline_p"), cv_folds=None if record.get("cv_folds") is None else int(record["cv_folds"]),
                   cv_difference=number("cv_difference"), cv_low=number("cv_low"), cv_high=number("cv_high"),
                   cv_p_worse=number("cv_p_worse"), cv_power=number("cv_power"))


@dataclass(frozen=True)
class ShadowFigures:
    """What the shadow stage saw (``backends.domain.shadow``): copies of live requests answered by the candidate
    beside the champion, joined by request id. Latencies are each side's scoring time on the endpoint host."""

    seconds: float  # how long live requests were mirrored
    mirrored: int  # requests answered by both sides and joined by request id
    rows: int  # rows both sides answered (what disagreement is measured on)
    disagreement: float | None  # share of those rows where the two predictions differ
    disagreement_low: float | None  # Wilson 95 % interval of the disagreement
    disagreement_high: float | None
    candidate_errors: int  # mirrored requests the champion answered and the candidate failed
    champion_errors: int  # mirrored requests the champion itself failed (not held against the candidate)
    candidate_p50_ms: float | None
    candidate_p99_ms: float | None
    champion_p50_ms: float | None
    champion_p99_ms: float | None
    min_requests: int  # the fewest mirrored requests the gate reads
    dropped: int = 0  # copies the host did not mirror because its mirror queue was full (never a client's request)

    @property
    def enough(self) -> bool:
        return self.mirrored >= self.min_requests

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ShadowFigures:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in known})


@dataclass(frozen=True)
class WatchRecord:
    """The watch after a promotion (``backends.domain.shadow``): ``watching`` while the window is open, then
    ``passed`` or ``rolled_back`` (with the reason)."""

    outcome: str  # "watching" | "passed" | "rolled_back"
    seconds: float  # the window asked for
    requests: int = 0  # live requests the new champion answered in the window
    errors: int = 0  # of those, answered with a server error (5xx)
    p99_ms: float | None = None  # its scoring p99 in the window
    reason: str = ""
    check: str = ""  # the limit a rollback crossed: "errors", "p99" or "realized" (empty when none was)
    realized_metric: str | None = None  # the run's metric on the live rows feedback labelled in the window
    realized_value: float | None = None
    realized_labelled: int = 0
    realized_p_value: float | None = None  # one-sided: below the gate's figure (backends.domain.realized)
    gate_value: float | None = None  # the gate's figure for this model, the realized metric's reference

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> WatchRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in known})


@dataclass(frozen=True)
class HistoryEntry:
    """One promotion, rejection or rollback: what an operator needs to answer "what served when"."""

    time: str  # ISO 8601, UTC
    event: str  # "promoted", "rejected", "rollback" or "watch-passed"
    endpoint: str
    deployment: str
    model_name: str
    model_version: str
    accuracy: float | None
    champion_accuracy: float | None
    reason: str
    triggered_by: str
    gate: GateFigures | None = None  # the gate's numbers when a gate decided (None: a rollback, a manual
    # rejection, or an entry written before the figures were recorded)
    shadow: ShadowFigures | None = None  # the shadow stage's figures (None: no shadow ran)
    watch: WatchRecord | None = None  # the watch after a promotion (None: no watch)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> HistoryEntry:
        """From ``dataclasses.asdict`` of one, as the history stores keep it; an entry written before the
        gate's figures were recorded reads with ``gate`` None."""
        gate, shadow, watch = record.get("gate"), record.get("shadow"), record.get("watch")
        known = {k: v for k, v in record.items() if k in _HISTORY_FIELDS and k not in {"gate", "shadow", "watch"}}
        return cls(**known, gate=None if gate is None else GateFigures.from_record(gate),
                   shadow=None if shadow is None else ShadowFigures.from_record(shadow),
                   watch=None if watch is None else WatchRecord.from_record(watch))


_HISTORY_FIELDS = frozenset(f.name for f in fields(HistoryEntry))
