"""The Backend interface, the capabilities only some backends have (Provisioner, DataAssetResolver), and
(re-exported) the typed results.

Every stage returns a frozen dataclass from ``backends.results``, never a dict and never an SDK object, so
that tasks, the CLI and Prefect artifacts see the same shape whichever backend ran. The rollout (deploy,
promote, reject) is one policy for both backends, ``backends.domain.rollout.RolloutPolicy``; a backend
supplies its primitives and hands the policy over through ``Backend.rollout_policy``, so promote, reject
and champion are written here once.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from backends.defaults import DEFAULT_ENDPOINT_NAME, DEFAULT_MODEL_NAME
from backends.results import (
    DataRef,
    Endpoint,
    EvalReport,
    GateFigures,
    HistoryEntry,
    ModelVersion,
    SweepResult,
    TrialResult,
    TrialStatus,
)

if TYPE_CHECKING:
    from datetime import datetime

    import pandas as pd

    from backends.client.evaluation import Predictor
    from backends.domain.monitoring import MonitorReport
    from backends.domain.rollout import RolloutPolicy
    from backends.domain.spec import DeploySpec, PipelineSpec, SweepSpec
    from src.features import DatasetSchema

__all__ = [
    "Backend", "DataAssetResolver", "DataRef", "EndpointMonitor", "EndpointWarmer", "Endpoint", "EvalReport", "GateFigures",
    "HistoryEntry", "ModelVersion", "Provisioner", "SweepResult", "TrialResult", "TrialStatus", "DEFAULT_MODEL_NAME",
    "DEFAULT_ENDPOINT_NAME",
]

logger = logging.getLogger(__name__)



class Rendered(Protocol):
    """A report a command prints."""

    def render(self) -> str: ...


@runtime_checkable
class EndpointMonitor(Protocol):
    """A backend that captures what its endpoints are asked (local: the host's capture files): monitoring
    figures over a window, labels joined by request id, and the figures logged on the serving model's run."""

    def monitor(self, endpoint_name: str, since: datetime) -> MonitorReport:
        """The figures of ``backends.domain.monitoring`` from ``since`` to now; raises ConfigurationError
        when the endpoint has never been deployed."""
        ...

    def monitor_history(self, endpoint_name: str, limit: int = 200) -> list[dict[str, Any]]:
        """Earlier monitor figures (``MonitorReport.to_json``), oldest first."""
        ...

    def log_monitor(self, report: MonitorReport) -> None:
        """The figures as metrics on the serving model's training run (step: the window's end)."""
        ...

    def export_labelled(self, endpoint_name: str, report: MonitorReport, minimum: int) -> str | None:
        """The report's window of labelled rows as a table a run can train on (its URI), or None when fewer
        than ``minimum`` rows carry labels."""
        ...


@runtime_checkable
class Provisioner(Protocol):
    """A backend with resources to plan, create and remove beyond one endpoint (Azure: workspace,
    compute, environment, storage). The local backend has none: its home folder is created on use."""

    def plan(self, spec: PipelineSpec, *, data_sha256: str | None = None) -> Rendered:
        """Every object a run would create, validated; calls nothing remote."""
        ...

    def provision(self, create_workspace: bool = False) -> Rendered:
        """Get-or-create what a run needs. Idempotent."""
        ...

    def teardown_all(self, yes: bool = False) -> Rendered:
        """Remove what heartflow created (without ``yes``: report what would be removed)."""
        ...

    def teardown(self, endpoint_name: str) -> None:
        """Delete one endpoint and its deployments (as ``Backend.teardown``)."""
        ...


@runtime_checkable
class EndpointWarmer(Protocol):
    """A backend whose first deploy to an endpoint waits for a serving process to start (local: the host's
    Python start-up, 2-3 s). The flow asks before the sweep; the process starts when the sweep hands out its
    last trial (its start then overlaps the sweep's tail, not the deploy), only for an endpoint never
    deployed. The flow releases it in every outcome: a warm process no deployment took is stopped."""

    def warm_endpoint(self, spec: DeploySpec) -> None:
        """Start ``spec.endpoint_name``'s serving process during the next sweep's tail, if it was never deployed."""
        ...

    def release_warm_endpoint(self) -> None:
        """Stop the process ``warm_endpoint`` started when no deployment took it; forget a pending request."""
        ...


@runtime_checkable
class DataAssetResolver(Protocol):
    """A backend that reads registered data assets (Azure ML: ``azureml:NAME@latest``). The flow and the CLI
    check for it; a backend without it refuses such a URI with one line saying which backend reads it."""

    def resolve_data_asset(self, uri: str) -> tuple[str, str]:
        """(storage URL, version) of a registered data asset."""
        ...


class Backend(abc.ABC):
    """One method per stage, plus promotion and teardown.

    A backend is built from its settings by ``backends.factory.create_backend``; it holds no
    module-level state, so two backends can live in one process (tests do this). Every method a run
    needs is abstract, or has a default that is real behaviour for every backend (``promote``, ``reject``
    and ``champion`` through the rollout policy; ``predictor`` over HTTP; ``sweep_identity`` by the
    domain's rule); what only some backends can do is a Protocol (``Provisioner``, ``DataAssetResolver``).
    """

    name: str

    # ---- the stages ---------------------------------------------------------------------------------
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
    def register(self, sweep: SweepResult, model_name: str = DEFAULT_MODEL_NAME) -> ModelVersion:
        """Register ``sweep.best`` as a new version of ``model_name`` with lineage tags. The new version is
        a candidate: it becomes champion only through ``promote``. Registering the same trial again
        returns the version it already made. Raises RegistrationError."""

    @abc.abstractmethod
    def deploy(self, model: ModelVersion, spec: DeploySpec) -> Endpoint:
        """Deploy ``model`` beside whatever serves now, with no traffic unless nothing else serves (the
        policy: ``backends.domain.rollout.RolloutPolicy.deploy``). Blocks until the new deployment
        answers. Raises DeploymentError; on failure the endpoint keeps its previous deployments and
        traffic."""

    def evaluate(
        self, endpoint: Endpoint, holdout: pd.DataFrame, target: str, batch_size: int = 32,
        deployment: str | None = None,
    ) -> EvalReport:
        """Send the holdout through the endpoint as a client would (``predictor``), addressed to
        ``deployment`` (default ``endpoint.deployment``), and score the answers
        (``backends.client.evaluation.evaluate_with``); raises EvaluationError when the endpoint does not
        answer correctly. A backend that also records the report (local: in MLflow) extends this."""
        from backends.client.evaluation import evaluate_with

        predictor = self.predictor(endpoint, deployment=deployment, batch_size=batch_size)
        return evaluate_with(predictor, endpoint, holdout, target, deployment=deployment)

    @abc.abstractmethod
    def teardown(self, endpoint_name: str) -> None:
        """Delete the endpoint and its deployments. Idempotent: a missing endpoint is not an error."""

    # ---- calling an endpoint --------------------------------------------------------------------------
    @abc.abstractmethod
    def endpoint_key(self, endpoint: Endpoint) -> str:
        """The key a client sends to ``endpoint``. Never logged."""

    def predictor(self, endpoint: Endpoint, deployment: str | None = None, batch_size: int = 500,
                  purpose: str = "holdout") -> Predictor:
        """Predictions of ``deployment`` (default ``endpoint.deployment``) as a client gets them: over HTTP
        with the endpoint's key, in batches of ``batch_size`` rows; ``purpose`` names heartflow's own traffic
        in its request ids (holdout, decay, importance), so monitoring never counts it as live."""
        from backends.client.evaluation import EndpointPredictor

        return EndpointPredictor(endpoint, self.endpoint_key(endpoint), deployment=deployment, batch_size=batch_size,
                                 purpose=purpose)

    # ---- the rollout: one policy over each backend's primitives (backends.domain.rollout) --------------
    @abc.abstractmethod
    def rollout_policy(self) -> RolloutPolicy:
        """The backend's rollout collaborator: the shared policy over this backend's primitives, holding
        its registry. ``promote``, ``reject`` and ``champion`` go through it."""

    def promote(
        self, endpoint: Endpoint, model: ModelVersion, report: EvalReport, *, reason: str = "",
        triggered_by: str = "", event: str = "promoted", gate: GateFigures | None = None, **live: Any,
    ) -> Endpoint:
        """Give the evaluated deployment 100 % of traffic, make its model the champion (alias or tag
        ``champion``, with its holdout accuracy), remove the deployment it replaced, and append a
        HistoryEntry (``event`` is "promoted" or "rollback") that keeps ``gate``, the gate's numbers when a
        gate decided; ``live`` passes ``shadow`` and ``watch`` (``backends.domain.shadow``) to the record, and a
        ``watch`` keeps the replaced deployment warm at 0 %. Raises DeploymentError."""
        return self.rollout_policy().promote(endpoint, model, report, reason=reason, triggered_by=triggered_by,
                                             event=event, gate=gate, **live)

    def reject(
        self, endpoint: Endpoint, model: ModelVersion, reason: str, *, report: EvalReport | None = None,
        triggered_by: str = "", gate: GateFigures | None = None, **live: Any,
    ) -> None:
        """Remove the candidate deployment (the serving one keeps its traffic), tag the model version
        rejected with ``reason`` and append a HistoryEntry with event "rejected" (keeping ``gate``, as
        ``promote``). Raises DeploymentError."""
        self.rollout_policy().reject(endpoint, model, reason, report=report, triggered_by=triggered_by, gate=gate, **live)

    def champion(self, model_name: str) -> ModelVersion | None:
        """The model version that holds the champion alias (or tag), or None."""
        return self.rollout_policy().registry.champion(model_name)

    @abc.abstractmethod
    def record_gate(self, model: ModelVersion, numbers: Mapping[str, Any]) -> None:
        """Keep the gate's numbers (n, accuracies, difference, p-values, power) with ``model`` in the
        backend's tracking, beside the history entry (its reason and ``gate``)."""

    @abc.abstractmethod
    def history(self, endpoint_name: str) -> tuple[HistoryEntry, ...]:
        """Every promotion, rejection and rollback recorded for ``endpoint_name``, oldest first."""

    @abc.abstractmethod
    def get_model(self, model_name: str, version: str) -> ModelVersion:
        """A registered version by number; raises RegistrationError when it does not exist."""

    def rollout_lock(self, endpoint_name: str, timeout_s: float = 7200.0) -> AbstractContextManager[None]:
        """Held from deploy to the gate's decision, so two runs never roll out to one endpoint at once.
        The base needs none: Prefect's global concurrency slot (tasks/rollout.py) serialises runs that
        share a Prefect server. The local backend adds a file lock for runs that do not."""
        return nullcontext()

    # ---- what tasks need besides the stages --------------------------------------------------------
    @property
    @abc.abstractmethod
    def stores_files(self) -> bool:
        """True when ``attach_files`` keeps the files with the model's run (the reports then link there and
        may write their plots to a scratch folder); False when the files stay where they were written."""

    @abc.abstractmethod
    def attach_files(self, model: ModelVersion, files: Sequence[Path]) -> None:
        """Store report files (plots) with ``model``'s run, under ``plots/`` (``runs:/<source_run_id>/plots/
        <name>``). Raises a HeartflowError when they could not be stored."""

    @abc.abstractmethod
    def attach_sweep_files(self, sweep: SweepResult, files: Sequence[Path]) -> None:
        """Store report files with the sweep's run (``runs:/<sweep_id>/plots/<name>``); as ``attach_files``."""

    @abc.abstractmethod
    def store_identity(self) -> str:
        """Which store this backend writes to (local: its home; azure: its workspace). A cached upload or
        sweep is valid only for the same store."""

    def sweep_identity(self, data: DataRef, spec: SweepSpec, schema_json: str) -> str:
        """What decides a sweep's result: the data, the schema, the search and validation, the seed, the
        training code and ``sweep_environment`` (not concurrency or timeouts, which change how fast, not
        what). Prefect's cache key and the backend's own sweep dedupe both use it
        (``backends.domain.identity``)."""
        from backends.domain.identity import sweep_identity

        return sweep_identity(data, spec, schema_json, self.sweep_environment())

    def sweep_environment(self) -> Mapping[str, str]:
        """Where this backend's trials run, as part of the sweep identity: this interpreter's Python and
        training packages for a backend that trains here (local workers, in-memory); a remote backend
        names its own (Azure: the Environment and the folder trials save to)."""
        from backends.domain.identity import interpreter_environment

        return interpreter_environment()

    def result_storage(self) -> Path | None:
        """Where Prefect keeps this backend's cached results; None means Prefect's default storage."""
        return None

    # ---- scheduled retraining: what serves, what was read, how the champion ages (backends.domain) ----
    @abc.abstractmethod
    def serving(self, endpoint_name: str) -> Endpoint | None:
        """The endpoint addressed to the deployment with the most traffic, or None when nothing serves
        (the endpoint does not exist, is stopped, or has no traffic)."""

    @abc.abstractmethod
    def tag_model(self, model: ModelVersion, tags: Mapping[str, str]) -> None:
        """Add ``tags`` to a registered version (what data it was trained on, where it came from)."""

    @abc.abstractmethod
    def record_champion_score(self, model: ModelVersion, accuracy: float, rows: int) -> tuple[float, ...]:
        """Record the champion's accuracy on a run's new labelled data; return every score recorded so
        far, oldest first (the decay series)."""
