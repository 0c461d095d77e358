"""``AzureBackend``: the heartflow stages on Azure ML (Blob Storage, sweep jobs, the model registry,
managed online endpoints). Upload and sweep are here; the registry (``registry.py``), the rollout
primitives (``deploy.py``, under ``backends.domain.rollout``) and provisioning (``provisioning.py``) are
collaborators the backend is built from."""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError

from backends.azure import entities
from backends.azure.deploy import AzureEndpoints
from backends.azure.ledger import Ledger
from backends.history import HistoryLog
from backends.azure.limits import enforce_limits
from backends.azure.plan import AzurePlan, build_plan
from backends.azure.provisioning import AzureProvisioner, ProvisionReport, TeardownReport
from backends.azure.registry import AzureRegistry
from backends.azure.resilience import RetryPolicy, translate
from backends.azure.settings import AzureSettings, Need
from backends.azure.storage import BlobStore, create_blob_service
from backends.azure.trials import ARM_SCOPE, TERMINAL_STATES, MlflowRestReader, TrialDataReader, TrialWatcher
from backends.base import Backend, DataRef, Endpoint, EvalReport, HistoryEntry, ModelVersion, SweepResult, TrialResult
from backends.domain.identity import sweep_identity
from backends.errors import SweepError
from backends.selection import pick_best_trial
from backends.spec import DeploySpec, PipelineSpec, SweepSpec
from src.features import HEART_SCHEMA, DatasetSchema

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

