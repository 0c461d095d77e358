"""Request validation and prediction for the real-time endpoint, shared by score.py and the local host.

``Scorer.score(body)`` takes the raw request body of ``POST /score`` (the tutorial's ``{"data": [records]}``)
and returns ``(status, payload)``: 200 with the list of predicted labels, or a 4xx with ``{"error": "..."}``
that names the problem. It never raises for anything a client can send.

The hot path parses the body once, checks every value while copying the records into one float64 array,
and predicts from that array. For the project's own pipeline (ColumnTransformer of StandardScaler,
OneHotEncoder(handle_unknown="ignore") and passthrough, then a random forest) a compiled predictor does
the same arithmetic as scikit-learn without building a DataFrame; it is checked against the model on
probe rows at load time and replaced by the plain DataFrame path whenever the two disagree.

This module runs on Azure's compute as part of a copy of src/, so it imports only third-party packages.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

try:  # orjson is faster; the standard library is the fallback on machines without it
    import orjson

    def _loads(body: bytes | str) -> Any:
        return orjson.loads(body)

    def dumps(payload: Any) -> bytes:
        """Serialize a response payload to JSON bytes."""
        return orjson.dumps(payload)

    _JSON_ERRORS: tuple[type[Exception], ...] = (orjson.JSONDecodeError, UnicodeDecodeError)
except ImportError:  # pragma: no cover - exercised only where orjson is missing

    def _reject_constant(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    def _loads(body: bytes | str) -> Any:
        return json.loads(body, parse_constant=_reject_constant)

    def dumps(payload: Any) -> bytes:
        """Serialize a response payload to JSON bytes."""
        return json.dumps(payload, separators=(",", ":")).encode()

    _JSON_ERRORS = (ValueError, UnicodeDecodeError)

logger = logging.getLogger(__name__)

MAX_ROWS_ENV = "HEARTFLOW_MAX_ROWS"
DEFAULT_MAX_ROWS = 1000
MLMODEL = "MLmodel"
_INTEGER_TYPES = frozenset({"long", "integer"})
_NUMBER_TYPES = frozenset({"long", "integer", "double", "float"})
_NON_JSON_TOKENS: dict[type, tuple[Any, ...]] = {bytes: (b"NaN", b"Infinity"), str: ("NaN", "Infinity")}


class ModelLoadError(Exception):
    """The model folder cannot be found, read or served (says which folder and why)."""


class RequestError(Exception):
    """A request the endpoint refuses: an HTTP status and a message naming the problem."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Feature:
    """One input column of the model's signature."""

    name: str
    integer: bool


def max_rows_from_env(default: int = DEFAULT_MAX_ROWS) -> int:
    """HEARTFLOW_MAX_ROWS, or ``default`` when unset or not a positive integer."""
    raw = os.environ.get(MAX_ROWS_ENV, "")
    try:
        value = int(raw)
    except ValueError:
        return default
    return value if value > 0 else default


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


def read_features(model_dir: Path) -> tuple[Feature, ...]:
    """Feature names and types from the MLmodel signature (a column-based signature is required)."""
    import yaml

    meta = yaml.safe_load((Path(model_dir) / MLMODEL).read_text(encoding="utf-8")) or {}
    inputs = (meta.get("signature") or {}).get("inputs")
    if not inputs:
        raise ModelLoadError(f"{model_dir}/{MLMODEL} has no input signature: save the model with one")
    columns = json.loads(inputs) if isinstance(inputs, str) else inputs
    features = []
    for column in columns:
        name, kind = column.get("name"), column.get("type")
        if not name or kind not in _NUMBER_TYPES:
            raise ModelLoadError(
                f"{model_dir}/{MLMODEL}: input {name or '?'} has type {kind}; only named numeric columns are served"
            )
        features.append(Feature(name=str(name), integer=kind in _INTEGER_TYPES))
    return tuple(features)


def load_sklearn_model(model_dir: Path) -> Any:
    """Load the sklearn flavour once; skops loads only the trusted types recorded in MLmodel."""
    import mlflow.sklearn

    try:
        return mlflow.sklearn.load_model(str(model_dir))
    except Exception as exc:  # noqa: BLE001 - mlflow, skops and sklearn raise many kinds; one message for all
        raise ModelLoadError(f"cannot load the MLflow sklearn model in {model_dir}: {exc}") from exc


# --------------------------------------------------------------------------------------------- predictors


class Predictor(Protocol):
    """Predicts from a float64 array whose columns follow the signature's order."""

    kind: str
    classes: np.ndarray

    def predict(self, x: np.ndarray, with_proba: bool) -> tuple[np.ndarray, np.ndarray | None]: ...


