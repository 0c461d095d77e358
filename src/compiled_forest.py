"""The predictors behind the endpoint: the general DataFrame path, and a compiled random forest.

For the project's own random-forest pipeline (ColumnTransformer of StandardScaler, optionally after a
number SimpleImputer, OneHotEncoder(handle_unknown="ignore"), imputed or plain passthrough, then the
forest) the compiled predictor does the same arithmetic as scikit-learn on numpy arrays, without building
a DataFrame. ``build_predictor`` checks it against the model on probe rows (nulls included where a column
imputes, text categories known, unseen and null) and uses the DataFrame path whenever the two disagree or
the model has another shape (gradient boosting, logistic regression, a text column not one-hot encoded).
Text categories reach it as numbers: their positions in the encoder's categories (text_codes.py).

This module runs on Azure's compute as part of a copy of src/, so it imports only third-party packages.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np
from sklearn.pipeline import Pipeline

from src import forest_kernel
from src.flat_forest import FlatForest
from src.model_files import Feature
from src.request_validation import RowReader
from src.text_codes import TextColumn

logger = logging.getLogger(__name__)


class Classified(NamedTuple):
    """Per row the position in ``classes`` of the predicted class; the probabilities (None when the model has
    none); how many non-missing category values matched no known category (None: not counted here)."""

    best: list[int]
    proba: np.ndarray | None
    unseen: int | None


class Predictor(Protocol):
    """Predicts from a float64 array whose columns follow the signature's order. ``text_codes``: per text
    column (by position) the codes a request's text becomes in that array; empty when text goes as text."""

    kind: str
    classes: np.ndarray
    text_codes: dict[int, TextColumn]

    def predict(self, x: np.ndarray, with_proba: bool) -> tuple[np.ndarray, np.ndarray | None]: ...

    def classify(self, x: Any, with_proba: bool) -> Classified: ...


class FramePredictor:
    """The general path: a DataFrame with the signature's column names and dtypes, then the model. It takes
    a float64 array (all-number features; NaN where a nullable column was null) or a ready DataFrame."""

    kind = "dataframe"

    def __init__(self, model: Any, features: Sequence[Feature]) -> None:
        import pandas as pd

        self.text_codes: dict[int, TextColumn] = {}

        self._pd = pd
        self._model = model
        self._names = [f.name for f in features]
        self._integer = [f.integer for f in features]
        self.classes = np.asarray(getattr(model, "classes_", []))
        self.has_proba = hasattr(model, "predict_proba")
        # Gradient boosting predicts with OpenMP threads; the endpoint's workers are the parallelism, and a
        # thread pool per request on a busy machine costs more than it gives.
        step = model.steps[-1][1] if hasattr(model, "steps") else model
        self._one_thread = type(step).__name__ == "HistGradientBoostingClassifier"

    def frame(self, x: np.ndarray) -> Any:
        columns = {}
        for j, (name, integer) in enumerate(zip(self._names, self._integer, strict=True)):
            column = x[:, j]
            columns[name] = column.astype(np.int64) if integer and not np.isnan(column).any() else column
        return self._pd.DataFrame(columns, copy=False)

    def classify(self, x: Any, with_proba: bool) -> Classified:
        labels, proba = self.predict(x, with_proba)
        position = {c: i for i, c in enumerate(self.classes.tolist())}
        return Classified([position[v] for v in np.asarray(labels).tolist()], proba, None)

    def predict(self, x: Any, with_proba: bool) -> tuple[np.ndarray, np.ndarray | None]:
        if self._one_thread:
            from threadpoolctl import threadpool_limits

            with threadpool_limits(1):
                return self._predict(x, with_proba)
        return self._predict(x, with_proba)

    def _predict(self, x: Any, with_proba: bool) -> tuple[np.ndarray, np.ndarray | None]:
        frame = x if isinstance(x, self._pd.DataFrame) else self.frame(x)
        labels = np.asarray(self._model.predict(frame))
        proba = np.asarray(self._model.predict_proba(frame)) if with_proba and self.has_proba else None
        return labels, proba


