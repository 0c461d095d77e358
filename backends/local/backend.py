"""The local backend: a folder on one machine (MLflow on SQLite, worker processes, a local HTTP host)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from backends.base import (
    Backend,
    DataRef,
    Endpoint,
    EvalReport,
    HistoryEntry,
    ModelVersion,
    SweepResult,
    TrialResult,
)
from backends.dataset import canonical_csv
from backends.errors import DeploymentError, UploadError
from backends.local import tracking
from backends.history import HistoryLog, recorded_holdout_accuracy, who
from backends.local.locks import LockBusy, file_lock
from backends.local.registry import LocalRegistry
from backends.local.sweep import LocalSweepRunner
from backends.local.watch import LocalWatchMixin
from backends.spec import DeploySpec, SweepSpec
from src.features import DatasetSchema

logger = logging.getLogger(__name__)

DEPLOYMENT_NAMES = ("blue", "green")


def default_home() -> Path:
    return Path(os.environ.get("HEARTFLOW_HOME", ".heartflow")).resolve()


class LocalBackend(LocalWatchMixin, Backend):
    name = "local"

    def __init__(self, home: Path | str | None = None) -> None:
        self.home = Path(home).resolve() if home else default_home()
        self.home.mkdir(parents=True, exist_ok=True)
        with file_lock(self.home / ".setup.lock"):
            self._client = tracking.make_client(self.home)
            self._experiment_id = tracking.ensure_experiment(self._client, self.home)
        self.registry = LocalRegistry(self._client)
        self._history = HistoryLog(self.home / "history.jsonl")

    @property
    def mlflow_uri(self) -> str:
        return tracking.tracking_uri(self.home)

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
            with tempfile.NamedTemporaryFile(dir=folder, delete=False, suffix=".part") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(handle.name, target)
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
        result = runner.run(data, spec, schema.to_json(), progress)
        return dataclasses.replace(
            result,
            url=f"mlflow ui --backend-store-uri {self.mlflow_uri} -> experiment {tracking.EXPERIMENT}, run {result.sweep_id}",
        )

    # ---- registry ---------------------------------------------------------------------------------
    def register(self, sweep: SweepResult, model_name: str = "heart-classifier") -> ModelVersion:  # type: ignore[override]
        return self.registry.register(model_name, sweep)

    def get_model(self, model_name: str, version: str) -> ModelVersion:
        return self.registry.get(model_name, version)

    def champion(self, model_name: str) -> ModelVersion | None:
        return self.registry.champion(model_name)

    # ---- endpoint ---------------------------------------------------------------------------------
    def _manager(self, endpoint_name: str):  # noqa: ANN202 - imported lazily
        from backends.local.endpoint import LocalEndpointManager

        return LocalEndpointManager(self.home, endpoint_name)

    def deploy(self, model: ModelVersion, spec: DeploySpec) -> Endpoint:
        """Deploy ``model`` as blue or green, whichever is not serving. When nothing serves (a new
        endpoint, or one stopped by an earlier run) but the registry has a champion, the champion is put
        back in front first, so the candidate still lands beside it with no traffic and the gate still
        compares the two live, on the same holdout."""
        manager = self._manager(spec.endpoint_name)
        status = manager.status() if manager.is_running() else None
        serving = [d for d, share in (status.traffic.items() if status else []) if share > 0]
        options = {"port": spec.port, "workers": spec.workers, "max_rows": spec.max_rows,
                   "request_timeout_ms": spec.request_timeout_ms}
        champion = self.registry.champion(model.name)
        if not serving and champion is not None and champion.version != model.version:
            logger.info("endpoint %s serves nothing: restoring champion v%s first", spec.endpoint_name, champion.version)
            manager.deploy(DEPLOYMENT_NAMES[0], self._model_dir(champion), champion.name, champion.version, **options)
            serving = [DEPLOYMENT_NAMES[0]]
        deployment = next((d for d in DEPLOYMENT_NAMES if d not in serving), DEPLOYMENT_NAMES[0])
        status = manager.deploy(deployment, self._model_dir(model), model.name, model.version, **options)
        return self._endpoint(manager, status, deployment)

    def _model_dir(self, model: ModelVersion) -> Path:
        model_dir = tracking.local_path(self.registry.model_dir(model.name, model.version))
        if not (model_dir / "MLmodel").is_file():
            raise DeploymentError(f"model {model.name} version {model.version} has no MLmodel under {model_dir}")
        return model_dir

    def _endpoint(self, manager, status, deployment: str) -> Endpoint:  # noqa: ANN001
        info = next(d for d in status.deployments if d.name == deployment)
        return Endpoint(
            name=status.name,
            deployment=deployment,
            scoring_uri=status.scoring_uri,
            model_name=info.model_name,
            model_version=info.model_version,
            key_hint=f"the file {manager.paths.key} (mode 0600), or HEARTFLOW_ENDPOINT_KEY when set",
            traffic=dict(status.traffic),
            url=status.scoring_uri.rsplit("/", 1)[0] + "/docs",
        )

    def endpoint(self, endpoint_name: str, deployment: str | None = None) -> Endpoint | None:
        """The running endpoint, addressed to ``deployment`` or to the one with the most traffic."""
        manager = self._manager(endpoint_name)
        if not manager.is_running():
            return None
        status = manager.status()
        if status is None or not status.deployments:
            return None
        chosen = deployment or max(status.traffic.items(), key=lambda kv: kv[1])[0]
        return self._endpoint(manager, status, chosen)

    def endpoint_key(self, endpoint: Endpoint) -> str:
        return self._manager(endpoint.name).key()

    def evaluate(
        self, endpoint: Endpoint, holdout: pd.DataFrame, target: str, batch_size: int = 32,
        deployment: str | None = None,
    ) -> EvalReport:
        """Evaluate over HTTP, then log the report to the MLflow run that trained the evaluated model:
        the text report, the report as JSON, the confusion matrix and holdout metrics."""
        report = super().evaluate(endpoint, holdout, target, batch_size=batch_size, deployment=deployment)
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

    def promote(
        self, endpoint: Endpoint, model: ModelVersion, report: EvalReport, *, reason: str = "",
        triggered_by: str = "", event: str = "promoted",
    ) -> Endpoint:
        manager = self._manager(endpoint.name)
        before = manager.status()
        champion = self.registry.champion(model.name)
        old = [d.name for d in (before.deployments if before else []) if d.name != endpoint.deployment]
        status = manager.set_traffic({endpoint.deployment: 100, **{d: 0 for d in old}})
        self.registry.make_champion(model, report.accuracy)
        for name in old:
            manager.delete_deployment(name)
        self._history.append(
            HistoryEntry(
                time=_now(), event=event, endpoint=endpoint.name, deployment=endpoint.deployment,
                model_name=model.name, model_version=model.version, accuracy=report.accuracy,
                champion_accuracy=recorded_holdout_accuracy(champion), reason=reason, triggered_by=triggered_by or who(),
            )
        )
        return self._endpoint(manager, manager.status() or status, endpoint.deployment)

    def reject(
        self, endpoint: Endpoint, model: ModelVersion, reason: str, *, report: EvalReport | None = None,
        triggered_by: str = "",
    ) -> None:
        manager = self._manager(endpoint.name)
        status = manager.status()
        if status is not None and any(d.name == endpoint.deployment for d in status.deployments):
            if status.traffic.get(endpoint.deployment, 0) > 0 and len(status.deployments) == 1:
                # The only deployment cannot be removed without leaving the endpoint empty.
                logger.warning("rejected deployment %s is the endpoint's only one; it keeps serving", endpoint.deployment)
            else:
                manager.delete_deployment(endpoint.deployment)
        self.registry.mark_rejected(model, reason, report.accuracy if report else None)
        champion = self.registry.champion(model.name)
        self._history.append(
            HistoryEntry(
                time=_now(), event="rejected", endpoint=endpoint.name, deployment=endpoint.deployment,
                model_name=model.name, model_version=model.version, accuracy=report.accuracy if report else None,
                champion_accuracy=recorded_holdout_accuracy(champion), reason=reason, triggered_by=triggered_by or who(),
            )
        )

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


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
