"""One training trial: fit the pipeline with one set of hyperparameters and score it.

Imported by the local sweep's worker processes (``train_trial``) and run as a script by an Azure ML
command job with the tutorial's command line, from a copy of src/ alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline

from src.features import (
    HEART_SCHEMA, SKOPS_TRUSTED_TYPES, DatasetSchema, build_pipeline, parse_param_text, read_training_csv,
)
from src.metrics import THRESHOLD_ATTRIBUTE, labels_at, parse_threshold, pick_threshold, score_predictions
from src.model_files import SCHEMA_METADATA_KEY

logger = logging.getLogger(__name__)

PIP_REQUIREMENTS_PACKAGES = ("scikit-learn", "pandas", "numpy", "skops", "mlflow")


@dataclass(frozen=True)
class TrialFit:
    metrics: dict[str, float]
    model: Pipeline
    seconds: float
    threshold: float | None = None  # None: the model's own decision (0.5)
    fold_metrics: tuple[dict[str, float], ...] = ()  # per validation fold, at the model's threshold


@dataclass(frozen=True)
class _Fold:
    y_true: np.ndarray
    proba: np.ndarray
    predicted: np.ndarray  # the model's own labels

    def score(self, threshold: float | None) -> dict[str, float]:
        return score_predictions(self.y_true, labels_at(self.proba, threshold, self.predicted), self.proba)


def _fit_fold(model: Pipeline, x_fit: pd.DataFrame, y_fit: pd.Series, x_val: pd.DataFrame, y_val: pd.Series) -> _Fold:
    model.fit(x_fit, y_fit)
    return _Fold(y_val.to_numpy(), model.predict_proba(x_val)[:, 1], np.asarray(model.predict(x_val)))


def _mean(per_fold: list[dict[str, float]]) -> dict[str, float]:
    return {name: float(np.mean([m[name] for m in per_fold])) for name in per_fold[0]}


def train_trial(
    frame: pd.DataFrame,
    schema: DatasetSchema,
    params: Mapping[str, Any],
    *,
    seed: int,
    method: str = "split",
    test_size: float = 0.3,
    folds: int = 5,
    random_state: int = 0,
    on_fold: Callable[[int, dict[str, float]], object] | None = None,
    threshold: float | str | None = None,
    metric: str = "accuracy",
    refit: bool = True,
) -> TrialFit:
    """Fit and score one trial. Deterministic for the same inputs (the forest and the split are seeded).

    method "split": the tutorial's train_test_split(test_size, random_state); the model is the one fitted
    on the training part. method "kfold": metrics are the mean over stratified folds; the model is refit
    on all of ``frame``. ``on_fold(k, metrics)`` is called after fold k (1-based) with the mean over
    folds 1..k (method "split": once, k=1), so a tracker can report interim values early termination
    acts on; the last call carries the final metrics.

    ``threshold``: None or 0.5 (the model's own decision), a probability, or "auto": the threshold that
    maximises F1 (``metric`` f1) or balanced accuracy (otherwise) on the out-of-fold predictions (the
    validation part for "split"); the final metrics are scored at it and it is stored on the model.
    ``refit`` False skips the refit on all rows (kfold): for a comparison that needs only the folds' scores.
    """
    started = time.perf_counter()
    chosen = parse_threshold(threshold)
    interim_threshold = chosen if isinstance(chosen, float) else None  # "auto": 0.5 until the folds are in
    x = frame.loc[:, list(schema.features)]
    y = frame[schema.target].astype(int)
    fitted: list[_Fold] = []
    if method == "split":
        x_fit, x_val, y_fit, y_val = train_test_split(x, y, test_size=test_size, random_state=random_state)
        model = build_pipeline(schema, params, seed)
        fitted.append(_fit_fold(model, x_fit, y_fit, x_val, y_val))
    elif method == "kfold":
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
        for a, b in splitter.split(x, y):
            fold_model = build_pipeline(schema, params, seed)
            fitted.append(_fit_fold(fold_model, x.iloc[a], y.iloc[a], x.iloc[b], y.iloc[b]))
            if on_fold is not None and (chosen != "auto" or len(fitted) < folds):
                on_fold(len(fitted), _mean([f.score(interim_threshold) for f in fitted]))
        # refit False (a comparison that needs only the folds' scores): the last fold's model stands in.
        model = build_pipeline(schema, params, seed).fit(x, y) if refit else fold_model
    else:
        raise ValueError(f"unknown validation method {method!r}: use 'split' or 'kfold'")
    final = interim_threshold
    if chosen == "auto":
        final = pick_threshold(np.concatenate([f.y_true for f in fitted]),
                               np.concatenate([f.proba for f in fitted]), metric)
    per_fold = tuple(f.score(final) for f in fitted)
    metrics = _mean(list(per_fold))
    if final is not None:
        metrics["threshold"] = float(final)
        setattr(model, THRESHOLD_ATTRIBUTE, float(final))
    if on_fold is not None and (method == "split" or chosen == "auto"):
        on_fold(len(fitted), metrics)
    return TrialFit(metrics=metrics, model=model, seconds=time.perf_counter() - started, threshold=final,
                    fold_metrics=per_fold)


def pip_requirements() -> list[str]:
    """Pinned requirements of the logged model, given explicitly (inferring them costs seconds per model)."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in PIP_REQUIREMENTS_PACKAGES:
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            pins.append(package)
    return pins


def model_signature(frame: pd.DataFrame, schema: DatasetSchema) -> Any:
    """An MLflow signature naming every feature column and its type, so servers can check requests."""
    from mlflow.models import infer_signature

    features = frame.loc[:, list(schema.features)].head(5).copy()
    for column in schema.categorical:  # a text column whose first rows are empty still types as text
        if features[column].dtype == object:
            present = frame[column].dropna()
            features[column] = features[column].fillna(present.iloc[0] if len(present) else "missing")
    with warnings.catch_warnings():
        # MLflow hints that integer columns cannot hold missing values; heartflow rejects those anyway.
        warnings.filterwarnings("ignore", message=".*integer column.*", category=UserWarning)
        return infer_signature(features, np.zeros(len(features), dtype=np.int64))


def model_metadata(frame: pd.DataFrame, schema: DatasetSchema) -> dict[str, Any]:
    """What MLmodel records besides the signature: the schema (serving checks requests and answers in the
    data's labels with it; retraining reuses it) and the missing cells the pipeline imputed, per column."""
    missing = {c: int(n) for c, n in frame.loc[:, list(schema.features)].isna().sum().items() if n}
    return {SCHEMA_METADATA_KEY: schema.to_mapping(), "heartflow_imputed_cells": missing}


def save_model(
    model: Pipeline, path: Path, signature: Any, requirements: list[str], metadata: dict[str, Any] | None = None
) -> None:
    """Save in MLflow's sklearn flavour, skops format with explicit trusted types."""
    import mlflow.sklearn

    mlflow.sklearn.save_model(
        model,
        str(path),
        serialization_format="skops",
        skops_trusted_types=SKOPS_TRUSTED_TYPES,
        signature=signature,
        pip_requirements=requirements,
        metadata=metadata,
    )


def read_input(path: Path, schema: DatasetSchema = HEART_SCHEMA) -> pd.DataFrame:
    """A CSV file, or a folder holding exactly one (an Azure uri_folder input), typed by the schema."""
    if path.is_dir():
        files = sorted(path.glob("*.csv"))
        if len(files) != 1:
            raise SystemExit(f"--input_data {path}: expected exactly one .csv file in the folder, found {len(files)}")
        path = files[0]
    return read_training_csv(path, schema)


def decode_schema(text: str) -> DatasetSchema:
    """A schema given on the command line: JSON, or URL-safe base64 of JSON (a job input that survives any
    shell and any column name: spaces, dots, quotes)."""
    import base64

    stripped = text.strip()
    if not stripped.startswith("{"):
        stripped = base64.urlsafe_b64decode(stripped.encode("ascii")).decode("utf-8")
    return DatasetSchema.from_mapping(json.loads(stripped))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train and score one trial (the tutorial's command line; the family "
                                     "comes as model in --extra_params_json, random forest by default).")
    parser.add_argument("--input_data", type=Path, required=True, help="CSV file or folder with one CSV")
    parser.add_argument("--model_name", default="heart_classifier", help="folder name of the saved model under --output_dir")
    parser.add_argument("--test_size", type=float, default=0.3)
    # Search-space values arrive as Azure ML renders the sampled value ("50", "50.0" from a q-distribution,
    # "0.5", "sqrt", "None"): read as JSON numbers, then typed by to_estimator_params as for a local trial.
    parser.add_argument("--n_estimators", type=parse_param_text, default=100)
    parser.add_argument("--max_depth", type=parse_param_text, default=-1, help="-1 means unlimited")
    parser.add_argument("--criterion", type=parse_param_text, default="gini")
    parser.add_argument("--max_features", type=parse_param_text, default="sqrt")
    parser.add_argument("--random_state", type=int, default=0, help="seed of the validation split")
    parser.add_argument("--seed", type=int, default=42, help="seed of the forest")
    parser.add_argument("--validation", choices=["split", "kfold"], default="split")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--schema_json", default=None,
                        help="dataset schema as JSON or base64 of JSON (an Azure job input); default: the heart schema")
    parser.add_argument("--extra_params_json", default=None,
                        help='further parameters as a JSON object, including the family: {"model": "hgb", ...}')
    parser.add_argument("--threshold", default="0.5", help="0.5 (the model's own decision), auto, or a probability")
    parser.add_argument("--metric", default="accuracy", help="the sweep's metric (threshold auto maximises F1 for f1)")
    parser.add_argument("--output_dir", type=Path, default=Path("outputs"), help="Azure ML uploads ./outputs")
    return parser.parse_args(argv)