class FramePredictor:
    """The general path: a DataFrame with the signature's column names and dtypes, then the model."""

    kind = "dataframe"

    def __init__(self, model: Any, features: Sequence[Feature]) -> None:
        import pandas as pd

        self._pd = pd
        self._model = model
        self._names = [f.name for f in features]
        self._integer = [f.integer for f in features]
        self.classes = np.asarray(getattr(model, "classes_", []))
        self.has_proba = hasattr(model, "predict_proba")

    def frame(self, x: np.ndarray) -> Any:
        columns = {
            name: (x[:, j].astype(np.int64) if integer else x[:, j])
            for j, (name, integer) in enumerate(zip(self._names, self._integer))
        }
        return self._pd.DataFrame(columns, copy=False)

    def predict(self, x: np.ndarray, with_proba: bool) -> tuple[np.ndarray, np.ndarray | None]:
        frame = self.frame(x)
        labels = np.asarray(self._model.predict(frame))
        proba = np.asarray(self._model.predict_proba(frame)) if with_proba and self.has_proba else None
        return labels, proba


class CompiledForestPredictor:
    """ColumnTransformer(scale, one-hot, passthrough) + random forest, computed on numpy arrays.

    The same operations scikit-learn performs (scaling in float64, one-hot with unknown categories as
    zeros, float32 input to the trees, per-tree class fractions summed in order and divided by the
    number of trees), without the DataFrame and validation overhead of each call.
    """

    kind = "compiled-forest"

    def __init__(self, blocks: list[tuple[str, np.ndarray, tuple[Any, ...]]], width: int, forest: Any) -> None:
        self._blocks = blocks
        self._width = width
        self._trees = [estimator.tree_ for estimator in forest.estimators_]
        self._n_classes = int(forest.n_classes_)
        self.classes = np.asarray(forest.classes_)

    @classmethod
    def build(cls, model: Any, features: Sequence[Feature]) -> CompiledForestPredictor | None:
        """A compiled predictor when ``model`` has exactly the supported shape, else None."""
        from sklearn.compose import ColumnTransformer
        from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

        if not isinstance(model, Pipeline) or len(model.steps) != 2:
            return None
        pre, forest = model.steps[0][1], model.steps[1][1]
        if not isinstance(pre, ColumnTransformer) or type(forest) not in (RandomForestClassifier, ExtraTreesClassifier):
            return None
        if getattr(forest, "n_outputs_", 1) != 1:
            return None
        inputs = list(getattr(pre, "feature_names_in_", []))
        position = {f.name: j for j, f in enumerate(features)}
        if sorted(inputs) != sorted(position):
            return None
        blocks: list[tuple[str, np.ndarray, tuple[Any, ...]]] = []
        width = 0
        for _name, transformer, columns in pre.transformers_:
            if isinstance(columns, slice) or np.asarray(columns).dtype == bool:
                return None
            names = [inputs[c] if isinstance(c, (int, np.integer)) else str(c) for c in list(columns)]
            if not names or (isinstance(transformer, str) and transformer == "drop"):
                continue
            idx = np.asarray([position[n] for n in names], dtype=np.intp)
            identity = type(transformer) is FunctionTransformer and transformer.func is None  # fitted passthrough
            if identity or (isinstance(transformer, str) and transformer == "passthrough"):
                blocks.append(("copy", idx, ()))
                width += len(idx)
            elif type(transformer) is StandardScaler:
                mean = transformer.mean_ if transformer.with_mean else None
                scale = transformer.scale_ if transformer.with_std else None
                blocks.append(("scale", idx, (mean, scale)))
                width += len(idx)
            elif type(transformer) is OneHotEncoder:
                if (
                    transformer.handle_unknown != "ignore"
                    or transformer.drop_idx_ is not None
                    or getattr(transformer, "_infrequent_enabled", False)
                    or any(np.asarray(c).dtype.kind not in "iuf" for c in transformer.categories_)
                ):
                    return None
                categories = tuple(np.asarray(c, dtype=np.float64)[None, :] for c in transformer.categories_)
                blocks.append(("onehot", idx, categories))
                width += sum(c.shape[1] for c in categories)
            else:
                return None
        if width != forest.n_features_in_:
            return None
        return cls(blocks, width, forest)

    def transform(self, x: np.ndarray) -> np.ndarray:
        out = np.empty((x.shape[0], self._width), dtype=np.float64)
        at = 0
        for kind, idx, extra in self._blocks:
            part = x[:, idx]
            if kind == "copy":
                out[:, at : at + len(idx)] = part
                at += len(idx)
            elif kind == "scale":
                mean, scale = extra
                if mean is not None:
                    part = part - mean
                if scale is not None:
                    part = part / scale
                out[:, at : at + len(idx)] = part
                at += len(idx)
            else:
                for j, categories in enumerate(extra):
                    size = categories.shape[1]
                    out[:, at : at + size] = part[:, j : j + 1] == categories
                    at += size
        return out

    def predict(self, x: np.ndarray, with_proba: bool) -> tuple[np.ndarray, np.ndarray | None]:
        x32 = np.ascontiguousarray(self.transform(x), dtype=np.float32)
        n = self._n_classes
        proba = np.zeros((x32.shape[0], n), dtype=np.float64)
        for tree in self._trees:
            proba += tree.predict(x32)[:, :n]
        proba /= len(self._trees)
        return self.classes.take(np.argmax(proba, axis=1), axis=0), proba