class CompiledForestPredictor:
    """ColumnTransformer(scale, one-hot, passthrough) + random forest, computed on numpy arrays.

    The same operations scikit-learn performs (scaling in float64, one-hot with unknown categories as
    zeros, float32 input to the trees, per-tree class fractions summed in order and divided by the
    number of trees), without the DataFrame and validation overhead of each call. A text column arrives as
    codes (``text_codes``); its one-hot categories are then the codes 0.0, 1.0, ...
    """

    def __init__(
        self, blocks: list[tuple[str, np.ndarray, tuple[Any, ...]]], width: int, forest: Any, *, use_kernel: bool = True,
        text_codes: dict[int, TextColumn] | None = None,
    ) -> None:
        self.text_codes = dict(text_codes or {})
        self._blocks = blocks
        self._width = width
        self._n_classes = int(forest.n_classes_)
        self.classes = np.asarray(forest.classes_)
        self._nodes = FlatForest([estimator.tree_ for estimator in forest.estimators_], self._n_classes)
        self._kernel_arrays = (
            (*self._program(), *forest_kernel.node_tables([e.tree_ for e in forest.estimators_], self._n_classes))
            if use_kernel and forest_kernel.kernel_available() else None
        )
        self.kind = "compiled-forest (machine code)" if self._kernel_arrays is not None else "compiled-forest (numpy)"

    def _program(self) -> tuple[np.ndarray]:
        """The transform as one instruction per output column, for forest_kernel: its input column, kind,
        fill for NaN, centre (or one-hot category), scale, and whether it ends a column's one-hot group.
        Neutral values (NaN fill, centre 0, scale 1) leave a value bit-for-bit unchanged."""
        columns: list[tuple[float, float, float, float, float, float]] = []
        for block, idx, extra in self._blocks:
            if block == "onehot":
                for j, categories in enumerate(extra):
                    levels = categories[0]
                    columns += [(float(idx[j]), forest_kernel.ONE_HOT, np.nan, float(level), 1.0, float(n == len(levels) - 1))
                                for n, level in enumerate(levels)]
                continue
            fills = extra[0] if block == "copy" else extra[2]
            means = None if block == "copy" else extra[0]
            scales = None if block == "copy" else extra[1]
            columns += [
                (float(column), forest_kernel.AFFINE, np.nan if fills is None else float(fills[j]),
                 0.0 if means is None else float(means[j]), 1.0 if scales is None else float(scales[j]), 0.0)
                for j, column in enumerate(idx)
            ]
        return (np.ascontiguousarray(np.asarray(columns, dtype=np.float64).reshape(-1, 6).T),)

    @classmethod
    def build(cls, model: Any, features: Sequence[Feature], *, use_kernel: bool = True) -> CompiledForestPredictor | None:
        """A compiled predictor when ``model`` has exactly the supported shape, else None. It runs as machine
        code (forest_kernel) when numba is installed and ``use_kernel``, else in numpy."""
        from sklearn.compose import ColumnTransformer
        from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
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
        text_codes: dict[int, TextColumn] = {}
        width = 0
        for _name, transformer, columns in pre.transformers_:
            if isinstance(columns, slice) or np.asarray(columns).dtype == bool:
                return None
            names = [inputs[c] if isinstance(c, (int, np.integer)) else str(c) for c in list(columns)]
            if not names or (isinstance(transformer, str) and transformer == "drop"):
                continue
            idx = np.asarray([position[n] for n in names], dtype=np.intp)
            if type(transformer) is OneHotEncoder:
                found = _one_hot_block(transformer, idx, features, text_codes)
                if found is None:
                    return None
                blocks.append(("onehot", idx, found))
                width += sum(c.shape[1] for c in found)
                continue
            if any(features[j].text for j in idx):  # text only ever goes to the one-hot encoder here
                return None
            fill = None
            if type(transformer) is Pipeline and len(transformer.steps) == 2 and _is_number_imputer(transformer.steps[0][1]):
                fill, transformer = transformer.steps[0][1].statistics_.astype(np.float64), transformer.steps[1][1]
            elif _is_number_imputer(transformer):
                blocks.append(("copy", idx, (transformer.statistics_.astype(np.float64),)))
                width += len(idx)
                continue
            identity = type(transformer) is FunctionTransformer and transformer.func is None  # fitted passthrough
            if identity or (isinstance(transformer, str) and transformer == "passthrough"):
                if fill is not None:
                    return None
                blocks.append(("copy", idx, (None,)))
                width += len(idx)
            elif type(transformer) is StandardScaler:
                mean = transformer.mean_ if transformer.with_mean else None
                scale = transformer.scale_ if transformer.with_std else None
                blocks.append(("scale", idx, (mean, scale, fill)))
                width += len(idx)
            else:
                return None
        if width != forest.n_features_in_ or any(f.text and j not in text_codes for j, f in enumerate(features)):
            return None
        return cls(blocks, width, forest, use_kernel=use_kernel, text_codes=text_codes)

    def transform(self, x: np.ndarray) -> np.ndarray:
        out = np.empty((x.shape[0], self._width), dtype=np.float64)
        at = 0
        for kind, idx, extra in self._blocks:
            part = x[:, idx]
            if kind == "copy":
                if extra[0] is not None:
                    part = np.where(np.isnan(part), extra[0], part)
                out[:, at : at + len(idx)] = part
                at += len(idx)
            elif kind == "scale":
                mean, scale, fill = extra
                if fill is not None:
                    part = np.where(np.isnan(part), fill, part)
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

    def classify(self, x: np.ndarray, with_proba: bool = True) -> Classified:
        """The kernel always computes the probabilities (the argmax needs them): ``with_proba`` is moot."""
        if self._kernel_arrays is None:
            _, proba = self.predict(x, True)
            assert proba is not None
            return Classified(np.argmax(proba, axis=1).tolist(), proba, None)
        proba = np.empty((x.shape[0], self._n_classes), dtype=np.float64)
        best = np.empty(x.shape[0], dtype=np.intp)
        unseen = forest_kernel.run_kernel(self._kernel_arrays, np.ascontiguousarray(x, dtype=np.float64), proba, best)
        return Classified(best.tolist(), proba, unseen)

    def predict(self, x: np.ndarray, with_proba: bool) -> tuple[np.ndarray, np.ndarray | None]:
        if self._kernel_arrays is not None:
            found = self.classify(x, with_proba)
            return self.classes.take(found.best, axis=0), found.proba
        x32 = np.ascontiguousarray(self.transform(x), dtype=np.float32)
        proba = np.empty((x32.shape[0], self._n_classes), dtype=np.float64)
        for start in range(0, x32.shape[0], _CHUNK_ROWS):
            proba[start : start + _CHUNK_ROWS] = self._nodes.predict_proba(x32[start : start + _CHUNK_ROWS])
        return self.classes.take(np.argmax(proba, axis=1), axis=0), proba


