"""Request validation and prediction for the real-time endpoint, shared by score.py and the local host.

``Scorer.score(body)`` takes the raw request body of ``POST /score`` (the tutorial's ``{"data": [records]}``)
and returns ``(status, payload)``: 200 with the predicted labels, in the data's own labels (``"Presence"``
for a Presence/Absence table, 0/1 for the tutorial's), or a 4xx with ``{"error": "..."}`` that names the
problem. It never raises for anything a client can send. A category the model never saw is answered (the
one-hot encoder ignores it) and counted per column in ``Scorer.unseen``.

The pieces: model_files.py (the folder, signature and recorded schema), request_validation.py (the body),
compiled_forest.py (the DataFrame predictor and the compiled random forest).

This module runs on Azure's compute as part of a copy of src/, so it imports only third-party packages.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from src.compiled_forest import CompiledForestPredictor, FramePredictor, Predictor, build_predictor
from src.features import DatasetSchema
from src.metrics import model_threshold
from src.model_files import (
    MLMODEL, Feature, ModelLoadError, find_model_dir, load_sklearn_model, read_features, read_model_info,
)
from src.request_validation import RequestError, RowReader, dumps, parse, wants_proba

__all__ = [
    "MLMODEL", "CompiledForestPredictor", "Feature", "FramePredictor", "ModelLoadError", "Predictor", "RequestError",
    "Scored", "Scorer", "dumps", "find_model_dir", "max_rows_from_env", "read_features", "read_model_info",
]

logger = logging.getLogger(__name__)

MAX_ROWS_ENV = "HEARTFLOW_MAX_ROWS"
DEFAULT_MAX_ROWS = 1000


def prepare_serving() -> None:
    """What loading a first model would import, done ahead of it (a host started before its first
    deployment): skops' loader (its import lists every scikit-learn estimator) and the forest kernel."""
    import skops.io  # noqa: F401 - imported for its side effect: the import's cost, paid now

    from src import forest_kernel

    forest_kernel.kernel_available()


def max_rows_from_env(default: int = DEFAULT_MAX_ROWS) -> int:
    """HEARTFLOW_MAX_ROWS, or ``default`` when unset or not a positive integer."""
    raw = os.environ.get(MAX_ROWS_ENV, "")
    try:
        value = int(raw)
    except ValueError:
        return default
    return value if value > 0 else default


def known_categories(model: Any) -> dict[str, frozenset[Any]]:
    """Per categorical column, the categories the fitted one-hot encoder knows (empty if none is found)."""
    pre = getattr(model, "steps", [[None, None]])[0][1]
    found: dict[str, frozenset[Any]] = {}
    for _name, transformer, columns in getattr(pre, "transformers_", []):
        categories = getattr(transformer, "categories_", None)
        if categories is None or isinstance(columns, slice):
            continue
        for column, levels in zip(list(columns), categories, strict=True):
            found[str(column)] = frozenset(v for v in levels.tolist() if v == v)  # NaN (missing) is not a category
    return found


class Scored(NamedTuple):
    """What a 200 answered, for monitoring: the validated request body; ``rows``, the records cut to the
    signature's columns, only when some record carried other columns (else the body is the rows); the
    labels, P(positive class) per row (None when the model gives no probabilities) and the classes (the
    positive one last). Kept as they are, few objects (a parsed body held until the capture writer runs
    would feed the garbage collector): the writer turns them into a record off the request path. A named
    tuple: built on every captured request, it costs a third of a frozen dataclass."""

    body: bytes | str
    rows: list[dict[str, Any]] | None
    predictions: list[Any]
    positive_proba: Any  # a numpy column, or None
    classes: list[Any]