def _probe_rows(model: Any, features: Sequence[Feature], rows: int = 200, seed: int = 0) -> np.ndarray:
    """Rows that exercise every branch of the compiled path: known and unknown categories, scaled values."""
    rng = np.random.default_rng(seed)
    pre = model.steps[0][1]
    centre: dict[str, tuple[float, float]] = {}
    levels: dict[str, np.ndarray] = {}
    inputs = list(pre.feature_names_in_)
    for _name, transformer, columns in pre.transformers_:
        names = [inputs[c] if isinstance(c, (int, np.integer)) else str(c) for c in list(columns)]
        for j, name in enumerate(names):
            if hasattr(transformer, "mean_") and transformer.mean_ is not None:
                centre[name] = (float(transformer.mean_[j]), float(transformer.scale_[j] or 1.0))
            if hasattr(transformer, "categories_"):
                levels[name] = np.append(np.asarray(transformer.categories_[j], dtype=np.float64), 99.0)
    x = np.empty((rows, len(features)), dtype=np.float64)
    for j, feature in enumerate(features):
        if feature.name in levels:
            column = rng.choice(levels[feature.name], size=rows)
        elif feature.name in centre:
            mean, scale = centre[feature.name]
            column = rng.normal(mean, 2 * scale, size=rows)
        else:
            column = rng.integers(-1, 6, size=rows).astype(np.float64)
        x[:, j] = np.round(column) if feature.integer else column
    return x


def build_predictor(model: Any, features: Sequence[Feature]) -> Predictor:
    """The compiled predictor when it reproduces the model exactly on probe rows, else the DataFrame path."""
    general = FramePredictor(model, features)
    try:
        compiled = CompiledForestPredictor.build(model, features)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        logger.info("model shape not compilable (%s); using the DataFrame path", exc)
        compiled = None
    if compiled is None:
        return general
    probe = _probe_rows(model, features)
    labels, proba = compiled.predict(probe, True)
    expected_labels, expected_proba = general.predict(probe, True)
    if not (np.array_equal(labels, expected_labels) and np.allclose(proba, expected_proba, rtol=0, atol=1e-12)):
        logger.warning("compiled predictor disagrees with the model on probe rows; using the DataFrame path")
        return general
    return compiled


# ------------------------------------------------------------------------------------------------ scorer


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        shown = value if len(value) <= 20 else value[:17] + "..."
        return f"a string ({json.dumps(shown)})"
    if isinstance(value, (dict, list)):
        return "a nested " + ("object" if isinstance(value, dict) else "array")
    return type(value).__name__


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


