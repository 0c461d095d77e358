"""The dry run: every Azure object a run would create, built, checked against Azure's limits and validated
with the SDK's own serialisation and schema, then described. Nothing here calls Azure."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import yaml
from azure.ai.ml import load_compute, load_data, load_datastore, load_environment, load_job, load_model
from azure.ai.ml import load_online_deployment, load_online_endpoint
from azure.ai.ml.entities import Data, Environment, KubernetesOnlineDeployment, ManagedOnlineDeployment, OnlineEndpoint

from backends.azure import entities, naming
from backends.azure.packages import top_level
from backends.azure.limits import check_limits, check_traffic, enforce_limits
from backends.azure.settings import AzureSettings
from backends.errors import ConfigurationError
from backends.domain.spec import PipelineSpec

PLACEHOLDER_RUN_ID = "BEST_TRIAL_RUN_ID"
PLACEHOLDER_DATA = "<sha256-of-training-split>.csv"
# Without a storage override the split goes to the workspace's default blob datastore, which Azure ML
# names workspaceblobstore when it creates a workspace (the dry run cannot ask which one is the default).
WORKSPACE_DATASTORE = "workspaceblobstore"
DATA_ASSET_VERSION_CHARS = 16


def to_plain(value: Any) -> Any:
    """SDK dicts (OrderedDicts, enums) as plain JSON-compatible data."""
    return json.loads(json.dumps(value, default=str))


REST_LOCATION = "westeurope"  # a region for the REST bodies of regional resources (not sent anywhere)


def to_rest(entity: Any) -> Any:
    """The REST body the SDK would send for ``entity``."""
    if isinstance(entity, OnlineEndpoint):
        return entity._to_rest_online_endpoint(REST_LOCATION)
    if isinstance(entity, (ManagedOnlineDeployment, KubernetesOnlineDeployment)):  # regional: they take a location
        return entity._to_rest_object(location=REST_LOCATION)
    return entity._to_rest_object()


def sdk_round_trip(entity: Any, loader: Any) -> tuple[dict[str, Any], Any]:
    """Serialise with the SDK (``_to_dict`` and its REST body), load the dict back through the SDK's
    schema; return the dict and the reloaded entity. Any schema error becomes a ConfigurationError."""
    kind = type(entity).__name__
    try:
        as_dict = to_plain(entity._to_dict())
        to_rest(entity)
        reloaded = loader(source=io.StringIO(yaml.safe_dump(as_dict)))
        to_rest(reloaded)
    except ConfigurationError:
        raise
    except Exception as exc:
        raise ConfigurationError(f"the {kind} heartflow built does not pass the Azure ML SDK's validation: {exc}") from exc
    return as_dict, reloaded


def _ro(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class AzurePlan:
    """What a run would create on Azure, each object as the SDK serialises it (already validated)."""

    workspace: str
    storage: str
    data_path: str
    compute: Mapping[str, Any]
    environment: Mapping[str, Any]
    datastore: Mapping[str, Any]
    sweep: Mapping[str, Any]
    model: Mapping[str, Any]
    endpoint: Mapping[str, Any]
    deployment: Mapping[str, Any]
    traffic_first_deploy: Mapping[str, int]
    traffic_next_deploy: str
    notes: tuple[str, ...] = field(default=())
    data_asset: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def render(self) -> str:
        """A human-readable plan: each object and the settings that matter."""
        sweep, limits, obj = self.sweep, self.sweep.get("limits", {}), self.sweep.get("objective", {})
        trial = sweep.get("trial", {})
        space = sweep.get("search_space", {})
        dep = self.deployment
        req = dep.get("request_settings", {})
        lines = [
            "Azure plan (dry run: nothing was called on Azure)",
            f"  workspace      {self.workspace}",
            f"  storage        {self.storage}",
            f"  training data  {self.data_path}",
            "",
            f"compute cluster  {self.compute.get('name')}: {self.compute.get('size')}, "
            f"{self.compute.get('min_instances')}..{self.compute.get('max_instances')} nodes, "
            f"idle scale-down {self.compute.get('idle_time_before_scale_down')} s",
            f"environment      {self.environment.get('name')}:{self.environment.get('version')} "
            f"on {self.environment.get('image')}",
            f"                 pip: {', '.join(top_level(_pip_pins(self.environment)))} "
            f"(+{len(_pip_pins(self.environment)) - len(top_level(_pip_pins(self.environment)))} dependencies, all pinned)",
            f"datastore        {self.datastore.get('name')} -> container {self.datastore.get('container_name')} "
            f"of account {self.datastore.get('account_name')} (private)" if self.datastore else
            f"datastore        {WORKSPACE_DATASTORE} (the workspace's default blob datastore; no storage setting needed)",
            f"data asset       {self.data_asset.get('name')}:{self.data_asset.get('version')} ({self.data_asset.get('type')})",
            "",
            f"sweep            {sweep.get('display_name')} in experiment {sweep.get('experiment_name')} "
            f"on {sweep.get('compute')}",
            f"  sampling       {sweep.get('sampling_algorithm') if isinstance(sweep.get('sampling_algorithm'), str) else json.dumps(sweep.get('sampling_algorithm'))}",
            f"  objective      {obj.get('goal')} {obj.get('primary_metric')}",
            f"  limits         max_total_trials={limits.get('max_total_trials')} "
            f"max_concurrent_trials={limits.get('max_concurrent_trials')} timeout={limits.get('timeout')} "
            f"trial_timeout={limits.get('trial_timeout')}",
            f"  early stop     {json.dumps(sweep.get('early_termination')) if sweep.get('early_termination') else 'none'}",
            "  search space",
            *[f"    {name:<16}{_describe_dist(dist)}" for name, dist in space.items()],
            f"  code           {trial.get('code')}",
            f"  command        {trial.get('command')}",
            f"  environment    {_env_name(trial.get('environment'))}",
            "",
            f"model            {self.model.get('name')} ({self.model.get('type')}) from {self.model.get('path')}",
            f"  tags           {', '.join(sorted(self.model.get('tags', {})))}",
            f"endpoint         {self.endpoint.get('name')}: auth_mode {self.endpoint.get('auth_mode')} (get-or-create)",
            f"deployment       {dep.get('name')} ({self.traffic_next_deploy}): {dep.get('instance_type')} "
            f"x{dep.get('instance_count')}, scoring {dep.get('code_configuration', {}).get('scoring_script')} "
            f"from {dep.get('code_configuration', {}).get('code')}",
            f"  requests       timeout {req.get('request_timeout_ms')} ms, "
            f"{req.get('max_concurrent_requests_per_instance')} concurrent per instance, "
            f"queue wait {req.get('max_queue_wait_ms')} ms",
            f"  probes         liveness {_probe(dep.get('liveness_probe'))}; readiness {_probe(dep.get('readiness_probe'))}",
            f"  traffic        first deployment: {dict(self.traffic_first_deploy)}; otherwise the new deployment "
            "gets 0 % until promoted",
        ]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def _pip_pins(environment: Mapping[str, Any]) -> list[str]:
    for dep in environment.get("conda_file", {}).get("dependencies", []):
        if isinstance(dep, dict) and "pip" in dep:
            return list(dep["pip"])
    return []


def _env_name(env: Any) -> str:
    if isinstance(env, Mapping):
        return f"{env.get('name')}:{env.get('version')}"
    return str(env)


def _describe_dist(dist: Mapping[str, Any]) -> str:
    args = {k: v for k, v in dist.items() if k != "type"}
    return f"{dist.get('type')}({', '.join(f'{k}={v}' for k, v in args.items())})"


def _probe(probe: Mapping[str, Any] | None) -> str:
    if not probe:
        return "default"
    return ", ".join(f"{k}={v}" for k, v in probe.items())


def build_plan(spec: PipelineSpec, settings: AzureSettings, *, data_sha256: str | None = None) -> AzurePlan:
    """Build and validate every object of a run; raise ConfigurationError naming every problem."""
    settings.require("workspace", stage="dry run")
    own_storage = settings.storage_connection_string is not None or bool(settings.storage_account_url)
    endpoint_name = naming.endpoint_name(settings, spec.deploy.endpoint_name)
    blue, green = naming.deployment_names(settings)
    first_traffic = {blue: 100}
    enforce_limits(spec, settings, extra=check_traffic(first_traffic, "traffic"))

    blob = f"{settings.blob_prefix}/{data_sha256 + '.csv' if data_sha256 else PLACEHOLDER_DATA}"
    datastore_name = settings.datastore_name if own_storage else WORKSPACE_DATASTORE
    data_path = f"azureml://datastores/{datastore_name}/paths/{blob}"
    environment = entities.build_environment(settings)
    env_ref = entities.environment_ref(environment)
    env_dict, _ = sdk_round_trip(environment, load_environment)
    compute_dict, _ = sdk_round_trip(entities.build_compute(settings), load_compute)
    store_dict: dict[str, Any] = {}
    if own_storage:
        store_dict, _ = sdk_round_trip(entities.build_datastore(settings), load_datastore)
        _redact_secrets(store_dict)
    asset = Data(name=settings.data_asset_name, version=(data_sha256 or "0")[:DATA_ASSET_VERSION_CHARS], type="uri_file",
                 path=data_path, description=f"heartflow training split, sha256 {data_sha256 or '<from the run>'}",
                 tags={**entities.CREATED_BY_TAG, "sha256": data_sha256 or "<from the run>"})
    asset_dict, _ = sdk_round_trip(asset, load_data)

    # An identity-based datastore (an account URL) holds no secret: the trials read it as the submitting user.
    user_identity = settings.storage_mode == "account_url"
    sweep_node = entities.build_sweep(settings, spec.sweep, data_path=data_path, model_name=spec.model_name,
                                      environment=env_ref, user_identity=user_identity)
    sweep_dict, _ = sdk_round_trip(sweep_node._to_job(), load_job)
    folder = spec.model_name
    model_dict, _ = sdk_round_trip(
        entities.build_model(spec.model_name, PLACEHOLDER_RUN_ID, folder, lineage_tag_names()), load_model
    )
    endpoint_dict, _ = sdk_round_trip(entities.build_endpoint(endpoint_name), load_online_endpoint)
    deployment = entities.build_deployment(
        settings, spec.deploy, name=blue, endpoint_name=endpoint_name,
        model=f"azureml:{spec.model_name}:<new version>", environment=env_ref,
    )
    deployment.model = f"azureml:{spec.model_name}:1"  # a concrete reference, so the schema can check it
    deployment_dict, _ = sdk_round_trip(deployment, load_online_deployment)
    deployment_dict["model"] = f"azureml:{spec.model_name}:<version registered by this run>"

    notes = []
    if settings.storage_mode == "workspace":
        notes.append("the trials run with the submitting user's identity if the workspace's default datastore holds no "
                     "credential (the run reads it); a new workspace's default datastore holds its account key")
    if endpoint_name != (settings.endpoint_name or spec.deploy.endpoint_name):
        notes.append(f"endpoint name {endpoint_name} is derived from the workspace (endpoint names are unique per Azure "
                     f"region, so {naming.TUTORIAL_ENDPOINT_NAME} is likely taken); --endpoint-name chooses another")
    grid = spec.sweep.grid_size()
    if spec.sweep.sampling == "grid" and grid is not None and grid > spec.sweep.max_total_trials:
        notes.append(f"the grid has {grid} combinations; max_total_trials={spec.sweep.max_total_trials} runs only part of it")
    notes.append("cost: the cluster bills per node-minute while trials run and scales to 0 after "
                 f"{settings.compute_idle_seconds} s idle; the deployment bills per instance-hour until teardown")
    return AzurePlan(
        workspace=f"{settings.workspace_name} (resource group {settings.resource_group})",
        storage=(f"container {settings.container} of account {settings.storage_account_name}" if own_storage
                 else f"the workspace's default blob datastore ({WORKSPACE_DATASTORE})"),
        data_path=data_path,
        compute=_ro(compute_dict), environment=_ro(env_dict), datastore=_ro(store_dict),
        sweep=_ro(sweep_dict), model=_ro(model_dict), endpoint=_ro(endpoint_dict), deployment=_ro(deployment_dict),
        traffic_first_deploy=_ro(first_traffic),
        traffic_next_deploy=f"{blue} or {green}, whichever is not serving",
        notes=tuple(notes), data_asset=_ro(asset_dict),
    )


def _redact_secrets(datastore: dict[str, Any]) -> None:
    credentials = datastore.get("credentials")
    if isinstance(credentials, dict):
        for key in list(credentials):
            if "key" in key.lower() or "secret" in key.lower() or "sas" in key.lower():
                credentials[key] = "<secret>"


def lineage_tag_names() -> dict[str, str]:
    """The lineage tags every registered version carries (placeholder values for the plan)."""
    from backends.azure.entities import CREATED_BY_TAG
    from backends.domain.lineage import lineage_tag_names as names

    return {name: "<from the run>" for name in (*names(), *CREATED_BY_TAG)}


def plan_violations(spec: PipelineSpec, settings: AzureSettings) -> list[str]:
    """The violated limits as text (for callers that want to list them without raising)."""
    return [str(v) for v in check_limits(spec, settings)]


__all__ = ["AzurePlan", "build_plan", "sdk_round_trip", "to_plain", "plan_violations", "Environment"]
