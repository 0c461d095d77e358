"""Test models that fail the way live traffic finds out and a holdout does not: a classifier that raises on
one value of one column (a category present only in live requests). Saved in MLflow's sklearn flavour (skops)
with this class trusted, so the real endpoint host loads and serves it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

TRUSTED = "tests.faulty_models.FailsOnValue"


class FailsOnValue(ClassifierMixin, BaseEstimator):
    """``inner``'s answers, except that a batch holding ``value`` in ``column`` raises ValueError."""

    def __init__(self, inner: Any = None, column: str = "thall", value: float = 9) -> None:
        self.inner = inner
        self.column = column
        self.value = value

    @property
    def classes_(self) -> np.ndarray:
        return self.inner.classes_

    def fit(self, x: Any, y: Any) -> FailsOnValue:
        self.inner.fit(x, y)
        return self

    def _check(self, x: Any) -> None:
        if self.column in getattr(x, "columns", ()) and (x[self.column] == self.value).any():
            raise ValueError(f"{self.column}={self.value} was never seen: this test model fails on it")

    def predict(self, x: Any) -> np.ndarray:
        self._check(x)
        return self.inner.predict(x)

    def predict_proba(self, x: Any) -> np.ndarray:
        self._check(x)
        return self.inner.predict_proba(x)


def save_failing_model(frame: Any, target: Path, column: str = "thall", value: float = 9, seed: int = 7) -> Path:
    """Train the heart pipeline on ``frame`` and save it wrapped in FailsOnValue as an MLflow model in ``target``."""
    import mlflow.sklearn

    from src.features import HEART_SCHEMA, SKOPS_TRUSTED_TYPES
    from src.model_train import model_signature, pip_requirements, train_trial

    fit = train_trial(frame, HEART_SCHEMA, {"n_estimators": 30, "max_depth": -1, "criterion": "gini",
                                            "max_features": "sqrt"}, seed=seed)
    model = FailsOnValue(fit.model, column, value)
    mlflow.sklearn.save_model(model, str(target), serialization_format="skops",
                              skops_trusted_types=[*SKOPS_TRUSTED_TYPES, TRUSTED],
                              signature=model_signature(frame, HEART_SCHEMA), pip_requirements=pip_requirements())
    return target
