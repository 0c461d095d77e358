"""The MLflow model registry on SQLite: versions with lineage tags, the `champion` alias."""

from __future__ import annotations

import logging
import time

from mlflow.entities.model_registry import ModelVersion as MlflowModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from backends.base import ModelVersion, SweepResult
from backends.domain.identity import code_version
from backends.domain.lineage import (
    TAG_HOLDOUT_ACCURACY, TAG_METRIC_VALUE, TAG_REASON, TAG_STATUS, lineage_tags, model_version_of,
)
from backends.errors import RegistrationError

logger = logging.getLogger(__name__)

CHAMPION_ALIAS = "champion"


def _to_model_version(mv: MlflowModelVersion) -> ModelVersion:
    return model_version_of(mv.name, str(mv.version), f"models:/{mv.name}/{mv.version}", dict(mv.tags or {}),
                            run_id=mv.run_id or "")


class LocalRegistry:
    def __init__(self, client: MlflowClient) -> None:
        self._client = client

    @property
    def client(self) -> MlflowClient:
        return self._client

    def register(self, name: str, sweep: SweepResult) -> ModelVersion:
        """A new version from the best trial's model; a rerun for the same trial returns the existing
        version instead of registering a duplicate."""
        best = sweep.best
        try:
            try:
                self._client.create_registered_model(
                    name, description="Binary classifier trained and deployed by heartflow"
                )
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            existing = self._client.search_model_versions(f"name = '{name}' and run_id = '{best.run_id}'")
            if existing:
                mv = max(existing, key=lambda v: int(v.version))
                logger.info("model %s version %s already registered from trial run %s", name, mv.version, best.run_id)
                return _to_model_version(self._client.get_model_version(name, mv.version))
            run = self._client.get_run(best.run_id)
            tags = lineage_tags(sweep, code_version())
            mv = self._client.create_model_version(
                name, source=f"{run.info.artifact_uri}/model", run_id=best.run_id, tags=tags,
                description=f"Best of sweep {sweep.sweep_id}: {sweep.primary_metric}={tags[TAG_METRIC_VALUE]}",
            )
            self._wait_ready(name, mv.version)
            return _to_model_version(self._client.get_model_version(name, mv.version))
        except MlflowException as exc:
            raise RegistrationError(f"could not register model {name!r} from run {best.run_id}: {exc.message}") from exc

    def _wait_ready(self, name: str, version: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self._client.get_model_version(name, version).status != "READY":
            if time.monotonic() > deadline:
                raise RegistrationError(f"model {name} version {version} did not become READY in {timeout_s:.0f} s")
            time.sleep(0.1)

    def get(self, name: str, version: str) -> ModelVersion:
        try:
            return _to_model_version(self._client.get_model_version(name, version))
        except MlflowException as exc:
            raise RegistrationError(f"model {name!r} has no version {version}: see `heartflow history`") from exc

    def champion(self, name: str) -> ModelVersion | None:
        try:
            return _to_model_version(self._client.get_model_version_by_alias(name, CHAMPION_ALIAS))
        except MlflowException:
            return None

    def model_dir(self, name: str, version: str) -> str:
        return self._client.get_model_version_download_uri(name, version)

    def make_champion(self, model: ModelVersion, holdout_accuracy: float | None) -> None:
        previous = self.champion(model.name)
        if previous is not None and previous.version != model.version:
            self._client.set_model_version_tag(model.name, previous.version, TAG_STATUS, "retired")
        self._client.set_registered_model_alias(model.name, CHAMPION_ALIAS, model.version)
        self._client.set_model_version_tag(model.name, model.version, TAG_STATUS, "champion")
        if holdout_accuracy is not None:
            self._client.set_model_version_tag(model.name, model.version, TAG_HOLDOUT_ACCURACY, f"{holdout_accuracy:.6f}")

    def mark_rejected(self, model: ModelVersion, reason: str, holdout_accuracy: float | None) -> None:
        self._client.set_model_version_tag(model.name, model.version, TAG_STATUS, "rejected")
        self._client.set_model_version_tag(model.name, model.version, TAG_REASON, reason[:4000])
        if holdout_accuracy is not None:
            self._client.set_model_version_tag(model.name, model.version, TAG_HOLDOUT_ACCURACY, f"{holdout_accuracy:.6f}")
