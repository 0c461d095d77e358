"""The in-memory model registry: versions with the same lineage tags as the local registry, the fitted
model of each, and the champion alias."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from backends.domain.identity import code_version
from backends.domain.lineage import TAG_HOLDOUT_ACCURACY, TAG_REASON, TAG_STATUS, lineage_tags, model_version_of
from backends.errors import RegistrationError
from backends.results import ModelVersion, SweepResult
from src.features import DatasetSchema, coerce_categoricals
from src.metrics import labels_at, model_threshold


@dataclasses.dataclass(frozen=True)
class TrainedModel:
    """A trial's fitted pipeline, the schema it was trained on and a row of its training features (the
    deployment's smoke request)."""

    model: Any
    schema: DatasetSchema
    example: pd.DataFrame

    def predict(self, frame: pd.DataFrame) -> Any:
        """Labels for ``frame``'s rows, its columns typed as the model was trained (as a host coerces a
        request's rows)."""
        return self.model.predict(coerce_categoricals(frame.loc[:, list(self.schema.features)], self.schema))

    def answer(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Labels at the model's stored threshold (as src/scoring.py labels) and the positive class's
        probabilities."""
        x = coerce_categoricals(frame.loc[:, list(self.schema.features)], self.schema)
        proba = np.asarray(self.model.predict_proba(x))[:, 1]
        threshold = model_threshold(self.model)
        own = np.asarray(self.model.predict(x)) if threshold is None else None  # the model's own decision, only when used
        return labels_at(proba, threshold, own), proba


class MemoryRegistry:
    def __init__(self) -> None:
        self._versions: dict[str, list[ModelVersion]] = {}
        self._models: dict[tuple[str, str], TrainedModel] = {}
        self._champions: dict[str, str] = {}

    def register(self, name: str, sweep: SweepResult, trained: TrainedModel | None) -> ModelVersion:
        best = sweep.best
        versions = self._versions.setdefault(name, [])
        for existing in versions:
            if existing.source_run_id == best.run_id:
                return self.get(name, existing.version)
        if trained is None:
            raise RegistrationError(f"could not register model {name!r}: trial run {best.run_id} has no model")
        number = str(len(versions) + 1)
        version = model_version_of(name, number, f"memory://models/{name}/{number}", lineage_tags(sweep, code_version()))
        versions.append(version)
        self._models[(name, version.version)] = trained
        return version

    def get(self, name: str, version: str) -> ModelVersion:
        for existing in self._versions.get(name, []):
            if existing.version == version:
                return existing
        raise RegistrationError(f"model {name!r} has no version {version}: see `heartflow history`")

    def trained(self, model: ModelVersion) -> TrainedModel:
        self.get(model.name, model.version)
        return self._models[(model.name, model.version)]

    def tag(self, model: ModelVersion, tags: Mapping[str, str]) -> None:
        current = self.get(model.name, model.version)
        updated = dataclasses.replace(current, tags={**current.tags, **tags})
        versions = self._versions[model.name]
        versions[versions.index(current)] = updated

    def champion(self, name: str) -> ModelVersion | None:
        version = self._champions.get(name)
        return None if version is None else self.get(name, version)

    def make_champion(self, model: ModelVersion, holdout_accuracy: float | None) -> None:
        previous = self.champion(model.name)
        if previous is not None and previous.version != model.version:
            self.tag(previous, {TAG_STATUS: "retired"})
        self._champions[model.name] = model.version
        tags = {TAG_STATUS: "champion"}
        if holdout_accuracy is not None:
            tags[TAG_HOLDOUT_ACCURACY] = f"{holdout_accuracy:.6f}"
        self.tag(model, tags)

    def mark_rejected(self, model: ModelVersion, reason: str, holdout_accuracy: float | None) -> None:
        tags = {TAG_STATUS: "rejected", TAG_REASON: reason[:4000]}
        if holdout_accuracy is not None:
            tags[TAG_HOLDOUT_ACCURACY] = f"{holdout_accuracy:.6f}"
        self.tag(model, tags)
