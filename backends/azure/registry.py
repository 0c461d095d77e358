"""The workspace's model registry: versions with lineage tags, and the champion. Azure ML has no model
aliases: the champion is the version tagged champion=true (and heartflow.status=champion)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError

from backends.azure import entities
from backends.azure.resilience import translate
from backends.azure.session import AzureSession
from backends.domain.identity import code_version
from backends.domain.lineage import (
    TAG_HOLDOUT_ACCURACY, TAG_PROMOTED_AT, TAG_REASON, TAG_REJECTED_AT, TAG_RETIRED_AT, TAG_STATUS, TAG_TRIAL,
    lineage_tags, model_version_of,
)
from backends.errors import RegistrationError
from backends.results import ModelVersion, SweepResult

logger = logging.getLogger(__name__)

CHAMPION_TAG = "champion"
TAG_VALUE_LIMIT = 256


def to_model_version(model: Any) -> ModelVersion:
    return model_version_of(model.name, str(model.version), f"azureml:{model.name}:{model.version}", model.tags or {})


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class AzureRegistry:
    """register / get / champion / tagging. ``trained_as`` is the model name the sweep's trials saved
    their model under (outputs/<trained_as>)."""

    def __init__(self, session: AzureSession, trained_as: str) -> None:
        self._az = session
        self.trained_as = trained_as

    def register(self, sweep: SweepResult, name: str) -> ModelVersion:
        client = self._az.client("register")
        best = sweep.best
        tags = {**lineage_tags(sweep, code_version()), **entities.CREATED_BY_TAG}
        existing = next((m for m in self.versions(name) if (m.tags or {}).get(TAG_TRIAL) == best.run_id), None)
        if existing is not None:
            logger.info("trial %s is already registered as %s:%s", best.run_id, existing.name, existing.version)
            return to_model_version(existing)
        folder = self.trained_as  # model_train.py saved it under outputs/<model name>
        model = entities.build_model(name, best.run_id, folder, tags)
        try:
            registered = self._az.call("register the model", client.models.create_or_update, model)
        except AzureError as exc:
            raise translate(exc, RegistrationError, f"registering {name} from trial {best.run_id}",
                            check=f"that trial {best.run_id} saved outputs/{folder}",
                            logs=f"{sweep.url} (the trial's Outputs + logs tab)") from exc
        logger.info("registered %s version %s from trial %s", registered.name, registered.version, best.run_id)
        return to_model_version(registered)

    def get(self, name: str, version: str) -> ModelVersion:
        return to_model_version(self._get(name, str(version)))

    def _get(self, name: str, version: str) -> Any:
        client = self._az.client("registry")
        try:
            return self._az.call("read the model version", client.models.get, name=name, version=version)
        except AzureError as exc:
            raise translate(exc, RegistrationError, f"reading model {name} version {version}") from exc

    def versions(self, name: str) -> list[Any]:
        client = self._az.client("registry")
        try:
            return self._az.listing("list model versions", client.models.list, name=name)
        except ResourceNotFoundError:
            return []
        except AzureError as exc:
            raise translate(exc, RegistrationError, f"listing versions of model {name}") from exc

    def champion(self, name: str) -> ModelVersion | None:
        holders = [m for m in self.versions(name) if (m.tags or {}).get(CHAMPION_TAG) == "true"]
        if not holders:
            return None
        return to_model_version(max(holders, key=lambda m: int(m.version) if str(m.version).isdigit() else 0))

    def make_champion(self, model: ModelVersion, holdout_accuracy: float) -> None:
        now = _now()
        for holder in self.versions(model.name):
            if (holder.tags or {}).get(CHAMPION_TAG) == "true" and str(holder.version) != model.version:
                holder.tags = {k: v for k, v in holder.tags.items() if k != CHAMPION_TAG}
                holder.tags.update({TAG_STATUS: "retired", TAG_RETIRED_AT: now})
                self._save(holder)
        target = self._get(model.name, model.version)
        target.tags = {**(target.tags or {}), CHAMPION_TAG: "true", TAG_STATUS: "champion", TAG_PROMOTED_AT: now,
                       TAG_HOLDOUT_ACCURACY: f"{holdout_accuracy:.6f}"}
        self._save(target)

    def mark_rejected(self, model: ModelVersion, reason: str, holdout_accuracy: float | None) -> None:
        target = self._get(model.name, model.version)
        target.tags = {**(target.tags or {}), TAG_STATUS: "rejected", TAG_REASON: reason[:TAG_VALUE_LIMIT],
                       TAG_REJECTED_AT: _now()}
        if holdout_accuracy is not None:
            target.tags[TAG_HOLDOUT_ACCURACY] = f"{holdout_accuracy:.6f}"
        self._save(target)

    def _save(self, model: Any) -> None:
        client = self._az.client("registry")
        try:
            self._az.call("update the model's tags", client.models.create_or_update, model)
        except AzureError as exc:
            raise translate(exc, RegistrationError, f"tagging model {model.name}:{model.version}") from exc