class AzureBackend(Backend):
    """The Azure adapter. ``ml_client`` and ``blob_service`` are injectable (tests pass fakes built on the
    SDK's operations classes); without them, clients are built from ``settings`` when a stage first
    needs them, so an upload needs only storage settings.

    Built from collaborators that share this backend as their ``AzureSession``: ``registry``
    (AzureRegistry: register, champion, tags), ``endpoints`` (AzureEndpoints: the rollout primitives under
    the shared rollout policy) and ``provisioner`` (AzureProvisioner: get-or-create, provision,
    teardown_all). It satisfies ``backends.base.Provisioner``."""

    name = "azure"

    def __init__(
        self,
        settings: AzureSettings,
        *,
        model_name: str = "heart-classifier",
        ml_client: Any | None = None,
        blob_service: Any | None = None,
        credential: Any | None = None,
        trial_reader: TrialDataReader | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.model_name = model_name
        self._ml_client = ml_client
        self._blob_service = blob_service
        self._credential = credential
        self._trial_reader = trial_reader
        self.retry = retry or RetryPolicy(settings.retry_attempts, settings.retry_initial_s, settings.retry_max_s)
        self._sleep = sleep
        self._clock = clock
        self.ledger = Ledger(settings.ledger_path)
        self.history_log = HistoryLog(Path(settings.ledger_path).parent / "azure-history.jsonl")
        self.registry = AzureRegistry(self, trained_as=model_name)
        self.provisioner = AzureProvisioner(self)
        self.endpoints = AzureEndpoints(self, self.registry, self.provisioner, self.history_log)

    # --- clients ---------------------------------------------------------------------------------

    @property
    def credential(self) -> Any:
        if self._credential is None:
            from azure.identity import DefaultAzureCredential

            self._credential = DefaultAzureCredential()
        return self._credential

    def client(self, stage: str, *extra: Need) -> Any:
        """The MLClient, after checking that ``stage`` has every setting it needs."""
        self.settings.require("workspace", *extra, stage=stage)
        if self._ml_client is None:
            from azure.ai.ml import MLClient

            self._ml_client = MLClient(
                self.credential, self.settings.subscription_id, self.settings.resource_group,
                self.settings.workspace_name, show_progress=False,
                connection_timeout=self.settings.http_timeout_s, read_timeout=self.settings.http_timeout_s,
            )
        return self._ml_client

    def blob_store(self) -> BlobStore:
        self.settings.require("storage", stage="upload")
        if self._blob_service is None:
            self._blob_service = create_blob_service(self.settings, None if self.settings.storage_connection_string else self.credential)
        return BlobStore(self._blob_service, self.settings.container, self.settings.blob_prefix, self.retry, self.settings.http_timeout_s)

    @property
    def workspace_scope(self) -> str:
        s = self.settings
        return f"{s.subscription_id}/{s.resource_group}/{s.workspace_name}"

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One Azure call with the retry policy (transient errors only)."""
        return self.retry.call(what, fn, *args, **kwargs)

    # --- dry run ---------------------------------------------------------------------------------

    def plan(self, spec: PipelineSpec, *, data_sha256: str | None = None) -> AzurePlan:
        """Build and validate every object the run would create; calls nothing on Azure."""
        return build_plan(spec, self.settings, data_sha256=data_sha256)

    # --- upload ----------------------------------------------------------------------------------

    def upload(self, train: pd.DataFrame) -> DataRef:
        return self.blob_store().upload(train)

    # --- sweep -----------------------------------------------------------------------------------

    def data_path(self, data: DataRef) -> str:
        """The datastore URI of an uploaded split (the job reads it through the workspace)."""
        marker = f"/{self.settings.container}/"
        blob = data.uri.split(marker, 1)[1] if marker in data.uri else f"{self.settings.blob_prefix}/{data.sha256}.csv"
        return entities.datastore_uri(self.settings, blob)

    def sweep(
        self, data: DataRef, spec: SweepSpec, schema: DatasetSchema | None = None,
        progress: Callable[[TrialResult, int, int], None] | None = None,
    ) -> SweepResult:
        client = self.client("sweep", "storage")
        enforce_limits(PipelineSpec.model_construct(
            model_name=self.model_name, sweep=spec, deploy=DeploySpec()), self.settings)
        env_ref = self.ensure_sweep_resources()
        schema_json = schema.to_json() if schema is not None and schema != HEART_SCHEMA else None
        job = entities.build_sweep(self.settings, spec, data_path=self.data_path(data), model_name=self.model_name,
                                   environment=env_ref, schema_json=schema_json)
        job.name = f"heartflow-sweep-{data.sha256[:8]}-{uuid.uuid4().hex[:8]}"  # fixed before retries: a retried submit cannot duplicate
        try:
            submitted = self.call("submit the sweep", client.jobs.create_or_update, job, experiment_name=self.settings.experiment_name)
        except AzureError as exc:
            raise translate(exc, SweepError, "submitting the sweep", check=f"compute {self.settings.compute} and environment {env_ref}") from exc
        name = submitted.name or job.name
        url = getattr(submitted, "studio_url", None)
        logger.info("sweep %s submitted (%s trials at most); follow it in Azure ML Studio: %s", name, spec.max_total_trials, url)
        total = min(spec.max_total_trials, spec.grid_size() or spec.max_total_trials)
        watcher = TrialWatcher(lambda: self.trial_reader(client), spec.search_space, total, progress)
        final = self._follow_sweep(client, name, spec, url, watcher)
        try:
            children = list(self.call("list the sweep's trials", client.jobs.list, parent_job_name=name))
        except AzureError as exc:
            raise translate(exc, SweepError, f"listing the trials of sweep {name}", logs=str(url)) from exc
        trials = watcher.all_trials(children)
        logger.info("sweep %s ended %s: %s trials, %s completed", name, final.status, len(trials),
                    sum(1 for t in trials if t.status.value == "completed"))
        try:
            best = pick_best_trial(trials, spec.primary_metric, spec.goal)
        except SweepError as exc:
            raise SweepError(f"sweep {name} ({final.status}): {exc}. Trial logs: {url} or `az ml job stream -n {name}`") from exc
        reported = (getattr(final, "properties", None) or {}).get("best_child_run_id")
        if reported and reported != best.run_id:
            logger.warning("Azure reports %s as the best trial; heartflow's rule (ties -> lower trial number) picked %s",
                           reported, best.run_id)
        return SweepResult(sweep_id=name, primary_metric=spec.primary_metric, goal=spec.goal, trials=trials,
                           best=best, data=data, url=url)

    def _follow_sweep(self, client: Any, name: str, spec: SweepSpec, url: str | None, watcher: TrialWatcher) -> Any:
        """Poll until the sweep ends, logging progress; cancel it and fail if it outlives the deadline."""
        budget = float(spec.timeout_s) + 600.0 if spec.timeout_s else self.settings.sweep_timeout_s
        deadline = self._clock() + budget
        last = None
        while True:
            try:
                job = self.call("read the sweep's status", client.jobs.get, name)
            except AzureError as exc:
                raise translate(exc, SweepError, f"following sweep {name}", logs=str(url)) from exc
            status = str(job.status)
            if status in TERMINAL_STATES:
                return job
            counts = self._poll_trials(client, name, watcher)
            if (status, counts) != last:
                logger.info("sweep %s: %s; trials %s", name, status, counts or "none started yet")
                last = (status, counts)
            if self._clock() >= deadline:
                try:
                    self.call("cancel the overdue sweep", client.jobs.begin_cancel, name)
                except AzureError as exc:
                    logger.warning("could not cancel sweep %s: %s", name, exc)
                raise SweepError(f"sweep {name} was still {status} after {budget:.0f} s and was cancelled so it stops "
                                 f"billing; raise sweep.timeout_s or HEARTFLOW_AZURE_SWEEP_TIMEOUT_S. Logs: {url}")
            self._sleep(self.settings.poll_interval_s)

    def _poll_trials(self, client: Any, name: str, watcher: TrialWatcher) -> str:
        try:
            children = list(self.call("list the sweep's trials", client.jobs.list, parent_job_name=name))
        except AzureError as exc:
            logger.debug("could not list the trials of %s: %s", name, exc)
            return ""
        return watcher.poll(children)

    def trial_reader(self, client: Any) -> TrialDataReader:
        """What the trials logged, from the workspace's MLflow tracking server."""
        if self._trial_reader is None:
            try:
                workspace = self.call("read the workspace", client.workspaces.get, self.settings.workspace_name)
            except AzureError as exc:
                raise translate(exc, SweepError, "reading the workspace's MLflow tracking URI") from exc
            credential = self.credential
            self._trial_reader = MlflowRestReader(
                tracking_uri=str(workspace.mlflow_tracking_uri),
                token=lambda: credential.get_token(ARM_SCOPE).token,
                timeout_s=self.settings.http_timeout_s, retry=self.retry,
            )
        return self._trial_reader

    # --- register and champion: AzureRegistry -------------------------------------------------------

    def register(self, sweep: SweepResult, model_name: str | None = None) -> ModelVersion:
        """A version of ``model_name`` (default: the model name this backend trains) from the best trial."""
        return self.registry.register(sweep, model_name or self.model_name)

    def get_model(self, model_name: str, version: str) -> ModelVersion:
        return self.registry.get(model_name, version)

    def champion(self, model_name: str) -> ModelVersion | None:
        return self.registry.champion(model_name)

    # --- rollout: the shared policy over AzureEndpoints ---------------------------------------------

    def deploy(self, model: ModelVersion, spec: DeploySpec) -> Endpoint:
        return self.endpoints.deploy(model, spec)

    def endpoint_key(self, endpoint: Endpoint) -> str:
        return self.endpoints.endpoint_key(endpoint)

    def promote(
        self, endpoint: Endpoint, model: ModelVersion, report: EvalReport, *, reason: str = "",
        triggered_by: str = "", event: str = "promoted",
    ) -> Endpoint:
        return self.endpoints.promote(endpoint, model, report, reason=reason, triggered_by=triggered_by, event=event)

    def reject(
        self, endpoint: Endpoint, model: ModelVersion, reason: str, *, report: EvalReport | None = None,
        triggered_by: str = "",
    ) -> None:
        self.endpoints.reject(endpoint, model, reason, report=report, triggered_by=triggered_by)

    def history(self, endpoint_name: str) -> tuple[HistoryEntry, ...]:
        return self.endpoints.history(self.endpoints.endpoint_name(endpoint_name))

    def teardown(self, endpoint_name: str) -> None:
        self.endpoints.teardown(self.endpoints.endpoint_name(endpoint_name))

    # --- resources: AzureProvisioner ----------------------------------------------------------------

    def ensure_sweep_resources(self) -> str:
        return self.provisioner.ensure_sweep_resources()

    def provision(self, create_workspace: bool = False) -> ProvisionReport:
        return self.provisioner.provision(create_workspace)

    def teardown_all(self, yes: bool = False) -> TeardownReport:
        return self.provisioner.teardown_all(yes)

    # --- cache identity -----------------------------------------------------------------------------

    def store_identity(self) -> str:
        return f"{self.name}:{self.workspace_scope}"

    def sweep_identity(self, data: DataRef, spec: SweepSpec, schema_json: str) -> str:
        return sweep_identity(data, spec, schema_json)
