"""Finding and reading a served model's folder: MLmodel, its signature, and the dataset schema recorded
with it (MLmodel metadata ``heartflow_schema``), so serving checks requests as training shaped the data.

This module runs on Azure's compute as part of a copy of src/, so it imports only third-party packages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from src.features import DatasetSchema

MLMODEL = "MLmodel"
SCHEMA_METADATA_KEY = "heartflow_schema"
_INTEGER_TYPES = frozenset({"long", "integer"})
_NUMBER_TYPES = frozenset({"long", "integer", "double", "float"})
_TEXT_TYPES = frozenset({"string"})


class ModelLoadError(Exception):
    """The model folder cannot be found, read or served (says which folder and why)."""


@dataclass(frozen=True)
class Feature:
    """One input column: a number (integer where the signature says so) or text, and whether a request
    may leave it null (the column imputes missing cells)."""

    name: str
    integer: bool
    text: bool = False
    nullable: bool = False


@dataclass(frozen=True)
class ModelInfo:
    features: tuple[Feature, ...]
    schema: DatasetSchema | None  # None for a model saved before schemas were recorded


def find_model_dir(root: Path) -> Path:
    """The folder holding MLmodel: ``root`` itself or exactly one folder directly below it."""
    root = Path(root)
    if (root / MLMODEL).is_file():
        return root
    if not root.is_dir():
        raise ModelLoadError(f"model folder {root} does not exist")
    found = sorted(p.parent for p in root.glob(f"*/{MLMODEL}"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise ModelLoadError(f"no MLflow model (a folder holding {MLMODEL}) in {root} or one level below")
    raise ModelLoadError(f"several MLflow models below {root}: {', '.join(p.name for p in found)}; point at one")


def read_model_info(model_dir: Path) -> ModelInfo:
    """Feature names and types from the MLmodel signature (column-based, required) and the schema."""
    import yaml

    meta = yaml.safe_load((Path(model_dir) / MLMODEL).read_text(encoding="utf-8")) or {}
    inputs = (meta.get("signature") or {}).get("inputs")
    if not inputs:
        raise ModelLoadError(f"{model_dir}/{MLMODEL} has no input signature: save the model with one")
    raw_schema = (meta.get("metadata") or {}).get(SCHEMA_METADATA_KEY)
    schema = DatasetSchema.from_mapping(raw_schema) if raw_schema else None
    columns = json.loads(inputs) if isinstance(inputs, str) else inputs
    features = []
    for column in columns:
        name, kind = column.get("name"), column.get("type")
        if not name or kind not in _NUMBER_TYPES | _TEXT_TYPES:
            raise ModelLoadError(
                f"{model_dir}/{MLMODEL}: input {name or '?'} has type {kind}; only named number or text columns are served"
            )
        nullable = schema is not None and schema.policy(str(name)) == "impute"
        text = kind in _TEXT_TYPES
        features.append(Feature(name=str(name), integer=kind in _INTEGER_TYPES, text=text, nullable=nullable))
    return ModelInfo(tuple(features), schema)


def read_features(model_dir: Path) -> tuple[Feature, ...]:
    return read_model_info(model_dir).features


def load_sklearn_model(model_dir: Path) -> Any:
    """Load the sklearn flavour once; skops loads only the trusted types recorded in MLmodel.

    A skops-format model (heartflow saves no other) is loaded with skops directly, the same call
    ``mlflow.sklearn.load_model`` makes: importing MLflow (and through its entry points azureml-mlflow) cost
    each endpoint worker about 1.2 s of start-up and ~100 MiB, for nothing it uses when serving."""
    import yaml

    try:
        meta = yaml.safe_load((Path(model_dir) / MLMODEL).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ModelLoadError(f"cannot read {model_dir}/{MLMODEL}: {exc}") from exc
    flavor = (meta.get("flavors") or {}).get("sklearn") or {}
    if flavor.get("serialization_format") == "skops" and not flavor.get("code") and flavor.get("pickled_model"):
        import skops.io

        try:
            return skops.io.load(Path(model_dir) / str(flavor["pickled_model"]),
                                 trusted=list(flavor.get("skops_trusted_types") or []))
        except Exception as exc:
            raise ModelLoadError(f"cannot load the MLflow sklearn model in {model_dir}: {exc}") from exc
    import mlflow.sklearn

    try:
        return mlflow.sklearn.load_model(str(model_dir))
    except Exception as exc:
        raise ModelLoadError(f"cannot load the MLflow sklearn model in {model_dir}: {exc}") from exc
