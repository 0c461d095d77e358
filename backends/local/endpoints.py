"""The rollout primitives on this machine: the local endpoint host (blue/green deployments in
<home>/endpoints/<name>/state.json) and the history log. The policy itself, which colour and which share,
is ``backends.domain.rollout.RolloutPolicy``; it reaches the MLflow registry (``LocalRegistry``) as its
collaborator."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from backends.domain.rollout import RolloutPolicy
from backends.errors import DeploymentError
from backends.domain.history import HistoryStore
from backends.local import tracking
from backends.local.endpoint.capture import set_capture_rate
from backends.local.registry import LocalRegistry
from backends.results import Endpoint, HistoryEntry, ModelVersion
from backends.domain.spec import DeploySpec

if TYPE_CHECKING:
    from backends.local.endpoint import EndpointStatus, LocalEndpointManager

logger = logging.getLogger(__name__)


class LocalEndpoints(RolloutPolicy):
    registry: LocalRegistry

    def __init__(self, home: Path, registry: LocalRegistry, history: HistoryStore) -> None:
        super().__init__(registry)
        self.home = home
        self.history = history

    def manager(self, endpoint_name: str) -> LocalEndpointManager:
        from backends.local.endpoint import LocalEndpointManager  # imported lazily: it starts processes

        return LocalEndpointManager(self.home, endpoint_name)

    # ---- endpoint primitives ------------------------------------------------------------------------
    def read_traffic(self, endpoint_name: str) -> dict[str, int]:
        manager = self.manager(endpoint_name)
        status = manager.status() if manager.is_running() else None
        if status is None:
            return {}
        return {d.name: int(status.traffic.get(d.name, 0)) for d in status.deployments}

    def put_deployment(self, endpoint_name: str, deployment: str, model: ModelVersion, spec: DeploySpec) -> None:
        # The manager gives a new deployment 0 % while another serves, and restores the previous state
        # when the deployment does not answer its smoke request.
        manager = self.manager(endpoint_name)
        set_capture_rate(manager.paths.root, spec.capture_rate)
        manager.deploy(
            deployment, self.model_dir(model), model.name, model.version, port=spec.port, workers=spec.workers,
            max_rows=spec.max_rows, request_timeout_ms=spec.request_timeout_ms,
        )

    def set_traffic(self, endpoint_name: str, traffic: Mapping[str, int]) -> None:
        self.manager(endpoint_name).set_traffic(traffic)

    def delete_deployment(self, endpoint_name: str, deployment: str) -> None:
        self.manager(endpoint_name).delete_deployment(deployment)

    def describe(self, endpoint_name: str, deployment: str, model: ModelVersion) -> Endpoint:
        manager = self.manager(endpoint_name)
        status = manager.status()
        if status is None or status.deployment(deployment) is None:
            raise DeploymentError(f"endpoint {endpoint_name} has no deployment {deployment}")
        return self.to_endpoint(manager, status, deployment)

    @staticmethod
    def to_endpoint(manager: LocalEndpointManager, status: EndpointStatus, deployment: str) -> Endpoint:
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

    def model_dir(self, model: ModelVersion) -> Path:
        # A shared store's artifacts may be remote: served_model_dir downloads them into the home once.
        model_dir = tracking.served_model_dir(self.registry.client, self.home, model.name, model.version)
        if not (model_dir / "MLmodel").is_file():
            raise DeploymentError(f"model {model.name} version {model.version} has no MLmodel under {model_dir}")
        return model_dir

    # ---- history primitive (the registry is the policy's ``registry`` collaborator) ---------------------
    def append_history(self, entry: HistoryEntry) -> None:
        self.history.append(entry)

    def read_history(self, endpoint_name: str) -> tuple[HistoryEntry, ...]:
        return self.history.read(endpoint_name)

    def deployed_versions(self, endpoint_name: str) -> dict[str, tuple[str, str]]:
        manager = self.manager(endpoint_name)
        status = manager.status() if manager.is_running() else None
        return {} if status is None else {d.name: (d.model_name, d.model_version) for d in status.deployments}
