"""The local backend: a folder on one machine (MLflow on SQLite, worker processes, a local HTTP host)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from backends.fileio import write_atomic
from backends.base import (
    DEFAULT_MODEL_NAME,
    Backend,
    DataRef,
    Endpoint,
    EvalReport,
    HistoryEntry,
    ModelVersion,
    SweepResult,
    TrialResult,
)
from backends.domain.dataset import canonical_csv
from backends.errors import DeploymentError, RegistrationError, UploadError
from backends.local import tracking
from backends.domain.history import HistoryLog, HistoryStore
from backends.local.locks import LockBusy, file_lock
from backends.local.endpoints import LocalEndpoints
from backends.local.live_traffic import LocalLiveTraffic
from backends.local.registry import LocalRegistry
from backends.local.shared_history import MlflowHistoryLog
from backends.domain.shadow import ServedAnswer, WatchSample
from backends.local.sweep import LocalSweepRunner
from backends.local.watch import LocalWatch
from backends.domain.spec import DeploySpec, SweepSpec
from src.features import DatasetSchema

if TYPE_CHECKING:
    from backends.domain.monitoring import MonitorReport
    from backends.domain.realized import LabelledAnswer

logger = logging.getLogger(__name__)

PLOTS_DIR = "plots"
RESULTS_DIR = "prefect-results"  # Prefect's cached results of this home's uploads and sweeps


def default_home() -> Path:
    return Path(os.environ.get("HEARTFLOW_HOME", ".heartflow")).resolve()


class LocalBackend(Backend):
    name = "local"

    def __init__(
        self, home: Path | str | None = None, tracking_uri: str | None = None, artifact_root: str | None = None,
    ) -> None:
        """``tracking_uri`` (else MLFLOW_TRACKING_URI, else <home>/mlflow.db) is the MLflow tracking and
        registry store; a shared one also keeps the promotion history, so every machine sees it."""
        self.home = Path(home).resolve() if home else default_home()
        self.home.mkdir(parents=True, exist_ok=True)
        tracking.check_no_password(tracking_uri)  # a flag or a flow parameter is seen by others; the environment is not
        uri = tracking.resolve_tracking_uri(self.home, tracking_uri)
        with file_lock(self.home / ".setup.lock"):
            self._client = tracking.make_client(self.home, uri)
            self._experiment_id = tracking.ensure_experiment(self._client, self.home, artifact_root)
        self.registry = LocalRegistry(self._client)
        self.shared_store = tracking.is_shared(uri, self.home)
        self._history: HistoryStore = (
            MlflowHistoryLog(self._client) if self.shared_store else HistoryLog(self.home / "history.jsonl")
        )
        self.endpoints = LocalEndpoints(self.home, self.registry, self._history)
        self.watch = LocalWatch(self._client, self.endpoint)
        self.live = LocalLiveTraffic(self.home)
        self._warm_request: DeploySpec | None = None
        self._warmed: str | None = None

    # ---- shadow and watch (backends.domain.shadow.LiveTraffic): LocalLiveTraffic ---------------------------
    def start_mirror(self, endpoint: Endpoint, candidate: str, percent: int) -> str:
        return self.live.start_mirror(endpoint, candidate, percent)

    def stop_mirror(self, endpoint: Endpoint) -> None:
        self.live.stop_mirror(endpoint)

    def mirrored_answers(self, endpoint: Endpoint, session: str) -> tuple[tuple[ServedAnswer, ...], int]:
        return self.live.mirrored_answers(endpoint, session)

    def start_watch(self, endpoint: Endpoint, champion: str, previous: str) -> str:
        return self.live.start_watch(endpoint, champion, previous)

    def watch_sample(self, endpoint: Endpoint, session: str) -> WatchSample:
        return self.live.watch_sample(endpoint, session)

    def stop_watch(self, endpoint: Endpoint) -> None:
        self.live.stop_watch(endpoint)

    # ---- scheduled retraining: LocalWatch -----------------------------------------------------------
    def serving(self, endpoint_name: str) -> Endpoint | None:
        return self.watch.serving(endpoint_name)

    def tag_model(self, model: ModelVersion, tags: Mapping[str, str]) -> None:
        self.watch.tag_model(model, tags)

    def record_champion_score(self, model: ModelVersion, accuracy: float, rows: int) -> tuple[float, ...]:
        return self.watch.record_champion_score(model, accuracy, rows)

    @property
    def mlflow_uri(self) -> str:
        """The tracking store's URI, any password masked."""
        return tracking.redact(self._client.tracking_uri)

    @property
    def mlflow_client(self):  # noqa: ANN201 - MlflowClient
        return self._client

    # ---- upload -----------------------------------------------------------------------------------
    def upload(self, train: pd.DataFrame) -> DataRef:
        """Content-addressed under <home>/data/<sha256>/train.csv; written to a temporary file and
        renamed into place, so a crash never leaves a half-written copy under the final name."""


        payload = canonical_csv(train)
        sha = hashlib.sha256(payload).hexdigest()
        folder = self.home / "data" / sha
        target = folder / "train.csv"
        ref = DataRef(uri=target.as_uri(), sha256=sha, rows=len(train), columns=tuple(map(str, train.columns)))
        if target.exists() and hashlib.sha256(target.read_bytes()).hexdigest() == sha:
            logger.info("training data %s already stored at %s", sha[:12], target)
            return ref
        try:
            folder.mkdir(parents=True, exist_ok=True)
            write_atomic(target, payload)
            (folder / "meta.json").write_text(json.dumps({"rows": len(train), "columns": list(ref.columns)}))
        except OSError as exc:
            raise UploadError(f"could not store the training data under {folder}: {exc}") from exc
        logger.info("stored %d training rows at %s", len(train), target)
        return ref

    # ---- sweep ------------------------------------------------------------------------------------
    def sweep(
        self, data: DataRef, spec: SweepSpec, schema: DatasetSchema,
        progress: Callable[[TrialResult, int, int], None] | None = None,
    ) -> SweepResult:
        runner = LocalSweepRunner(self.home, self._client, self._experiment_id)
        result = runner.run(data, spec, schema.to_json(), self.sweep_identity(data, spec, schema.to_json()), progress,
                            on_tail=self._start_warm_endpoint)
        return dataclasses.replace(
            result,
            url=f"mlflow ui --backend-store-uri {self.mlflow_uri} -> experiment {tracking.EXPERIMENT}, run {result.sweep_id}",
        )

    # ---- the endpoint's host started during the sweep's tail (backends.base.EndpointWarmer) --------------
    def warm_endpoint(self, spec: DeploySpec) -> None:
        self._warm_request = spec

    def _start_warm_endpoint(self) -> None:
        spec, self._warm_request = self._warm_request, None
        if spec is not None and self._manager(spec.endpoint_name).start_warm(port=spec.port, workers=spec.workers):
            self._warmed = spec.endpoint_name

    def release_warm_endpoint(self) -> None:
        self._warm_request = None
        warmed, self._warmed = self._warmed, None
        if warmed is not None:
            self._manager(warmed).release_warm()

    # ---- registry ---------------------------------------------------------------------------------
    def register(self, sweep: SweepResult, model_name: str = DEFAULT_MODEL_NAME) -> ModelVersion:
        return self.registry.register(model_name, sweep)

    def get_model(self, model_name: str, version: str) -> ModelVersion:
        return self.registry.get(model_name, version)

    # ---- endpoint: the rollout policy over the local primitives ---------------------------------------
    def _manager(self, endpoint_name: str):  # noqa: ANN202 - imported lazily
        return self.endpoints.manager(endpoint_name)

    def rollout_policy(self) -> LocalEndpoints:
        """promote, reject and champion (``Backend``) go through LocalEndpoints and its LocalRegistry."""
        return self.endpoints

    def deploy(self, model: ModelVersion, spec: DeploySpec) -> Endpoint:
        """Blue or green, whichever does not serve, after restoring a lost champion: see
        ``backends.domain.rollout``."""
        return self.endpoints.deploy(model, spec)

    def endpoint(self, endpoint_name: str, deployment: str | None = None) -> Endpoint | None:
        """The running endpoint, addressed to ``deployment`` or to the one with the most traffic."""
        manager = self._manager(endpoint_name)
        if not manager.is_running():
            return None
        status = manager.status()
        if status is None or not status.deployments:
            return None
        chosen = deployment or max(status.traffic.items(), key=lambda kv: kv[1])[0]
        return self.endpoints.to_endpoint(manager, status, chosen)

    def endpoint_key(self, endpoint: Endpoint) -> str:
        return self._manager(endpoint.name).key()

    def evaluate(
        self, endpoint: Endpoint, holdout: pd.DataFrame, target: str, batch_size: int = 32,
        deployment: str | None = None,
    ) -> EvalReport:
        """Evaluate over HTTP, then log the report to the MLflow run that trained the evaluated model:
        the text report, the report as JSON, the confusion matrix and holdout metrics."""
        report = super().evaluate(endpoint, holdout, target, batch_size, deployment)
        self._log_evaluation(endpoint, report)
        return report

    def _log_evaluation(self, endpoint: Endpoint, report: EvalReport) -> None:


        from mlflow.entities import Metric

        status = self._manager(endpoint.name).status()
        served = status.deployment(report.deployment) if status else None
        if served is None:
            return
        run_id = self.registry.get(served.model_name, served.model_version).source_run_id
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        folder = f"evaluations/{stamp}-{endpoint.name}-{report.deployment}"
        self._client.log_text(run_id, report.report_text, f"{folder}/classification_report.txt")
        self._client.log_dict(
            run_id,
            {"report": dict(report.report), "confusion_matrix": [list(r) for r in report.confusion_matrix],
             "rows": report.rows, "endpoint": report.endpoint, "deployment": report.deployment},
            f"{folder}/classification_report.json",
        )
        now = int(time.time() * 1000)
        metrics = [Metric("holdout_accuracy", report.accuracy, now, 0)]
        for label in ("0", "1"):
            for name in ("precision", "recall", "f1-score"):
                value = report.report.get(label, {}).get(name)
                if value is not None:
                    metrics.append(Metric(f"holdout_{name.replace('-score', '')}_{label}", float(value), now, 0))
        self._client.log_batch(run_id, metrics=metrics)

    def record_gate(self, model: ModelVersion, numbers: Mapping[str, Any]) -> None:
        """The gate's numbers as ``gate_*`` metrics and tags of the model's training run in MLflow."""
        from mlflow.entities import Metric, RunTag
        from mlflow.exceptions import MlflowException

        from backends.domain.gate_stats import gate_metrics_and_tags

        now = int(time.time() * 1000)
        metrics, tags = gate_metrics_and_tags(numbers)
        try:
            self._client.log_batch(model.source_run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
                                   tags=[RunTag(k, v) for k, v in tags.items()])
        except MlflowException as exc:
            raise RegistrationError(f"could not record the gate's numbers on run {model.source_run_id}: {exc}") from exc

    def history(self, endpoint_name: str) -> tuple[HistoryEntry, ...]:
        return self._history.read(endpoint_name)

    @contextmanager
    def rollout_lock(self, endpoint_name: str, timeout_s: float = 7200.0) -> Iterator[None]:
        """An exclusive lock on <home>/endpoints/<name>/rollout.lock: two `heartflow run`s on one home,
        each with its own temporary Prefect API, still roll out one after the other."""
        path = self.home / "endpoints" / endpoint_name / "rollout.lock"
        try:
            with file_lock(path, timeout_s):
                yield
        except LockBusy as exc:
            raise DeploymentError(
                f"another run is rolling out to endpoint {endpoint_name} (lock {path}); "
                f"nothing was deployed: try again when it has finished"
            ) from exc

    def teardown(self, endpoint_name: str) -> None:
        self._manager(endpoint_name).stop()

    # ---- monitoring: EndpointMonitor over the host's capture ---------------------------------------------
    @property
    def monitoring(self):  # noqa: ANN201 - LocalMonitor, imported lazily
        from backends.local.monitoring import LocalMonitor

        return LocalMonitor(self.home, self.registry)

    def labelled_answers(self, endpoint: Endpoint, deployment: str, since: datetime) -> tuple[LabelledAnswer, ...]:
        """``backends.domain.realized.LabelledAnswers``: the host's capture joined to its feedback files."""
        return self.monitoring.labelled_answers(endpoint.name, deployment, since)

    def monitor(self, endpoint_name: str, since: datetime) -> MonitorReport:
        return self.monitoring.monitor(endpoint_name, since)

    def monitor_history(self, endpoint_name: str, limit: int = 200) -> list[dict[str, Any]]:
        return self.monitoring.history(endpoint_name, limit)

    def log_monitor(self, report: MonitorReport) -> None:
        self.monitoring.log(report, self._client)

    def export_labelled(self, endpoint_name: str, report: MonitorReport, minimum: int) -> str | None:
        return self.monitoring.export_labelled(endpoint_name, report, minimum)

    # ---- what tasks need besides the stages -----------------------------------------------------------
    stores_files = True

    def attach_files(self, model: ModelVersion, files: Sequence[Path]) -> None:
        """MLflow artifacts under ``plots/`` of the run that trained ``model``."""
        self._log_files(model.source_run_id, files)

    def attach_sweep_files(self, sweep: SweepResult, files: Sequence[Path]) -> None:
        """MLflow artifacts under ``plots/`` of the sweep's parent run."""
        self._log_files(sweep.sweep_id, files)

    def _log_files(self, run_id: str, files: Sequence[Path]) -> None:
        from mlflow.exceptions import MlflowException

        try:
            for file in files:
                self._client.log_artifact(run_id, str(file), artifact_path=PLOTS_DIR)
        except (MlflowException, OSError) as exc:
            raise RegistrationError(f"could not log {len(files)} file(s) to MLflow run {run_id}: {exc}") from exc

    def store_identity(self) -> str:
        return f"{self.name}:{self.home}"

    def result_storage(self) -> Path:
        folder = self.home / RESULTS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        return folder
