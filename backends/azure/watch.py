"""What the Azure backend tells a scheduled retrain: what serves now, lineage tags on a version, the
champion's accuracy on each run's new data (kept in the model version's tags), and data assets."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import AzureError

from backends.azure.resilience import translate
from backends.base import Endpoint, ModelVersion
from backends.errors import DeploymentError

TAG_DECAY = "heartflow.champion_scores"  # JSON list of [time, accuracy, rows], newest last
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


class WatchMixin:
    """Mixed into AzureBackend (``self`` is one; not imported here, to keep the imports one-way)."""

    def serving(self: Any, endpoint_name: str) -> Endpoint | None:
        client = self.client("status")
        current = self._get_endpoint(client, endpoint_name)
        traffic = {k: int(v) for k, v in ((current.traffic or {}) if current is not None else {}).items() if int(v) > 0}
        if not traffic:
            return None
        deployment = max(traffic.items(), key=lambda kv: kv[1])[0]
        try:
            served = self.call("read the deployment", client.online_deployments.get, name=deployment,
                               endpoint_name=endpoint_name)
        except AzureError as exc:
            raise translate(exc, DeploymentError, f"reading deployment {deployment} of {endpoint_name}") from exc
        ref = _model_of(served)
        if ref is None:
            return None
        return self._to_endpoint(current, deployment, self.get_model(*ref), traffic)

    def tag_model(self: Any, model: ModelVersion, tags: Mapping[str, str]) -> None:
        client = self.client("registry")
        target = self._get_model(client, model)
        target.tags = {**(target.tags or {}), **dict(tags)}
        self._save_model(client, target)

    def record_champion_score(self: Any, model: ModelVersion, accuracy: float, rows: int) -> tuple[float, ...]:
        client = self.client("registry")
        target = self._get_model(client, model)
        try:
            scores = list(json.loads((target.tags or {}).get(TAG_DECAY, "[]")))
        except json.JSONDecodeError:
            scores = []
        scores.append([datetime.now(UTC).isoformat(timespec="seconds"), round(float(accuracy), 6), int(rows)])
        scores = scores[-DECAY_KEEP:]
        target.tags = {**(target.tags or {}), TAG_DECAY: json.dumps(scores, separators=(",", ":"))}
        self._save_model(client, target)
        return tuple(float(s[1]) for s in scores)

    def resolve_data_asset(self: Any, uri: str) -> tuple[str, str]:
        from backends.azure.data_asset import resolve_data_asset

        client = self.client("data")
        return resolve_data_asset(client.data, client.datastores, uri)
