"""``AzureBackend``: the heartflow stages on Azure ML (Blob Storage, sweep jobs, the model registry,
managed online endpoints). Upload and sweep are here; the registry (``registry.py``), the rollout
primitives (``deploy.py``, under ``backends.domain.rollout``) and provisioning (``provisioning.py``) are
collaborators the backend is built from."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError

from backends.azure import entities
from backends.azure.deploy import AzureEndpoints
from backends.azure.ledger import Ledger
from backends.azure.live_traffic import AzureLiveTraffic
from backends.azure.monitoring import AzureEndpointMonitoring
from backends.domain.history import HistoryLog
from backends.azure.limits import enforce_limits
from backends.azure.plan import AzurePlan, build_plan
from backends.azure.provisioning import AzureProvisioner, ProvisionReport, TeardownReport
from backends.azure.registry import AzureRegistry
from backends.azure.resilience import SDK_CLIENT_OPTIONS, RetryPolicy, translate
from backends.azure.settings import AzureSettings, Need, make_credential
from backends.azure.storage import (
    BlobStore, StoredSplit, blob_name_for, container_scope, create_blob_service, datastore_account_url, datastore_secret,
)
from backends.azure.sweeps import check_best_trial, submit_or_attach
from backends.azure.trials import ARM_SCOPE, TERMINAL_STATES, TrialDataReader, TrialWatcher, make_trial_reader
from backends.base import (
    DEFAULT_MODEL_NAME, Backend, DataRef, Endpoint, HistoryEntry, ModelVersion, SweepResult, TrialResult,
)
from backends.errors import ConfigurationError, RegistrationError, SweepError, UploadError
from backends.azure.data_asset import ensure_data_asset
from backends.azure.watch import AzureWatch
from backends.domain.selection import pick_best_trial
from backends.domain.spec import DeploySpec, PipelineSpec, SweepSpec
from src.features import HEART_SCHEMA, DatasetSchema

if TYPE_CHECKING:
    import pandas as pd
    from collections.abc import Sequence

logger = logging.getLogger(__name__)

class AzureBackend(AzureEndpointMonitoring, AzureLiveTraffic, Backend):
    """The Azure adapter. ``ml_client`` and ``blob_service`` are injectable (tests pass fakes built on the
    SDK's operations classes); without them, clients are built from ``settings`` when a stage first
    needs them, so an upload needs only storage settings.

    Built from collaborators that share this backend as their ``AzureSession``: ``registry``
    (AzureRegistry: register, champion, tags), ``endpoints`` (AzureEndpoints: the rollout primitives under
    the shared rollout policy) and ``provisioner`` (AzureProvisioner: get-or-create, provision,
    teardown_all). It satisfies ``backends.base.Provisioner`` and, through the data collector's records
    (``AzureEndpointMonitoring``), ``backends.base.EndpointMonitor``."""

    name = "azure"

    def __init__(
        self,
        settings: AzureSettings,
        *,
        model_name: str = DEFAULT_MODEL_NAME,
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
        self._ensured: set[str] = set()  # data assets known to exist in this run
        self._sweep_environment: dict[str, str] | None = None  # computed once: it reads the installed pins
        self.registry = AzureRegistry(self, trained_as=model_name)
        self.provisioner = AzureProvisioner(self)
        self.endpoints = AzureEndpoints(self, self.registry, self.provisioner, self.history_log)
        self.watch = AzureWatch(self, self.registry)

    # --- clients ---------------------------------------------------------------------------------

    @property
    def credential(self) -> Any:
        """The one credential of every Azure call: the SDK's, Blob Storage's and MLflow's (``mlflow_auth``)."""
        if self._credential is None:
            self._credential = make_credential(self.settings)
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
                **SDK_CLIENT_OPTIONS,
            )
        return self._ml_client

    def blob_store(self) -> BlobStore:
        """Where the training split goes: the override container, or the workspace's default datastore's."""
        self.settings.require("storage", stage="upload")
        if self.settings.storage_mode == "workspace":
            default = self.default_datastore()
            if self._blob_service is None:  # the datastore's own key or SAS; the identity when it holds none
                secret = datastore_secret(self.client("upload"), self.call)
                self._blob_service = create_blob_service(self.settings, secret or self.credential,
                                                         account_url=datastore_account_url(default))
            return BlobStore(self._blob_service, default.container_name, self.settings.blob_prefix, self.retry, self.settings.http_timeout_s)
        if self._blob_service is None:
            self._blob_service = create_blob_service(self.settings, None if self.settings.storage_connection_string else self.credential)
        return BlobStore(self._blob_service, self.settings.container, self.settings.blob_prefix, self.retry, self.settings.http_timeout_s)

    def default_datastore(self) -> Any:
        """The workspace's default blob datastore (read once)."""
        if getattr(self, "_default_datastore", None) is None:
            client = self.client("upload")
            try:
                self._default_datastore = self.call("read the default datastore", client.datastores.get_default)
            except AzureError as exc:
                raise translate(exc, UploadError, "reading the workspace's default datastore",
                                check="the AzureML Data Scientist role on the workspace, or set AZURE_STORAGE_ACCOUNT_URL") from exc
        return self._default_datastore

    def storage_scopes(self) -> list[str]:
        """Ledger scopes of containers this backend can reach: the override storage account's (a container in
        the workspace's default datastore is never heartflow's to delete)."""
        if self.settings.storage_mode == "workspace":
            return []
        return [container_scope(self.blob_store().service)]

    @property
    def workspace_scope(self) -> str:
        s = self.settings
        return f"{s.subscription_id}/{s.resource_group}/{s.workspace_name}"

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One Azure call with the retry policy (transient errors only)."""
        return self.retry.call(what, fn, *args, **kwargs)

    def listing(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> list[Any]:
        """A paged listing read to its end with the retry policy."""
        return self.retry.listing(what, fn, *args, **kwargs)

    def now(self) -> float:  # the injectable clock and sleep, for waits outside the SDK's pollers
        return self._clock()

    def pause(self, seconds: float) -> None:
        self._sleep(seconds)

    def plan(self, spec: PipelineSpec, *, data_sha256: str | None = None) -> AzurePlan:
        """Build and validate every object the run would create; calls nothing on Azure."""
        return build_plan(spec, self.settings, data_sha256=data_sha256)

    # --- upload ----------------------------------------------------------------------------------

    def upload(self, train: pd.DataFrame) -> DataRef:
        """Store the split (content-addressed) and, with a workspace, register it as a versioned data asset.
        A container this upload created is recorded (under its storage account) for ``teardown --all``."""
        store = self.blob_store()
        workspace_mode = self.settings.storage_mode == "workspace"
        stored: StoredSplit = store.store(train, create_container=not workspace_mode)
        if stored.container_created:
            self.ledger.record("container", store.container, container_scope(store.service))
        if not self.settings.missing(["workspace"]):
            self.ensure_data_asset(self.client("upload"), stored.ref)
        return stored.ref

    def datastore_name(self) -> str:
        """The datastore the job reads the split through: the default one, or heartflow's own."""
        return str(self.default_datastore().name) if self.settings.storage_mode == "workspace" else self.settings.datastore_name

    def data_path(self, data: DataRef) -> str:
        """The datastore URI of an uploaded split (the job reads it through the workspace)."""
        return entities.datastore_uri(self.datastore_name(), blob_name_for(self.settings.blob_prefix, data.sha256))

    def ensure_data_asset(self, client: Any, data: DataRef) -> str:
        """Get-or-create the split's data asset (version from its sha256); its ``azureml:name:version``."""
        ref = ensure_data_asset(self, client, data, self.data_path(data), known=self._ensured)
        self._ensured.add(ref)
        return ref

    def _user_identity(self) -> bool:
        """True when the datastore holds no secret, so trials must read it as the submitting user."""
        mode = self.settings.storage_mode
        if mode == "account_url":
            return True
        if mode == "workspace":
            credentials = getattr(self.default_datastore(), "credentials", None)
            return credentials is None or type(credentials).__name__ == "NoneCredentialConfiguration"
        return False

    def _cluster_size(self, client: Any) -> int:
        """The real max nodes of the cluster (an existing cluster may differ from the settings)."""
        try:
            cluster = self.call("read the compute cluster", client.compute.get, self.settings.compute)
        except AzureError as exc:
            raise translate(exc, SweepError, f"reading compute {self.settings.compute}") from exc
        size = getattr(cluster, "max_instances", None)
        return int(size) if isinstance(size, int) and size > 0 else self.settings.compute_max_nodes

    # --- sweep -----------------------------------------------------------------------------------

    def sweep(
        self, data: DataRef, spec: SweepSpec, schema: DatasetSchema | None = None,
        progress: Callable[[TrialResult, int, int], None] | None = None,
    ) -> SweepResult:
        client = self.client("sweep", "storage")
        enforce_limits({"model_name": self.model_name, "sweep": spec}, self.settings)
        self.provisioner.ensure_compute(client)
        if self.settings.storage_mode != "workspace":
            self.provisioner.ensure_datastore(client)
        env_ref = self.provisioner.ensure_environment(client)
        nodes = self._cluster_size(client)
        if spec.max_concurrent_trials and spec.max_concurrent_trials > nodes:
            raise ConfigurationError(
                f"sweep.max_concurrent_trials = {spec.max_concurrent_trials} but cluster {self.settings.compute} has at "
                f"most {nodes} nodes, so only {nodes} trials would run at once: lower max_concurrent_trials or raise "
                "the cluster's max nodes (az ml compute update --max-instances)")
        data_ref = self.ensure_data_asset(client, data)
        schema_json = schema.to_json() if schema is not None and schema != HEART_SCHEMA else None
        job = entities.build_sweep(self.settings.model_copy(update={"compute_max_nodes": nodes}), spec,
                                   data_path=data_ref, model_name=self.model_name, environment=env_ref,
                                   schema_json=schema_json, user_identity=self._user_identity())
        key = self.sweep_identity(data, spec, (schema or HEART_SCHEMA).to_json())  # Prefect's cache key too
        attached = submit_or_attach(client, job, key, call=self.call, experiment_name=self.settings.experiment_name,
                                    check=f"compute {self.settings.compute} and environment {env_ref}")
        name = attached.name
        url = getattr(attached.job, "studio_url", None)
        logger.info("sweep %s %s (%s trials at most, data %s); follow it in Azure ML Studio: %s",
                    name, attached.action, spec.max_total_trials, data_ref, url)
        total = min(spec.max_total_trials, spec.grid_size() or spec.max_total_trials)
        watcher = TrialWatcher(lambda: self.trial_reader(client), spec.search_space, total, progress)
        final = attached.job if attached.action == "completed" else self._follow_sweep(client, name, spec, url, watcher)
        try:
            children = self.retry.listing("list the sweep's trials", client.jobs.list, parent_job_name=name)
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
        check_best_trial(reported, best, trials, spec.primary_metric, spec.goal, name)
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
            children = self.retry.listing("list the sweep's trials", client.jobs.list, parent_job_name=name)
        except AzureError as exc:
            logger.debug("could not list the trials of %s: %s", name, exc)
            return ""
        return watcher.poll(children)

    def trial_reader(self, client: Any) -> TrialDataReader:
        """What the trials logged, from the workspace's MLflow, read with this backend's credential (MLflow's too)."""
        if self._trial_reader is None:
            from backends.azure.artifacts import workspace_tracking_uri

            credential = self.credential
            try:
                uri = workspace_tracking_uri(client, str(self.settings.workspace_name), self.call, credential)
            except RegistrationError as exc:  # auth and transient failures keep their own kind
                raise SweepError(str(exc)) from exc
            self._trial_reader = make_trial_reader(uri, lambda: credential.get_token(ARM_SCOPE).token,
                                                   timeout_s=self.settings.http_timeout_s, retry=self.retry)
        return self._trial_reader

    # --- register: AzureRegistry (champion: Backend.champion, through the rollout policy) ---------

    def register(self, sweep: SweepResult, model_name: str = DEFAULT_MODEL_NAME) -> ModelVersion:
        """A version of ``model_name`` from the best trial."""
        return self.registry.register(sweep, model_name)

    def get_model(self, model_name: str, version: str) -> ModelVersion:
        return self.registry.get(model_name, version)

    # --- rollout: the shared policy over AzureEndpoints ---------------------------------------------

    def rollout_policy(self) -> AzureEndpoints:
        """promote, reject and champion (``Backend``) go through AzureEndpoints and its AzureRegistry."""
        return self.endpoints

    def deploy(self, model: ModelVersion, spec: DeploySpec) -> Endpoint:
        return self.endpoints.deploy(model, spec)

    def endpoint_key(self, endpoint: Endpoint) -> str:
        return self.endpoints.endpoint_key(endpoint)

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

    # --- scheduled retraining: AzureWatch -------------------------------------------------------------

    def serving(self, endpoint_name: str) -> Endpoint | None:
        return self.watch.serving(self.endpoints.endpoint_name(endpoint_name))

    def resolve_data_asset(self, uri: str) -> tuple[str, str]:
        return self.watch.resolve_data_asset(uri)

    def tag_model(self, model: ModelVersion, tags: Mapping[str, str]) -> None:
        self.watch.tag_model(model, tags)

    def record_champion_score(self, model: ModelVersion, accuracy: float, rows: int) -> tuple[float, ...]:
        return self.watch.record_champion_score(model, accuracy, rows)

    # --- cache identity -----------------------------------------------------------------------------

    def store_identity(self) -> str:
        return f"{self.name}:{self.workspace_scope}"

    def sweep_environment(self) -> Mapping[str, str]:
        """The Environment trials run in (its version: a hash of the image and the conda/pip pins), so a
        package upgrade trains anew instead of deploying a model trained on the old one on the new; and the
        folder trials save their model to (outputs/<model name>), which registration reads."""
        if self._sweep_environment is None:
            environment = entities.environment_ref(entities.build_environment(self.settings))
            self._sweep_environment = {"environment": environment, "trained_as": self.model_name}
        return self._sweep_environment

    stores_files = True  # plots go to the workspace's MLflow, beside the run they describe

    # Lazy imports: MLflow loads only when something is attached or recorded.
    def attach_files(self, model: ModelVersion, files: Sequence[Path]) -> None:
        """``files`` under ``plots/`` of the model's trial run in the workspace's MLflow (RegistrationError)."""
        from backends.azure.artifacts import attach_for
        attach_for(self, model.source_run_id, files)

    def record_gate(self, model: ModelVersion, numbers: Mapping[str, Any]) -> None:  # as locally: gate_* metrics
        from backends.azure.artifacts import record_gate_for
        record_gate_for(self, model.source_run_id, numbers)

    def attach_sweep_files(self, sweep: SweepResult, files: Sequence[Path]) -> None:
        from backends.azure.artifacts import attach_for
        attach_for(self, sweep.sweep_id, files)  # as attach_files, on the sweep job's run
