"""The Backend interface and its typed results.

Every stage returns a frozen dataclass, never a dict and never an SDK object, so that tasks, the CLI and
Prefect artifacts see the same shape whichever backend ran.
"""

from __future__ import annotations

import abc
from contextlib import AbstractContextManager, nullcontext
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from backends.spec import DeploySpec, SweepSpec
    from src.features import DatasetSchema


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class DataRef:
    """Where the training split was stored, and what it holds."""

    uri: str
    sha256: str
    rows: int
    columns: tuple[str, ...] = ()


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
    """Every trial of a sweep and the best one (chosen by ``backends.selection.pick_best_trial``)."""

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


@dataclass(frozen=True)
class HistoryEntry:
    """One promotion, rejection or rollback: what an operator needs to answer "what served when"."""

    time: str  # ISO 8601, UTC
    event: str  # "promoted", "rejected" or "rollback"
    endpoint: str
    deployment: str
    model_name: str
    model_version: str
    accuracy: float | None
    champion_accuracy: float | None
    reason: str
    triggered_by: str


class Backend(abc.ABC):
    """One method per stage, plus promotion and teardown.

    A backend is built from its settings by ``backends.factory.create_backend``; it holds no
    module-level state, so two backends can live in one process (tests do this).
    """

    name: str

    @abc.abstractmethod
    def upload(self, train: pd.DataFrame) -> DataRef:
        """Store the training split, content-addressed by its sha256. Storing the same data twice is a
        no-op that returns the same DataRef. Nothing is left half-written: a failed upload raises
        UploadError and leaves no partial object behind."""

    @abc.abstractmethod
    def sweep(
        self, data: DataRef, spec: SweepSpec, schema: DatasetSchema,
        progress: Callable[[TrialResult, int, int], None] | None = None,
    ) -> SweepResult:
        """Run every trial of the search space on ``data``; failed trials are recorded, not fatal.
        ``progress(trial, finished, total)`` is called as each trial ends. Raises SweepError when no
        trial completed."""

    @abc.abstractmethod
    def register(self, sweep: SweepResult) -> ModelVersion:
        """Register ``sweep.best`` as a new version with lineage tags. The new version is a candidate:
        it becomes champion only through ``promote``. Raises RegistrationError."""

    @abc.abstractmethod
    def deploy(self, model: ModelVersion, spec: DeploySpec) -> Endpoint:
        """Deploy ``model`` beside whatever serves now, with no traffic unless nothing else serves.
        Blocks until the new deployment answers. Raises DeploymentError; on failure the endpoint keeps
        its previous deployments and traffic."""

    @abc.abstractmethod
    def endpoint_key(self, endpoint: Endpoint) -> str:
        """The key a client sends to ``endpoint``. Never logged."""

    def evaluate(
        self, endpoint: Endpoint, holdout: pd.DataFrame, target: str, batch_size: int = 32,
        deployment: str | None = None,
    ) -> EvalReport:
        """Send the holdout through the endpoint over HTTP, as a client would, addressed to
        ``deployment`` (default ``endpoint.deployment``); raises EvaluationError when the endpoint does
        not answer correctly."""
        from backends.evaluation import evaluate_over_http

        return evaluate_over_http(
            endpoint, self.endpoint_key(endpoint), holdout, target, batch_size=batch_size, deployment=deployment
        )

    @abc.abstractmethod
    def promote(
        self, endpoint: Endpoint, model: ModelVersion, report: EvalReport, *, reason: str = "",
        triggered_by: str = "", event: str = "promoted",
    ) -> Endpoint:
        """Give the evaluated deployment 100 % of traffic, make its model the champion (alias or tag
        ``champion``, with its holdout accuracy), remove the deployment it replaced, and append a
        HistoryEntry (``event`` is "promoted" or "rollback")."""

    @abc.abstractmethod
    def reject(
        self, endpoint: Endpoint, model: ModelVersion, reason: str, *, report: EvalReport | None = None,
        triggered_by: str = "",
    ) -> None:
        """Remove the candidate deployment (the serving one keeps its traffic), tag the model version
        rejected with ``reason`` and append a HistoryEntry with event "rejected"."""

    @abc.abstractmethod
    def history(self, endpoint_name: str) -> tuple[HistoryEntry, ...]:
        """Every promotion, rejection and rollback recorded for ``endpoint_name``, oldest first."""

    @abc.abstractmethod
    def get_model(self, model_name: str, version: str) -> ModelVersion:
        """A registered version by number; raises RegistrationError when it does not exist."""

    @abc.abstractmethod
    def champion(self, model_name: str) -> ModelVersion | None:
        """The model version that holds the champion alias, or None."""

    def rollout_lock(self, endpoint_name: str, timeout_s: float = 7200.0) -> AbstractContextManager[None]:
        """Held from deploy to the gate's decision, so two runs never roll out to one endpoint at once.
        The base needs none: Prefect's global concurrency slot (tasks/rollout.py) serialises runs that
        share a Prefect server. The local backend adds a file lock for runs that do not."""
        return nullcontext()

    # ---- scheduled retraining: what serves, what was read, how the champion ages (backends.domain) ----
    def serving(self, endpoint_name: str) -> Endpoint | None:
        """The endpoint addressed to the deployment with the most traffic, or None when nothing serves
        (the endpoint does not exist, is stopped, or has no traffic)."""
        return None

    def resolve_data_asset(self, uri: str) -> tuple[str, str]:
        """(storage URL, version) of a registered data asset (``azureml:NAME@latest``); Azure only."""
        from backends.errors import DataValidationError

        raise DataValidationError(f"{uri} is an Azure ML data asset: read it with --backend azure")

    def tag_model(self, model: ModelVersion, tags: Mapping[str, str]) -> None:
        """Add ``tags`` to a registered version (what data it was trained on, where it came from)."""

    def record_champion_score(self, model: ModelVersion, accuracy: float, rows: int) -> tuple[float, ...]:
        """Record the champion's accuracy on a run's new labelled data; return every score recorded so
        far, oldest first (the decay series)."""
        return (accuracy,)

    @abc.abstractmethod
    def teardown(self, endpoint_name: str) -> None:
        """Delete the endpoint and its deployments. Idempotent: a missing endpoint is not an error."""