def trial_params(args: argparse.Namespace) -> dict[str, Any]:
    """The trial's hyperparameters from the command line, valued as a local trial's (build_pipeline then
    types them with to_estimator_params, the local backend's conversion)."""
    params: dict[str, Any] = {
        "n_estimators": args.n_estimators,
        "max_depth": args.max_depth,
        "criterion": args.criterion,
        "max_features": args.max_features,
    }
    if args.extra_params_json:  # a quoted value ("None", "0.5" of a mixed choice) is read as the script's own arguments
        extra = json.loads(args.extra_params_json)
        params.update({k: parse_param_text(v) if isinstance(v, str) else v for k, v in extra.items()})
    return params


def main(argv: list[str] | None = None) -> int:
    """The script entry: log params and metrics to the active MLflow tracking (Azure ML sets it) and
    save the model under <output_dir>/<model_name>."""
    import mlflow

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parse_args(argv)
    schema = decode_schema(args.schema_json) if args.schema_json else HEART_SCHEMA
    frame = read_input(args.input_data, schema)
    params = trial_params(args)
    with mlflow.start_run():
        mlflow.log_params(params)
        # Every metric (the sweep's primary metric among them) after each fold, step = fold: the interim
        # values Azure ML's early termination compares; the last step holds the final value.
        fit = train_trial(
            frame, schema, params, seed=args.seed, method=args.validation, test_size=args.test_size,
            folds=args.folds, random_state=args.random_state,
            on_fold=lambda fold, interim: mlflow.log_metrics(interim, step=fold),
            threshold=args.threshold, metric=args.metric,
        )
        target = args.output_dir / args.model_name
        save_model(fit.model, target, model_signature(frame, schema), pip_requirements(), model_metadata(frame, schema))
        logger.info("trial done: %s; model saved to %s", fit.metrics, target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