_CHUNK_ROWS = 2048  # bounds the rows x trees x classes gather of one pass


def _one_hot_block(encoder: Any, idx: np.ndarray, features: Sequence[Feature],
                   text_codes: dict[int, TextColumn]) -> tuple[np.ndarray, ...] | None:
    """Each column's one-hot categories as a (1, n) float64 row: a number column's own categories, a text
    column's codes 0.0 .. n-1 (its TextColumn added to ``text_codes``). None when the encoder is not plain."""
    # Infrequent categories (min_frequency / max_categories) share one output column: not a plain one-hot. The
    # fitted, public infrequent_categories_ says whether any column has them (absent when neither is set).
    grouped = any(c is not None for c in getattr(encoder, "infrequent_categories_", None) or ())
    if encoder.handle_unknown != "ignore" or encoder.drop_idx_ is not None or grouped:
        return None
    rows = []
    for j, categories in zip(idx.tolist(), encoder.categories_, strict=True):
        if features[j].text:
            column = TextColumn.from_categories(categories.tolist())
            if column is None:
                return None
            text_codes[j] = column
            rows.append(np.arange(column.size, dtype=np.float64)[None, :])
            continue
        if np.asarray(categories).dtype.kind not in "iuf" or np.isnan(np.asarray(categories, dtype=np.float64)).any():
            return None
        rows.append(np.asarray(categories, dtype=np.float64)[None, :])
    return tuple(rows)


