"""Search spaces of every distribution type of the spec, with one sampled value per parameter written as Azure
ML renders it into ``${{inputs.<name>}}`` (a q-distribution's integer as "50.0", floats, text, None), and the
estimator arguments a local trial would get from the same values. Shared by the fast unit test of
model_train.py's command line and by the test that runs it in the Azure Environment's package set."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any

from backends.azure.code import TRAIN_MODULE
from backends.azure import entities
from backends.domain.spec import SweepSpec


@dataclass(frozen=True)
class Rendering:
    name: str
    search_space: dict[str, Any]  # the spec's form
    rendered: dict[str, str]  # parameter -> the text Azure puts in the command line
    estimator: str  # the classifier's class name
    expected: dict[str, Any]  # estimator arguments a local trial gets for the same values

    def spec(self) -> SweepSpec:
        return SweepSpec.model_validate({"sampling": "random", "search_space": self.search_space, "max_total_trials": 2})

    def argv(self, input_data: str, *, folds: int = 2) -> list[str]:
        """model_train.py's arguments: training_command() with every ``${{inputs.*}}`` replaced as Azure does."""
        spec = self.spec()
        values = {"input_data": input_data, "model_name": f"model-{self.name}", "test_size": str(spec.validation.test_size),
                  "random_state": str(spec.validation.random_state), "seed": str(spec.seed), "validation": "split",
                  "folds": str(folds), **self.rendered}
        template = entities.training_command(spec)
        line = re.sub(r"\$\{\{inputs\.(\w+)\}\}", lambda m: values[m.group(1)], template)
        argv = shlex.split(line)
        assert argv[:3] == ["python", "-m", TRAIN_MODULE], argv
        return argv[3:]


RENDERINGS: tuple[Rendering, ...] = (
    Rendering(
        "choice", {"n_estimators": {"type": "choice", "values": [10, 50]}, "max_depth": {"type": "choice", "values": [-1, 6]},
                   "criterion": {"type": "choice", "values": ["gini", "entropy"]},
                   "max_features": {"type": "choice", "values": ["sqrt", "log2"]}},
        {"n_estimators": "50", "max_depth": "-1", "criterion": "entropy", "max_features": "log2"},
        "RandomForestClassifier", {"n_estimators": 50, "max_depth": None, "criterion": "entropy", "max_features": "log2"}),
    Rendering(
        "q-distributions", {"n_estimators": {"type": "quniform", "min_value": 10, "max_value": 100, "q": 10},
                            "max_depth": {"type": "qnormal", "mu": 6, "sigma": 2, "q": 1},
                            "min_samples_leaf": {"type": "qloguniform", "min_value": 0, "max_value": 2, "q": 1},
                            "max_leaf_nodes": {"type": "qlognormal", "mu": 3, "sigma": 0.5, "q": 1}},
        {"n_estimators": "50.0", "max_depth": "7.0", "min_samples_leaf": "3.0", "max_leaf_nodes": "20.0"},
        "RandomForestClassifier", {"n_estimators": 50, "max_depth": 7, "min_samples_leaf": 3, "max_leaf_nodes": 20}),
    Rendering(
        "continuous", {"n_estimators": {"type": "uniform", "min_value": 10, "max_value": 60},
                       "max_depth": {"type": "randint", "upper": 12},
                       "max_features": {"type": "normal", "mu": 0.5, "sigma": 0.1},
                       "min_weight_fraction_leaf": {"type": "loguniform", "min_value": -6, "max_value": -3},
                       "ccp_alpha": {"type": "lognormal", "mu": -6, "sigma": 1}},
        {"n_estimators": "37.4", "max_depth": "7", "max_features": "0.35", "min_weight_fraction_leaf": "0.01",
         "ccp_alpha": "0.0025"},
        "RandomForestClassifier", {"n_estimators": 37, "max_depth": 7, "max_features": 0.35,
                                   "min_weight_fraction_leaf": 0.01, "ccp_alpha": 0.0025}),
    Rendering(
        "mixed-choice", {"n_estimators": {"type": "choice", "values": [10, 20]},
                         "max_features": {"type": "choice", "values": [None, "sqrt", 0.5]},
                         "class_weight": {"type": "choice", "values": [None, "balanced"]},
                         "bootstrap": {"type": "choice", "values": [True, False]}},
        {"n_estimators": "20", "max_features": "0.5", "class_weight": "None", "bootstrap": "False"},
        "RandomForestClassifier", {"n_estimators": 20, "max_features": 0.5, "class_weight": None, "bootstrap": False}),
    Rendering(
        "other-family", {"model": {"type": "choice", "values": ["hgb", "rf"]},
                         "hgb__learning_rate": {"type": "loguniform", "min_value": -4, "max_value": -1},
                         "hgb__max_iter": {"type": "quniform", "min_value": 50, "max_value": 150, "q": 25},
                         "hgb__max_depth": {"type": "choice", "values": [3, None]}},
        {"model": "hgb", "hgb__learning_rate": "0.05", "hgb__max_iter": "75.0", "hgb__max_depth": "None"},
        "HistGradientBoostingClassifier", {"learning_rate": 0.05, "max_iter": 75, "max_depth": None}),
)
