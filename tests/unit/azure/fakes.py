"""Fakes of the Azure ML control plane built on the SDK's own operations classes.

Each operations object is ``create_autospec(<SDK class>, instance=True)``, so a misspelt method or a wrong
argument fails the test; behaviour (state, failures) is wired in through side effects, and failures are
injected through the constructor.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from types import SimpleNamespace
from typing import Any
from unittest.mock import create_autospec

from azure.ai.ml.entities import (
    AccountKeyConfiguration,
    AmlCompute,
    AzureBlobDatastore,
    Datastore,
    SasTokenConfiguration,
    EndpointAuthKeys,
    Environment,
    OnlineDeployment,
    OnlineEndpoint,
    Workspace,
)
from azure.ai.ml.operations import (
    ComputeOperations,
    DataOperations,
    DatastoreOperations,
    EnvironmentOperations,
    JobOperations,
    ModelOperations,
    OnlineDeploymentOperations,
    OnlineEndpointOperations,
    WorkspaceOperations,
)
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError, ServiceResponseError
from azure.core.paging import ItemPaged
from azure.core.polling import LROPoller

from backends.azure.trials import TrialData


LOCATION = "westeurope"
ARM_SCOPE = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-heartflow/providers/"
             "Microsoft.MachineLearningServices/workspaces/ws-heartflow")


JOB_EXISTS_MESSAGE = (
    "(UserError) A job with this name already exists. If you are trying to create a new job, use a different name. "
    "If you are trying to update an existing job, the existing job's Settings, Inputs, Outputs, Jobs, InputBindings, "
    "OutputBindings cannot be changed. Only description, tags, displayName, properties, and isArchived can be updated.\n"
    "Code: UserError\nMessage: A job with this name already exists.")


def strip_zero_traffic(traffic: dict[str, Any]) -> dict[str, Any]:
    """What OnlineEndpointOperations.begin_create_or_update does to the caller's traffic and mirror traffic
    before it sends them: keys lowercased, zero entries dropped. Written here rather than imported (the SDK's
    helper is private); test_sdk_traffic_rule.py checks it against what the real SDK sends."""
    return {name.lower(): share for name, share in traffic.items() if share and int(share) != 0}


def http_error(status: int, message: str = "") -> HttpResponseError:
    error = HttpResponseError(message=message or f"HTTP {status}")
    error.status_code = status
    return error


def paged(items: list[Any], page_two_failures: list[int]) -> ItemPaged:
    """What the SDK's list operations return: an ItemPaged that fetches its pages lazily, while it is iterated.
    The second page fails with a dropped connection while ``page_two_failures[0]`` > 0 (counted down)."""
    half = max(len(items) // 2, 1)

    def get_next(token: str | None) -> Any:
        if token == "page-2" and page_two_failures[0] > 0:
            page_two_failures[0] -= 1
            raise ServiceResponseError("Connection aborted while reading page 2")
        return token

    def extract(token: str | None) -> tuple[str | None, list[Any]]:
        return ("page-2", items[:half]) if token is None else (None, items[half:])

    return ItemPaged(get_next, extract)


def poller(result: Any = None, error: BaseException | None = None) -> Any:
    fake = create_autospec(LROPoller, instance=True)
    fake.done.return_value = True
    if error is not None:
        fake.result.side_effect = error
    else:
        fake.result.return_value = result
    return fake


class FakeAzure:
    """An Azure ML workspace in memory. ``sweep_statuses`` is what jobs.get returns, poll after poll;
    ``trials`` maps trial number -> (status, params, metrics); ``deployment_error`` makes deployments fail;
    ``throttle`` lists method names whose first call answers 429."""

    def __init__(
        self,
        *,
        sweep_statuses: Iterable[str] = ("Running", "Completed"),
        trials: dict[int, tuple[str, dict[str, Any], dict[str, float]]] | None = None,
        deployment_error: BaseException | None = None,
        throttle: Iterable[str] = (),
        existing: Iterable[str] = (),
        creating_polls: int = 0,
        poll_outage: int = 0,
        default_datastore: str = "key",
        page_two_failures: int = 0,
    ) -> None:
        self.jobs = create_autospec(JobOperations, instance=True)
        self.models = create_autospec(ModelOperations, instance=True)
        self.online_endpoints = create_autospec(OnlineEndpointOperations, instance=True)
        self.online_deployments = create_autospec(OnlineDeploymentOperations, instance=True)
        self.compute = create_autospec(ComputeOperations, instance=True)
        self.environments = create_autospec(EnvironmentOperations, instance=True)
        self.datastores = create_autospec(DatastoreOperations, instance=True)
        self.workspaces = create_autospec(WorkspaceOperations, instance=True)
        self.endpoints: dict[str, Any] = {}  # name -> the REST object the service holds
        self.deployments: dict[tuple[str, str], Any] = {}  # (endpoint, deployment) -> its REST object
        self.model_versions: dict[str, list[Any]] = {}
        self.existing = set(existing)  # e.g. {"compute", "environment", "datastore", "workspace"}
        self.statuses = list(sweep_statuses)
        self.trials = trials if trials is not None else {
            0: ("Completed", {"n_estimators": 10}, {"accuracy": 0.80}),
            1: ("Completed", {"n_estimators": 50}, {"accuracy": 0.85}),
            2: ("Completed", {"n_estimators": 100}, {"accuracy": 0.85}),
        }
        self.deployment_error = deployment_error
        self.throttled = set(throttle)
        # A deployment stays "Creating" for ``creating_polls`` reads of it; the next ``poll_outage`` polls (the
        # poller's wait, then reads of a deployment still being created) fail as a dropped connection does.
        self.creating_polls = creating_polls
        self.poll_outage = poll_outage
        self.creating: dict[tuple[str, str], int] = {}
        self.default_datastore_kind = default_datastore
        self.page_two_failures = [page_two_failures]  # listings (models, deployments) whose page 2 drops, in all  # "key", "sas" or "identity": what workspaceblobstore holds
        self.sweep_name: str | None = None
        self._wire()

    # --- helpers -----------------------------------------------------------------------------
    def _maybe_throttle(self, method: str) -> None:
        if method in self.throttled:
            self.throttled.discard(method)
            raise http_error(429, "Too Many Requests")

    def _poll_fails(self) -> None:
        if self.poll_outage > 0:
            self.poll_outage -= 1
            raise ServiceResponseError("Connection aborted: ('Connection reset by peer')")

    def _advance(self, key: tuple[str, str]) -> None:
        """One look at a deployment being created: after ``creating_polls`` of them it has succeeded."""
        if key not in self.creating:
            return
        self.creating[key] -= 1
        if self.creating[key] <= 0:
            del self.creating[key]
            self.deployments[key].properties.provisioning_state = "Succeeded"

    def trial_reader(self, run_id: str) -> TrialData:
        number = int(run_id.rsplit("_", 1)[1])
        _, params, metrics = self.trials[number]
        return TrialData(params=params, metrics=metrics, duration_s=1.0)

    def children(self) -> list[Any]:
        return [SimpleNamespace(name=f"{self.sweep_name}_{n}", status=status, studio_url=None)
                for n, (status, _, _) in sorted(self.trials.items())]

    def _wire(self) -> None:
        def get_or_missing(kind: str, result: Callable[[], Any]) -> Callable[..., Any]:
            def get(*args: Any, **kwargs: Any) -> Any:
                if kind not in self.existing:
                    raise ResourceNotFoundError(f"{kind} not found")
                return result()
            return get

        def created(kind: str) -> Callable[..., Any]:
            def create(entity: Any, *args: Any, **kwargs: Any) -> Any:
                self.existing.add(kind)
                self.stored[kind] = entity
                return poller(entity) if kind in ("compute", "workspace") else entity
            return create

        # What a get answers: the entity created here, else one that existed before (real SDK entities).
        workspace = Workspace(name="ws-heartflow", location=LOCATION)
        workspace._mlflow_tracking_uri = f"azureml://{LOCATION}.api.azureml.ms/mlflow/v1.0{ARM_SCOPE}"
        self.stored: dict[str, Any] = {
            "compute": AmlCompute(name="heartclassifycluster", size="Standard_DS3_v2", min_instances=0, max_instances=4),
            "environment": Environment(name="heartflow-sklearn", version="1",
                                       image="mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04"),
            "datastore": AzureBlobDatastore(name="heartflowdata", account_name="heartacct", container_name="data4ml"),
            "workspace": workspace,
        }
        for kind, ops, create_name in (
            ("compute", self.compute, "begin_create_or_update"),
            ("environment", self.environments, "create_or_update"),
            ("datastore", self.datastores, "create_or_update"),
        ):
            ops.get.side_effect = get_or_missing(kind, lambda kind=kind: self.stored[kind])
            getattr(ops, create_name).side_effect = created(kind)
        # An existing cluster reports its real size (tests set cluster_max_nodes); a created one, what was asked.
        self.cluster_max_nodes = 4
        preexisting_compute = self.stored["compute"]
        self.compute.get.side_effect = get_or_missing("compute", lambda: AmlCompute(
            name=preexisting_compute.name, size=preexisting_compute.size, min_instances=0,
            max_instances=self.cluster_max_nodes) if self.stored["compute"] is preexisting_compute else self.stored["compute"])
        self.workspaces.get.side_effect = get_or_missing("workspace", lambda: self.stored["workspace"])
        self.datastores.get_default.side_effect = self._default_datastore
        self.workspaces.begin_create.side_effect = created("workspace")
        self.workspaces.begin_delete.side_effect = lambda name, **kw: poller(None)
        self.compute.begin_delete.side_effect = lambda name, **kw: poller(None)

        # jobs: found by name, as on Azure. ``earlier_jobs`` (name -> status) are sweeps an earlier attempt
        # of the stage submitted; the sweep this run submits or attaches to follows ``sweep_statuses``.
        self.earlier_jobs: dict[str, str] = {}
        self.best_child: Callable[[str], str | None] = lambda name: f"{name}_1"

        def create_job(job: Any, **kwargs: Any) -> Any:
            self._maybe_throttle("jobs.create_or_update")
            if job.name in self.earlier_jobs or job.name == self.sweep_name:
                # The service answers a PUT of an existing job name with 400 UserError (not a 409), which the
                # generated client raises as a plain HttpResponseError.
                raise http_error(400, JOB_EXISTS_MESSAGE)
            self.sweep_name = job.name
            return SimpleNamespace(name=job.name, status="Starting", studio_url=f"https://ml.azure.com/runs/{job.name}")

        def get_job(name: str) -> Any:
            self._maybe_throttle("jobs.get")
            if name != self.sweep_name:
                if name not in self.earlier_jobs:
                    raise ResourceNotFoundError(f"job {name} not found")
                status = self.earlier_jobs[name]
                if status in ("Failed", "Canceled"):
                    return SimpleNamespace(name=name, status=status, properties={}, studio_url=None)
                self.sweep_name = name  # attached: from now on it follows sweep_statuses
                if status == "Completed":
                    self.statuses = ["Completed"]
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            return SimpleNamespace(name=name, status=status, properties={"best_child_run_id": self.best_child(name)},
                                   studio_url=f"https://ml.azure.com/runs/{name}")

        self.jobs.create_or_update.side_effect = create_job
        self.jobs.get.side_effect = get_job
        self.jobs.list.side_effect = lambda parent_job_name=None, **kw: iter(self.children())

        # data assets (the training split, versioned by its sha256)
        self.data = create_autospec(DataOperations, instance=True)
        self.data_assets: dict[tuple[str, str], Any] = {}

        def get_data(name: str, version: str | None = None, label: str | None = None) -> Any:
            if (name, str(version)) not in self.data_assets:
                raise ResourceNotFoundError(f"data {name}:{version} not found")
            return self.data_assets[(name, str(version))]

        def create_data(data: Any, **kw: Any) -> Any:
            self.data_assets[(data.name, str(data.version))] = data
            return data

        self.data.get.side_effect = get_data
        self.data.create_or_update.side_effect = create_data

        # models
        def create_model(model: Any) -> Any:
            versions = self.model_versions.setdefault(model.name, [])
            if model.version is None:
                model.version = str(len(versions) + 1)
                versions.append(model)
            return model

        def get_model(name: str, version: str | None = None, label: str | None = None) -> Any:
            for model in self.model_versions.get(name, []):
                if model.version == version:
                    return model
            raise ResourceNotFoundError(f"model {name}:{version} not found")

        def list_models(name: str | None = None, stage: str | None = None, **kw: Any) -> Any:
            if name not in self.model_versions:
                raise ResourceNotFoundError(f"model {name} not found")
            return paged(list(self.model_versions[name]), self.page_two_failures)

        self.models.create_or_update.side_effect = create_model
        self.models.get.side_effect = get_model
        self.models.list.side_effect = list_models

        # endpoints: what OnlineEndpointOperations does around the service call. begin_create_or_update
        # lowercases the traffic keys and strips the zero entries of the caller's entity
        # (strip_zero_traffic), sends the REST object and answers an OnlineEndpoint built from the
        # service's reply; get fills in 0 for each deployment the traffic map leaves out.
        def endpoint_from_store(name: str) -> OnlineEndpoint:
            rest = self.endpoints[name]
            converted = OnlineEndpoint._from_rest_object(copy.deepcopy(rest))
            for (endpoint_name, deployment) in self.deployments:
                if endpoint_name == name and not converted.traffic.get(deployment):
                    converted.traffic[deployment] = 0
            return converted

        def get_endpoint(name: str, *, local: bool = False) -> Any:
            if name not in self.endpoints:
                raise ResourceNotFoundError(f"endpoint {name} not found")
            return endpoint_from_store(name)

        def put_endpoint(endpoint: Any, *, local: bool = False) -> Any:
            self._maybe_throttle("online_endpoints.begin_create_or_update")
            if endpoint.traffic:
                endpoint.traffic = strip_zero_traffic(endpoint.traffic)
            if endpoint.mirror_traffic:
                endpoint.mirror_traffic = strip_zero_traffic(endpoint.mirror_traffic)
            rest = endpoint._to_rest_online_endpoint(location=LOCATION)
            known = {d.lower() for (e, d) in self.deployments if e == endpoint.name}
            unknown = {k for k in (rest.properties.traffic or {}) if k.lower() not in known}
            if unknown:
                return poller(error=http_error(400, f"traffic names deployments that do not exist: {unknown}"))
            # The service's rules on mirror traffic: one deployment, known, with no live traffic, at most 50 %.
            mirror = {k.lower(): int(v) for k, v in (rest.properties.mirror_traffic or {}).items()}
            live = {k.lower() for k, v in (rest.properties.traffic or {}).items() if int(v) > 0}
            if len(mirror) > 1 or sum(mirror.values()) > 50 or set(mirror) - known or set(mirror) & live:
                return poller(error=http_error(400, f"invalid mirror traffic {mirror}: one deployment that exists and "
                                                    "takes no live traffic, at most 50 %"))
            rest.name, rest.id = endpoint.name, f"{ARM_SCOPE}/onlineEndpoints/{endpoint.name}"
            rest.properties.scoring_uri = f"https://{endpoint.name}.{LOCATION}.inference.ml.azure.com/score"
            rest.properties.provisioning_state = "Succeeded"
            self.endpoints[endpoint.name] = rest
            return poller(OnlineEndpoint._from_rest_object(copy.deepcopy(rest)))

        def delete_endpoint(name: str | None = None, *, local: bool = False) -> Any:
            if name not in self.endpoints:
                raise ResourceNotFoundError(f"endpoint {name} not found")
            del self.endpoints[name]
            for key in [k for k in self.deployments if k[0] == name]:
                del self.deployments[key]
            return poller(None)

        def endpoint_keys(name: str) -> EndpointAuthKeys:
            if name not in self.endpoints:
                raise ResourceNotFoundError(f"endpoint {name} not found")
            return EndpointAuthKeys(primary_key="k-" + name, secondary_key="s-" + name)

        self.online_endpoints.get.side_effect = get_endpoint
        self.online_endpoints.begin_create_or_update.side_effect = put_endpoint
        self.online_endpoints.begin_delete.side_effect = delete_endpoint
        self.online_endpoints.get_keys.side_effect = endpoint_keys

        # deployments: the entity goes through its REST form and comes back as the SDK builds it.
        def put_deployment(deployment: Any, *, local: bool = False, **kw: Any) -> Any:
            self._maybe_throttle("online_deployments.begin_create_or_update")
            if deployment.endpoint_name not in self.endpoints:
                raise ResourceNotFoundError(f"endpoint {deployment.endpoint_name} not found")
            key = (deployment.endpoint_name, deployment.name)
            if key in self.creating:  # the generated client maps the service's 409 to ResourceExistsError
                conflict = ResourceExistsError(f"(Conflict) an operation is in progress on deployment {deployment.name}")
                conflict.status_code = 409
                raise conflict
            rest = deployment._to_rest_object(location=LOCATION)
            rest.name = deployment.name
            rest.id = f"{ARM_SCOPE}/onlineEndpoints/{deployment.endpoint_name}/deployments/{deployment.name}"
            failed = self.deployment_error is not None
            rest.properties.provisioning_state = "Failed" if failed else "Succeeded"
            self.deployments[key] = rest
            if failed:
                return poller(error=self.deployment_error)
            if self.creating_polls:
                rest.properties.provisioning_state = "Creating"
                self.creating[key] = self.creating_polls
                return self._creating_poller(key)
            return poller(OnlineDeployment._from_rest_object(copy.deepcopy(rest)))

        def delete_deployment(name: str, endpoint_name: str, *, local: bool = False) -> Any:
            if (endpoint_name, name) not in self.deployments:
                raise ResourceNotFoundError(f"deployment {name} not found")
            stored = self.endpoints.get(endpoint_name)
            if stored is not None and int((stored.properties.traffic or {}).get(name.lower(), 0)) > 0:
                return poller(error=http_error(400, f"deployment {name} still receives traffic"))
            del self.deployments[(endpoint_name, name)]
            if stored is not None:  # Azure drops a deleted deployment from the traffic map
                stored.properties.traffic = {k: v for k, v in (stored.properties.traffic or {}).items() if k != name.lower()}
            return poller(None)

        def get_deployment(name: str, endpoint_name: str, *, local: bool = False) -> OnlineDeployment:
            if (endpoint_name, name) not in self.deployments:
                raise ResourceNotFoundError(f"deployment {name} not found")
            if (endpoint_name, name) in self.creating:
                self._poll_fails()
            answer = self.deployment(endpoint_name, name)
            self._advance((endpoint_name, name))
            return answer

        def list_deployments(endpoint_name: str, *, local: bool = False) -> Any:
            return paged([OnlineDeployment._from_rest_object(copy.deepcopy(d))
                          for (e, _), d in self.deployments.items() if e == endpoint_name], self.page_two_failures)

        self.online_deployments.begin_create_or_update.side_effect = put_deployment
        self.online_deployments.begin_delete.side_effect = delete_deployment
        self.online_deployments.list.side_effect = list_deployments
        self.online_deployments.get.side_effect = get_deployment
        self.online_deployments.get_logs.side_effect = (
            lambda name, endpoint_name, lines, **kw: "Traceback (most recent call last):\nValueError: model folder not found")

    DATASTORE_KEY = "ZGF0YXN0b3JlLWtleQ=="

    def _default_datastore(self, *, include_secrets: bool = False) -> Any:
        """``datastores.get_default`` as the SDK builds it from the service's answer: the secret (account key
        or SAS) only when asked with include_secrets (the listSecrets call), else credentials without it."""
        credentials = {"key": AccountKeyConfiguration(account_key=self.DATASTORE_KEY),
                       "sas": SasTokenConfiguration(sas_token="sv=2024-01-01&sig=c2Fz"),
                       "identity": None}[self.default_datastore_kind]
        store = AzureBlobDatastore(name="workspaceblobstore", account_name="wsacct", container_name="azureml-blobstore-1",
                                   credentials=credentials)
        rest = store._to_rest_object()
        rest.name = store.name
        if not include_secrets and self.default_datastore_kind != "identity":
            rest.properties.credentials.secrets = None
        return Datastore._from_rest_object(rest)

    def _creating_poller(self, key: tuple[str, str]) -> Any:
        """The LROPoller of a deployment being created: each wait polls once (and may hit the outage)."""
        fake = create_autospec(LROPoller, instance=True)
        failure: list[BaseException] = []

        def wait(timeout: float | None = None) -> None:
            if failure:  # azure-core's poller keeps its polling thread's error and raises it on every wait
                raise failure[0]
            try:
                self._poll_fails()
            except ServiceResponseError as exc:
                failure.append(exc)
                raise
            while key in self.creating:
                self._advance(key)

        fake.wait.side_effect = wait
        fake.done.side_effect = lambda: key not in self.creating
        fake.result.side_effect = lambda timeout=None: self.deployment(*key)
        return fake

    def deployment(self, endpoint: str, name: str) -> OnlineDeployment:
        """A deployment as ``online_deployments.get`` returns it."""
        return OnlineDeployment._from_rest_object(copy.deepcopy(self.deployments[(endpoint, name)]))

    def endpoint(self, name: str) -> OnlineEndpoint:
        """An endpoint as ``online_endpoints.get`` returns it."""
        return self.online_endpoints.get(name)

    def traffic(self, endpoint: str) -> dict[str, int]:
        """The traffic map as ``online_endpoints.get`` reports it (every deployment, 0 included)."""
        return dict(self.endpoint(endpoint).traffic or {})