def _is_number_imputer(transformer: Any) -> bool:
    from sklearn.impute import SimpleImputer

    return (
        type(transformer) is SimpleImputer
        and not transformer.add_indicator
        and transformer.keep_empty_features is False
        and np.asarray(transformer.statistics_).dtype.kind in "iuf"
        and transformer.statistics_.shape == (transformer.n_features_in_,)
        and not np.isnan(np.asarray(transformer.statistics_, dtype=np.float64)).any()
    )


def _probe_records(model: Any, features: Sequence[Feature], text_codes: dict[int, TextColumn], rows: int = 200,
                   seed: int = 0) -> list[dict[str, Any]]:
    """Requests' records that exercise every branch of the compiled path: known and unknown categories (as
    text, and a number sent for a text column), nulls where a column takes them, scaled values."""
    rng = np.random.default_rng(seed)
    pre = model.steps[0][1]
    centre: dict[str, tuple[float, float]] = {}
    levels: dict[str, np.ndarray] = {}
    inputs = list(pre.feature_names_in_)
    for _name, transformer, columns in pre.transformers_:
        names = [inputs[c] if isinstance(c, (int, np.integer)) else str(c) for c in list(columns)]
        if hasattr(transformer, "steps"):  # imputer then scaler
            transformer = transformer.steps[-1][1]
        for j, name in enumerate(names):
            if hasattr(transformer, "mean_") and transformer.mean_ is not None:
                centre[name] = (float(transformer.mean_[j]), float(transformer.scale_[j] or 1.0))
            if hasattr(transformer, "categories_") and np.asarray(transformer.categories_[j]).dtype.kind in "iuf":
                levels[name] = np.append(np.asarray(transformer.categories_[j], dtype=np.float64), 99.0)
    columns_out: list[list[Any]] = []
    for j, feature in enumerate(features):
        if j in text_codes:
            choices: list[Any] = [*text_codes[j].levels, "never seen in training", 7]
            values = [choices[k] for k in rng.integers(0, len(choices), size=rows).tolist()]
        else:
            if feature.name in levels:
                column = rng.choice(levels[feature.name], size=rows)
            elif feature.name in centre:
                mean, scale = centre[feature.name]
                column = rng.normal(mean, 2 * scale, size=rows)
            else:
                column = rng.integers(-1, 6, size=rows).astype(np.float64)
            values = (np.round(column) if feature.integer else column).tolist()
        if feature.nullable:
            for i in np.flatnonzero(rng.random(rows) < 0.1).tolist():
                values[i] = None
        columns_out.append(values)
    names = [f.name for f in features]
    return [dict(zip(names, row, strict=True)) for row in zip(*columns_out, strict=True)]


def build_predictor(model: Any, features: Sequence[Feature], compiler: Any = None) -> Predictor:
    """The compiled predictor when it reproduces the model exactly on probe rows, else the DataFrame path.
    ``compiler`` (model, features) -> predictor or None: CompiledForestPredictor.build unless given. The probe
    records go through the request reader each predictor is served with (text as codes, or as text)."""
    general = FramePredictor(model, features)
    try:
        compiled = (compiler or CompiledForestPredictor.build)(model, features)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        logger.info("model shape not compilable (%s); using the DataFrame path", exc)
        compiled = None
    if compiled is None:
        return general
    if any(f.text and j not in compiled.text_codes for j, f in enumerate(features)):
        return general
    records = _probe_records(model, features, compiled.text_codes)
    labels, proba = compiled.predict(RowReader(features, len(records), compiled.text_codes).read(records), True)
    expected_labels, expected_proba = general.predict(RowReader(features, len(records)).read(records), True)
    assert proba is not None and expected_proba is not None  # with_proba=True: both predictors return it
    if not (np.array_equal(labels, expected_labels) and np.allclose(proba, expected_proba, rtol=0, atol=1e-12)):
        logger.warning("compiled predictor disagrees with the model on probe rows; using the DataFrame path")
        return general
    return compiled
