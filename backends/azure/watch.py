"""What the Azure backend tells a scheduled retrain: what serves now, lineage tags on a version, the
champion's accuracy on each run's new data (kept in the model version's tags), and data assets."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError

from backends.azure.registry import AzureRegistry
from backends.azure.resilience import translate
from backends.azure.session import AzureSession
from backends.base import Endpoint, ModelVersion
from backends.domain.lineage import TAG_CHAMPION_SCORES
from backends.errors import DeploymentError, RegistrationError

TAG_DECAY = TAG_CHAMPION_SCORES  # the decay series, written here only on Azure
DECAY_KEEP = 60


def _model_of(deployment: Any) -> tuple[str, str] | None:
    """(name, version) from a deployment's model reference (``azureml:NAME:VERSION`` or an ARM id)."""
    ref = getattr(deployment, "model", None)
    ref = getattr(ref, "id", None) or ref
    if not isinstance(ref, str):
        return None
    if ref.startswith("azureml:") and ref.count(":") == 2:
        _, name, version = ref.split(":")
        return name, version
    parts = ref.strip("/").split("/")
    if "models" in parts and "versions" in parts:
        return parts[parts.index("models") + 1], parts[parts.index("versions") + 1]
    return None


class AzureWatch:
    """AzureBackend's collaborator for scheduled retraining: what serves, lineage tags, the champion's scores
    and data assets. It uses the shared AzureSession and the registry, never the backend class."""

    def __init__(self, session: AzureSession, registry: AzureRegistry) -> None:
        self._az = session
        self._registry = registry

    def _read_model(self, client: Any, model: ModelVersion) -> Any:
        try:
            return self._az.call("read the model version", client.models.get, name=model.name, version=model.version)
        except AzureError as exc:
            raise translate(exc, RegistrationError, f"reading model {model.name}:{model.version}") from exc

    def _write_model_tags(self, client: Any, target: Any, tags: Mapping[str, str]) -> None:
        target.tags = {**(target.tags or {}), **dict(tags)}
        try:
            self._az.call("update the model's tags", client.models.create_or_update, target)
        except AzureError as exc:
            raise translate(exc, RegistrationError, f"tagging model {target.name}:{target.version}") from exc

    def serving(self, endpoint_name: str) -> Endpoint | None:
        client = self._az.client("status")
        try:
            current = self._az.call("read the endpoint", client.online_endpoints.get, endpoint_name)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise translate(exc, DeploymentError, f"reading endpoint {endpoint_name}") from exc
        traffic = {str(k): int(v) for k, v in (current.traffic or {}).items() if int(v) > 0}
        if not traffic:
            return None
        deployment = max(traffic.items(), key=lambda kv: kv[1])[0]
        try:
            served = self._az.call("read the deployment", client.online_deployments.get, name=deployment,
                               endpoint_name=endpoint_name)
        except AzureError as exc:
            raise translate(exc, DeploymentError, f"reading deployment {deployment} of {endpoint_name}") from exc
        ref = _model_of(served)
        if ref is None:
            return None
        model = self._registry.get(*ref)
        s = self._az.settings
        return Endpoint(
            name=endpoint_name, deployment=deployment, scoring_uri=str(getattr(current, "scoring_uri", "") or ""),
            model_name=model.name, model_version=model.version,
            key_hint=f"az ml online-endpoint get-credentials --name {endpoint_name} -g {s.resource_group} -w {s.workspace_name}",
            traffic=traffic,
        )

    def tag_model(self, model: ModelVersion, tags: Mapping[str, str]) -> None:
        client = self._az.client("registry")
        self._write_model_tags(client, self._read_model(client, model), tags)

    def record_champion_score(self, model: ModelVersion, accuracy: float, rows: int) -> tuple[float, ...]:
        client = self._az.client("registry")
        target = self._read_model(client, model)
        try:
            scores = list(json.loads((target.tags or {}).get(TAG_DECAY, "[]")))
        except json.JSONDecodeError:
            scores = []
        scores.append([datetime.now(UTC).isoformat(timespec="seconds"), round(float(accuracy), 6), int(rows)])
        scores = scores[-DECAY_KEEP:]
        self._write_model_tags(client, target, {TAG_DECAY: json.dumps(scores, separators=(",", ":"))})
        return tuple(float(s[1]) for s in scores)

    def resolve_data_asset(self, uri: str) -> tuple[str, str]:
        from backends.azure.data_asset import resolve_data_asset

        client = self._az.client("data")
        return resolve_data_asset(client.data, client.datastores, uri)