class Scorer:
    """Validates ``{"data": [records]}`` bodies and predicts with one loaded model."""

    def __init__(
        self, model: Any, features: Sequence[Feature], *, max_rows: int = DEFAULT_MAX_ROWS, label: str = "model"
    ) -> None:
        if not features:
            raise ModelLoadError(f"{label}: the signature names no feature")
        self.features = tuple(features)
        self.names = tuple(f.name for f in self.features)
        self.max_rows = int(max_rows)
        self.label = label
        self._name_set = frozenset(self.names)
        self._integer_idx = np.asarray([j for j, f in enumerate(self.features) if f.integer], dtype=np.intp)
        self.predictor: Predictor = build_predictor(model, self.features)
        self.classes = [c.item() if hasattr(c, "item") else c for c in self.predictor.classes]
        logger.info(
            "scorer ready: %s, %d features, predictor %s, max_rows %d",
            label, len(self.names), self.predictor.kind, self.max_rows,
        )

    @classmethod
    def from_model_dir(cls, root: Path, *, max_rows: int = DEFAULT_MAX_ROWS, label: str | None = None) -> Scorer:
        """Find the MLflow model under ``root``, load it once and read its signature."""
        model_dir = find_model_dir(Path(root))
        features = read_features(model_dir)
        return cls(load_sklearn_model(model_dir), features, max_rows=max_rows, label=label or str(model_dir))

    def example_request(self) -> dict[str, Any]:
        """A valid one-row body (every feature 0), used as a smoke request."""
        return {"data": [{name: 0 for name in self.names}]}

    def score(self, body: bytes | str) -> tuple[int, Any]:
        """(200, labels) or, with ``return_probabilities``, (200, {predictions, probabilities, classes});
        (4xx, {"error": message}) for a request the endpoint refuses."""
        try:
            request = self._parse(body)
            x = self._rows(request["data"])
            with_proba = self._wants_proba(request)
        except RequestError as exc:
            return exc.status, {"error": exc.message}
        labels, proba = self.predictor.predict(x, with_proba)
        predictions = labels.tolist()
        if not with_proba:
            return 200, predictions
        if proba is None:
            return 400, {"error": "return_probabilities: this model does not give probabilities"}
        return 200, {"predictions": predictions, "probabilities": proba.tolist(), "classes": self.classes}

    def score_json(self, body: bytes | str) -> tuple[int, bytes]:
        """``score`` with the payload serialized to JSON bytes."""
        status, payload = self.score(body)
        return status, dumps(payload)

    # -- validation ------------------------------------------------------------------------------------

    @staticmethod
    def _parse(body: bytes | str) -> dict[str, Any]:
        if not body or (isinstance(body, (bytes, str)) and not body.strip()):
            raise RequestError(400, 'the request body is empty: send {"data": [{...}, ...]}')
        try:
            request = _loads(body)
        except _JSON_ERRORS as exc:
            hint = ""
            if isinstance(body, (bytes, str)) and any(t in body for t in _NON_JSON_TOKENS[type(body)]):
                hint = " (NaN and Infinity are not JSON numbers; send finite numbers)"
            raise RequestError(400, f"the request body is not valid JSON{hint}: {exc}") from None
        if type(request) is not dict:
            raise RequestError(
                400, f'the request body must be a JSON object {{"data": [...]}}, got {_json_type(request)}'
            )
        if "data" not in request:
            keys = ", ".join(sorted(map(str, request))) or "none"
            raise RequestError(400, f'the request body has no "data" field (fields: {keys})')
        return request

    @staticmethod
    def _wants_proba(request: dict[str, Any]) -> bool:
        flag = request.get("return_probabilities", False)
        if type(flag) is not bool:
            raise RequestError(400, f"return_probabilities must be true or false, got {_describe(flag)}")
        return flag

    def _rows(self, data: Any) -> np.ndarray:
        if type(data) is not list:
            raise RequestError(400, f'"data" must be a non-empty array of objects, got {_json_type(data)}')
        n = len(data)
        if n == 0:
            raise RequestError(400, '"data" is empty: send at least one record')
        if n > self.max_rows:
            raise RequestError(413, f'"data" has {n} records, more than this endpoint accepts ({self.max_rows})')
        names = self.names
        width = len(names)
        rows = []
        extras: set[str] = set()
        for i, record in enumerate(data):
            if type(record) is not dict:
                raise RequestError(400, f"data[{i}] must be an object of column: value, got {_json_type(record)}")
            try:
                row = [record[name] for name in names]
            except KeyError:
                missing = [name for name in names if name not in record]
                raise RequestError(
                    400, f"data[{i}] is missing {len(missing)} column(s): {', '.join(missing)}"
                ) from None
            for j, value in enumerate(row):
                kind = type(value)
                if kind is not int and kind is not float:
                    raise RequestError(400, f"data[{i}].{names[j]} must be a number, got {_describe(value)}")
            if len(record) > width:
                extras.update(k for k in record if k not in self._name_set)
            rows.append(row)
        try:
            x = np.array(rows, dtype=np.float64)
        except OverflowError:
            raise RequestError(400, "a value is too large to be a number the model can use") from None
        if not np.isfinite(x).all():
            i, j = np.argwhere(~np.isfinite(x))[0]
            raise RequestError(400, f"data[{i}].{names[j]} must be a finite number")
        if self._integer_idx.size:
            ints = x[:, self._integer_idx]
            bad = ints != np.floor(ints)
            if bad.any():
                i, j = np.argwhere(bad)[0]
                name = names[self._integer_idx[j]]
                raise RequestError(400, f"data[{i}].{name} must be an integer, got {float(x[i, self._integer_idx[j]])!r}")
        if extras:
            logger.info("ignored extra column(s) not in the model's signature: %s", ", ".join(sorted(extras)))
        return x


def json_error(message: str) -> bytes:
    """An ``{"error": message}`` body."""
    return dumps({"error": message})