class Scorer:
    """Validates ``{"data": [records]}`` bodies and predicts with one loaded model."""

    def __init__(
        self, model: Any, features: Sequence[Feature], *, max_rows: int = DEFAULT_MAX_ROWS, label: str = "model",
        schema: DatasetSchema | None = None, compiler: Any = None,
    ) -> None:
        """``compiler``: build_predictor's (None: the compiled forest where it is exact; a function returning
        None always serves through the DataFrame path)."""
        if not features:
            raise ModelLoadError(f"{label}: the signature names no feature")
        self.features = tuple(features)
        self.names = tuple(f.name for f in self.features)
        self.max_rows = int(max_rows)
        self.label = label
        self.schema = schema
        self.predictor: Predictor = build_predictor(model, self.features, compiler)
        # The compiled forest takes text categories as codes: the reader writes them into its float64 array.
        self._reader = RowReader(self.features, self.max_rows, self.predictor.text_codes)
        raw_classes = [c.item() if hasattr(c, "item") else c for c in self.predictor.classes]
        # The model learns 0/1; the schema recorded with it says which of the data's labels each one is.
        self.classes = [schema.label_of(int(c)) for c in raw_classes] if schema and schema.labels else raw_classes
        self._labels_by_index = list(self.classes)
        # The decision threshold stored with the model (None: its own decision): applied to the positive
        # class's probability on every path (compiled or not); the probabilities answered are unchanged.
        self.threshold = model_threshold(model)
        self._positive = raw_classes.index(1) if 1 in raw_classes else len(raw_classes) - 1
        self._categories = {n: v for n, v in known_categories(model).items() if n in set(self.names)}
        self._category_columns = [(n, self._categories[n]) for n in self.names if self._categories.get(n)]
        self._category_idx = np.asarray([self.names.index(n) for n, _ in self._category_columns], dtype=np.intp)
        self.unseen: Counter[str] = Counter()
        logger.info(
            "scorer ready: %s, %d features, predictor %s, max_rows %d",
            label, len(self.names), self.predictor.kind, self.max_rows,
        )

    @classmethod
    def from_model_dir(cls, root: Path, *, max_rows: int = DEFAULT_MAX_ROWS, label: str | None = None) -> Scorer:
        """Find the MLflow model under ``root``, load it once and read its signature and schema."""
        model_dir = find_model_dir(Path(root))
        info = read_model_info(model_dir)
        return cls(load_sklearn_model(model_dir), info.features, max_rows=max_rows, label=label or str(model_dir),
                   schema=info.schema)

    def example_request(self) -> dict[str, Any]:
        """A valid one-row body (every number 0, every category the first one the model knows)."""
        record: dict[str, Any] = {}
        for feature in self.features:
            levels = sorted(self._categories.get(feature.name, ()), key=str)
            record[feature.name] = levels[0] if feature.text and levels else ("" if feature.text else 0)
        return {"data": [record]}

    def category_levels(self, name: str) -> list[Any]:
        return sorted(self._categories.get(name, ()), key=str)

    def score(self, body: bytes | str) -> tuple[int, Any]:
        """(200, labels) or, with ``return_probabilities``, (200, {predictions, probabilities, classes});
        (4xx, {"error": message}) for a request the endpoint refuses."""
        return self._score(body, None)

    def score_captured(self, body: bytes | str) -> tuple[int, Any, Scored | None]:
        """``score``, plus what monitoring records of a 200: the validated rows (the signature's columns
        only), the predicted labels and each row's probability of the positive class (computed even when the
        client did not ask for probabilities). None for a refused request."""
        seen: list[Scored] = []
        status, payload = self._score(body, seen)
        return status, payload, seen[0] if seen else None

    def _score(self, body: bytes | str, captured: list[Scored] | None) -> tuple[int, Any]:
        try:
            request = parse(body)
            x = self._reader.read(request["data"])
            with_proba = wants_proba(request)
        except RequestError as exc:
            return exc.status, {"error": exc.message}
        asked_proba = with_proba
        with_proba = with_proba or (captured is not None and getattr(self.predictor, "has_proba", True))
        extras = bool(self._reader.extras)
        if extras:
            logger.info("ignored extra column(s) not in the model's signature: %s", ", ".join(sorted(self._reader.extras)))
            self._reader.extras.clear()
        found = self.predictor.classify(x, with_proba or self.threshold is not None)
        if self.threshold is not None and found.proba is not None:
            positive = found.proba[:, self._positive] >= self.threshold
            found = found._replace(best=np.where(positive, self._positive, 1 - self._positive).tolist())
        if found.unseen != 0 and self._category_columns:  # None: the predictor did not count; >0: name them
            self._count_unseen(x, request["data"])
        labels = self._labels_by_index
        predictions = [labels[i] for i in found.best]
        if captured is not None:
            positive_proba = None if found.proba is None else found.proba[:, -1]
            names = self.names
            rows = [{n: r.get(n) for n in names} for r in request["data"]] if extras else None
            captured.append(Scored(body, rows, predictions, positive_proba, self.classes))
        if not asked_proba:
            return 200, predictions
        if found.proba is None:
            return 400, {"error": "return_probabilities: this model does not give probabilities"}
        return 200, {"predictions": predictions, "probabilities": found.proba.tolist(), "classes": self.classes}

    def score_json(self, body: bytes | str) -> tuple[int, bytes]:
        """``score`` with the payload serialized to JSON bytes."""
        status, payload = self.score(body)
        return status, dumps(payload)

    def _count_unseen(self, x: Any, data: list[Any]) -> None:
        columns: Iterable[tuple[tuple[str, frozenset[Any]], list[Any]]]
        if isinstance(x, np.ndarray):  # one gather for every categorical column, then plain Python values
            gathered = x[:, self._category_idx].T.tolist()
            coded = self.predictor.text_codes  # a text column holds codes here: its values are the request's
            gathered = [self._reader.text_column(data, int(j)) if int(j) in coded else column
                        for j, column in zip(self._category_idx, gathered, strict=True)]
            columns = zip(self._category_columns, gathered, strict=True)
        else:
            columns = ((c, x[c[0]].tolist()) for c in self._category_columns)
        for (name, known), column in columns:
            fresh = [v for v in column if v == v and v not in known]  # v == v: skip missing (NaN)
            if fresh:
                self.unseen[name] += len(fresh)
                logger.info("column %s: %d value(s) the model never saw in training (%s); answered as no known "
                            "category", name, len(fresh), ", ".join(map(str, sorted(set(fresh), key=str)[:5])))
