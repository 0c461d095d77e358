"""Fakes of the Azure ML control plane built on the SDK's own operations classes.

Each operations object is ``create_autospec(<SDK class>, instance=True)``, so a misspelt method or a wrong
argument fails the test; behaviour (state, failures) is wired in through side effects, and failures are
injected through the constructor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import SimpleNamespace
from typing import Any
from unittest.mock import create_autospec

from azure.ai.ml.entities import AmlCompute, ManagedOnlineEndpoint
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
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.polling import LROPoller

from backends.azure.trials import TrialData


def http_error(status: int, message: str = "") -> HttpResponseError:
    error = HttpResponseError(message=message or f"HTTP {status}")
    error.status_code = status
    return error


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
    ) -> None:
        self.jobs = create_autospec(JobOperations, instance=True)
        self.models = create_autospec(ModelOperations, instance=True)
        self.online_endpoints = create_autospec(OnlineEndpointOperations, instance=True)
        self.online_deployments = create_autospec(OnlineDeploymentOperations, instance=True)
        self.compute = create_autospec(ComputeOperations, instance=True)
        self.environments = create_autospec(EnvironmentOperations, instance=True)
        self.datastores = create_autospec(DatastoreOperations, instance=True)
        self.workspaces = create_autospec(WorkspaceOperations, instance=True)
        self.endpoints: dict[str, Any] = {}
        self.deployments: dict[tuple[str, str], Any] = {}
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
        self.sweep_name: str | None = None
        self._wire()

    # --- helpers -----------------------------------------------------------------------------
    def _maybe_throttle(self, method: str) -> None:
        if method in self.throttled:
            self.throttled.discard(method)
            raise http_error(429, "Too Many Requests")

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
                return poller(entity) if kind in ("compute", "workspace") else entity
            return create

        for kind, ops, create_name in (
            ("compute", self.compute, "begin_create_or_update"),
            ("environment", self.environments, "create_or_update"),
            ("datastore", self.datastores, "create_or_update"),
        ):
            ops.get.side_effect = get_or_missing(kind, lambda: SimpleNamespace(name=kind))
            getattr(ops, create_name).side_effect = created(kind)
        self.cluster_max_nodes = 4  # what compute.get reports for an existing cluster
        self.compute.get.side_effect = get_or_missing("compute", lambda: AmlCompute(
            name="heartclassifycluster", size="Standard_DS3_v2", min_instances=0, max_instances=self.cluster_max_nodes))
        self.workspaces.get.side_effect = get_or_missing(
            "workspace", lambda: SimpleNamespace(name="ws", mlflow_tracking_uri="azureml://x", tags={}))
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
                raise http_error(409, f"job {job.name} already exists")
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
            return iter(list(self.model_versions[name]))

        self.models.create_or_update.side_effect = create_model
        self.models.get.side_effect = get_model
        self.models.list.side_effect = list_models

        # endpoints
        def get_endpoint(name: str, **kw: Any) -> Any:
            if name not in self.endpoints:
                raise ResourceNotFoundError(f"endpoint {name} not found")
            stored = self.endpoints[name]
            copy = ManagedOnlineEndpoint(name=stored.name, auth_mode=stored.auth_mode, tags=dict(stored.tags or {}),
                                         traffic=dict(stored.traffic or {}))
            copy._scoring_uri = f"https://{name}.westeurope.inference.ml.azure.com/score"  # set by Azure
            return copy

        def put_endpoint(endpoint: Any, **kw: Any) -> Any:
            self._maybe_throttle("online_endpoints.begin_create_or_update")
            traffic = dict(endpoint.traffic or {})
            unknown = set(traffic) - {d for (e, d) in self.deployments if e == endpoint.name}
            if unknown:
                return poller(error=http_error(400, f"traffic names deployments that do not exist: {unknown}"))
            self.endpoints[endpoint.name] = endpoint
            return poller(get_endpoint(endpoint.name))

        def delete_endpoint(name: str | None = None, **kw: Any) -> Any:
            if name not in self.endpoints:
                raise ResourceNotFoundError(f"endpoint {name} not found")
            del self.endpoints[name]
            for key in [k for k in self.deployments if k[0] == name]:
                del self.deployments[key]
            return poller(None)

        self.online_endpoints.get.side_effect = get_endpoint
        self.online_endpoints.begin_create_or_update.side_effect = put_endpoint
        self.online_endpoints.begin_delete.side_effect = delete_endpoint
        self.online_endpoints.get_keys.side_effect = lambda name: SimpleNamespace(primary_key="k-" + name, secondary_key="s")

        # deployments
        def put_deployment(deployment: Any, **kw: Any) -> Any:
            self._maybe_throttle("online_deployments.begin_create_or_update")
            self.deployments[(deployment.endpoint_name, deployment.name)] = deployment
            if self.deployment_error is not None:
                deployment._provisioning_state = "Failed"  # set by Azure
                return poller(error=self.deployment_error)
            deployment._provisioning_state = "Succeeded"
            return poller(deployment)

        def delete_deployment(name: str, endpoint_name: str, **kw: Any) -> Any:
            if (endpoint_name, name) not in self.deployments:
                raise ResourceNotFoundError(f"deployment {name} not found")
            if self.endpoints.get(endpoint_name) is not None and (self.endpoints[endpoint_name].traffic or {}).get(name, 0) > 0:
                return poller(error=http_error(400, f"deployment {name} still receives traffic"))
            del self.deployments[(endpoint_name, name)]
            if endpoint_name in self.endpoints:  # Azure drops a deleted deployment from the traffic map
                stored = self.endpoints[endpoint_name]
                stored.traffic = {k: v for k, v in (stored.traffic or {}).items() if k != name}
            return poller(None)

        self.online_deployments.begin_create_or_update.side_effect = put_deployment
        self.online_deployments.begin_delete.side_effect = delete_deployment
        self.online_deployments.list.side_effect = lambda endpoint_name, **kw: iter(
            [d for (e, _), d in self.deployments.items() if e == endpoint_name])
        self.online_deployments.get_logs.side_effect = (
            lambda name, endpoint_name, lines, **kw: "Traceback (most recent call last):\nValueError: model folder not found")

    def traffic(self, endpoint: str) -> dict[str, int]:
        return dict(self.endpoints[endpoint].traffic or {})
