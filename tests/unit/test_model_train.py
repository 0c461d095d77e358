"""The training function both the local workers and the Azure command job run."""

from __future__ import annotations

import pandas as pd
import pytest

from backends.domain.dataset import prepare_data
from src.features import HEART_SCHEMA, build_pipeline, to_estimator_params
from src.model_train import train_trial

PARAMS = {"n_estimators": 20, "max_depth": -1, "criterion": "gini", "max_features": "sqrt"}


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return prepare_data(None, None, 0.1).train


def test_minus_one_depth_means_unlimited() -> None:
    assert to_estimator_params({"max_depth": -1})["max_depth"] is None
    assert to_estimator_params({"max_depth": 6.0})["max_depth"] == 6


def test_same_seed_same_metrics(train: pd.DataFrame) -> None:
    first = train_trial(train, HEART_SCHEMA, PARAMS, seed=1)
    assert first.metrics == train_trial(train, HEART_SCHEMA, PARAMS, seed=1).metrics
    assert set(first.metrics) == {"accuracy", "balanced_accuracy", "f1", "precision", "recall", "roc_auc",
                                  "average_precision", "log_loss", "brier"}


def test_kfold_scores_and_refits_on_everything(train: pd.DataFrame) -> None:
    fit = train_trial(train, HEART_SCHEMA, PARAMS, seed=1, method="kfold", folds=3)
    assert 0.5 < fit.metrics["accuracy"] <= 1.0
    assert fit.model.named_steps["classifier"].n_features_in_ > 0
    assert len(fit.model.predict(train.drop(columns=["output"]))) == len(train)


def test_every_feature_reaches_the_model_and_unknown_categories_do_not_fail(train: pd.DataFrame) -> None:
    model = build_pipeline(HEART_SCHEMA, PARAMS, seed=0).fit(train[list(HEART_SCHEMA.features)], train["output"])
    names = set(model.named_steps["preprocess"].get_feature_names_out())
    for column in ("sex", "fbs", "exng", "slp", "caa", "thall"):  # the tutorial dropped these
        assert column in names
    row = train[list(HEART_SCHEMA.features)].head(1).assign(restecg=7, cp=9)  # categories never seen
    assert model.predict(row).tolist()[0] in (0, 1)
