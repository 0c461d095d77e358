"""The pipeline spec: one typed, validated description of a run, shared by both backends.

It is the Prefect flow's parameter (so the UI renders a form) and the CLI builds it from flags.
The search space has the meaning and the rules of ``azure.ai.ml.sweep``, so one spec runs on both backends.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from backends.defaults import DEFAULT_ENDPOINT_NAME, DEFAULT_MODEL_NAME
from backends.domain.distributions import (  # the search space's distributions, each defined there once
    Choice as Choice,
    Distribution as Distribution,
    LogNormal as LogNormal,
    LogUniform as LogUniform,
    Normal as Normal,
    QLogNormal as QLogNormal,
    QLogUniform as QLogUniform,
    QNormal as QNormal,
    QUniform as QUniform,
    Randint as Randint,
    Uniform as Uniform,
)
from backends.errors import ConfigurationError
from backends.domain.shadow import DEFAULT_MAX_DISAGREEMENT, DEFAULT_MIN_REQUESTS

# Azure ML's documented limits, checked before any call on either backend.
MAX_TOTAL_TRIALS_LIMIT = 1000
MAX_REQUEST_TIMEOUT_MS = 180_000
NAME_RULE = "3 to 32 characters: letters, digits and '-', starting with a letter and not ending with '-'"


Sampling = Literal["grid", "random", "bayesian"]
Metric = Literal["accuracy", "balanced_accuracy", "f1", "roc_auc", "average_precision", "log_loss"]
METRICS: tuple[str, ...] = ("accuracy", "balanced_accuracy", "f1", "roc_auc", "average_precision", "log_loss")

# Which distributions each sampling algorithm accepts (Azure ML's rules).
SAMPLING_ACCEPTS: dict[str, frozenset[str]] = {
    "grid": frozenset({"choice"}),
    "bayesian": frozenset({"choice", "uniform", "quniform"}),
    "random": frozenset(
        {"choice", "randint", "uniform", "loguniform", "quniform", "qloguniform", "normal", "lognormal",
         "qnormal", "qlognormal"}
    ),
}


def tutorial_search_space() -> dict[str, Distribution]:
    """The tutorial's space: 5 x 5 x 2 x 2 = 100 combinations. max_depth -1 means unlimited (None)."""
    return {
        "n_estimators": Choice(values=[10, 50, 100, 125, 150]),
        "max_depth": Choice(values=[4, 6, 8, 10, -1]),
        "criterion": Choice(values=["gini", "entropy"]),
        "max_features": Choice(values=["sqrt", "log2"]),
    }


MODEL_FAMILIES: tuple[str, ...] = ("rf", "hgb", "logreg")


def family_search_space(models: list[str] | tuple[str, ...]) -> dict[str, Distribution]:
    """The default space for the chosen model families: the tutorial's alone for ["rf"], else a ``model``
    dimension and each family's own parameters (hgb__*, logreg__*; a family ignores the others')."""
    chosen = list(dict.fromkeys(models))
    unknown = [m for m in chosen if m not in MODEL_FAMILIES]
    if unknown or not chosen:
        raise ConfigurationError(f"unknown model famil{'y' if len(unknown) == 1 else 'ies'} {unknown}; choose among {', '.join(MODEL_FAMILIES)}")
    if chosen == ["rf"]:
        return tutorial_search_space()
    space: dict[str, Distribution] = {"model": Choice(values=chosen)}
    if "rf" in chosen:
        space.update(tutorial_search_space())
    if "hgb" in chosen:
        space.update({
            "hgb__learning_rate": Choice(values=[0.03, 0.1, 0.3]),
            "hgb__max_depth": Choice(values=[3, 6, -1]),
            "hgb__max_iter": Choice(values=[100, 200]),
            "hgb__l2_regularization": Choice(values=[0.0, 1.0]),
        })
    if "logreg" in chosen:
        space.update({"logreg__C": Choice(values=[0.01, 0.1, 1.0, 10.0])})
    return space


class ValidationSpec(BaseModel):
    """How a trial is scored on the training data: the tutorial's 70/30 split, or k-fold."""

    model_config = ConfigDict(extra="forbid")
    method: Literal["split", "kfold"] = Field(
        default="kfold", description="kfold (stratified folds, then refit on all training rows) or split (the tutorial's 70/30)"
    )
    test_size: float = Field(default=0.3, gt=0.0, lt=1.0)
    folds: int = Field(default=5, ge=2, le=20, description="Folds of kfold validation")
    random_state: int = 0


class EarlyTermination(BaseModel):
    """Bandit early termination (Azure ML); the local backend prunes with the same slack rule."""

    model_config = ConfigDict(extra="forbid")
    policy: Literal["bandit", "median_stopping", "truncation_selection"] = "bandit"
    evaluation_interval: int = Field(default=1, ge=1)
    delay_evaluation: int = Field(default=5, ge=0)
    slack_factor: float = Field(default=0.1, gt=0)
    truncation_percentage: int = Field(default=20, ge=1, le=99)


def default_concurrency() -> int:
    return max(1, os.cpu_count() or 1)


class SweepSpec(BaseModel):
    """A hyperparameter sweep, meaning the same thing on both backends."""

    model_config = ConfigDict(extra="forbid")
    search_space: dict[str, Distribution] = Field(default_factory=tutorial_search_space)
    sampling: Sampling = Field(default="random", description="grid, random or bayesian (Azure ML's sampling algorithms)")
    max_total_trials: int = Field(default=25, ge=1, le=MAX_TOTAL_TRIALS_LIMIT, description="Trials to run (max_total_trials)")
    max_concurrent_trials: int | None = Field(default=None, ge=1, description="Default: the machine's cores")
    timeout_s: int | None = Field(default=None, ge=1, description="Sweep timeout, seconds; trials not started by then are skipped")
    trial_timeout_s: int | None = Field(default=None, ge=1, description="Per-trial timeout, seconds")
    metric: Metric = Field(
        default="accuracy", validation_alias=AliasChoices("metric", "primary_metric"),
        description="Selects the best trial (Azure: the sweep's primary metric) and drives the gate and reports; "
        "every metric is logged. On a rare positive class prefer average_precision or roc_auc (`heartflow schema infer` says)",
    )
    goal: Literal["maximize", "minimize"] = Field(default="maximize", description="Always the metric's direction")
    threshold: float | Literal["auto"] | None = Field(
        default=None,
        description="Decision threshold stored with the model: None or 0.5 (the model's own decision), auto "
        "(maximises F1 for metric f1, else balanced accuracy, on out-of-fold predictions), or a probability",
    )
    seed: int = Field(default=42, description="Seeds sampling and the forests (the holdout goes by row hash)")
    validation: ValidationSpec = Field(default_factory=ValidationSpec)
    early_termination: EarlyTermination | None = None

    @field_validator("threshold", mode="before")
    @classmethod
    def _threshold_rule(cls, value: Any) -> Any:
        from src.metrics import parse_threshold

        return parse_threshold(value)

    @model_validator(mode="before")
    @classmethod
    def _goal_follows_metric(cls, data: Any) -> Any:
        """The goal is the metric's direction (log loss: minimize); a goal given against it is refused."""
        from src.metrics import METRIC_GOALS

        if not isinstance(data, dict):
            return data
        metric = data.get("metric", data.get("primary_metric", "accuracy"))
        direction = METRIC_GOALS.get(str(metric))
        if direction is None:
            return data  # the field's own validation names the allowed metrics
        if data.get("goal") not in (None, direction):
            raise ValueError(f"goal {data['goal']} contradicts metric {metric}, which is to {direction}: drop goal")
        return {**data, "goal": direction}

    @property
    def primary_metric(self) -> str:
        """The metric's name as Azure ML's sweep calls it (and as every trial logs it)."""
        return self.metric

    @field_validator("search_space")
    @classmethod
    def _space_not_empty(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            raise ValueError("the search space is empty: give at least one hyperparameter")
        return value

    @model_validator(mode="after")
    def _sampling_accepts_space(self) -> SweepSpec:
        accepted = SAMPLING_ACCEPTS[self.sampling]
        for name, dist in self.search_space.items():
            if dist.type not in accepted:
                raise ValueError(
                    f"search_space.{name}: {self.sampling} sampling accepts only "
                    f"{', '.join(sorted(accepted))}, not {dist.type}"
                )
        return self

    @property
    def concurrency(self) -> int:
        return self.max_concurrent_trials or default_concurrency()

    @property
    def learns_from_results(self) -> bool:
        """Whether each trial is chosen from the finished ones (bayesian): asked one at a time, as late as can be."""
        return self.sampling == "bayesian"

    @property
    def queues_ahead(self) -> bool:
        """Whether a trial may wait in a worker's queue: nothing is learnt from results and no trial clock runs
        from submission."""
        return not self.learns_from_results and not self.trial_timeout_s

    @property
    def starts_ahead(self) -> bool:
        """Whether the trials may start before the sweep does (`heartflow run`'s early trials): they queue ahead
        and no sweep clock decides which trials run."""
        return self.queues_ahead and not self.timeout_s

    def grid_size(self) -> int | None:
        """The number of combinations when every dimension is a Choice, else None."""
        sizes: list[int] = []
        for dimension in self.search_space.values():
            if not isinstance(dimension, Choice):
                return None
            sizes.append(len(dimension.values))
        return math.prod(sizes)


class DeploySpec(BaseModel):
    """The real-time endpoint: its name, its new deployment and how it serves."""

    model_config = ConfigDict(extra="forbid")
    endpoint_name: str = Field(default=DEFAULT_ENDPOINT_NAME, description="Endpoint name (3-32 chars, starts with a letter)")
    port: int | None = Field(default=None, ge=0, le=65535, description="Local endpoint port; None picks a free one")
    workers: int = Field(default=1, ge=1, le=64, description="Endpoint worker processes")
    stop_endpoint: bool = Field(default=False, description="Stop the local endpoint when the flow ends")
    # Azure: the SDK warns about Standard_DS1_v2/DS2_v2 (azure.ai.ml.constants._deployment.SmallSKUs) and
    # recommends at least Standard_DS3_v2 for a managed online deployment.
    instance_type: str = Field(default="Standard_DS3_v2", description="Azure endpoint VM size")
    instance_count: int = Field(default=1, ge=1)
    request_timeout_ms: int = Field(default=5000, ge=1, le=MAX_REQUEST_TIMEOUT_MS)
    max_rows: int = Field(default=1000, ge=1, description="Largest batch a request may carry")
    capture_rate: float = Field(
        default=1.0, ge=0.0, le=1.0,
        description="Share of answered requests captured with their rows for monitoring (refusals are always counted)",
    )
    promotion_tolerance: float | None = Field(
        default=None, ge=0.0, le=1.0,
        description="The largest accuracy drop the gate accepts; default 0 (gate tolerance) or 0.05 (gate paired)",
    )
    gate: Literal["tolerance", "paired"] = Field(
        default="tolerance",
        description="tolerance: promote when candidate >= champion - tolerance; paired: promote unless "
        "McNemar's exact test finds the candidate worse at gate_alpha, never beyond the tolerance",
    )
    gate_alpha: float = Field(default=0.05, gt=0.0, lt=1.0, description="Significance level of the gate's tests: gate paired, the no-skill floor, the comparison on the training folds")
    # backends.domain.shadow: the shadow before the gate, the watch after a promotion (both 0 = off).
    shadow_seconds: int = Field(default=0, ge=0, le=24 * 3600, description="Mirror live requests to the candidate for this long before the gate; 0: off")
    shadow_min_requests: int = Field(default=DEFAULT_MIN_REQUESTS, ge=1, description="Fewer mirrored requests than this: the gate decides on the holdout alone, and says so")
    max_disagreement: float = Field(default=DEFAULT_MAX_DISAGREEMENT, ge=0.0, le=1.0, description="The largest share of live rows the candidate may answer differently from the champion")
    watch_seconds: int = Field(default=0, ge=0, le=24 * 3600, description="After a promotion, keep the previous champion warm this long and roll back automatically on live errors, latency or realized performance on labelled requests; 0: off")

    @field_validator("endpoint_name")
    @classmethod
    def _endpoint_name_rule(cls, value: str) -> str:
        check_resource_name("endpoint_name", value)
        return value


def check_resource_name(field_name: str, value: str) -> None:
    """Azure ML's rule for endpoint and deployment names (also applied locally, so one spec fits both)."""
    ok = (
        3 <= len(value) <= 32
        and value[0].isascii()
        and value[0].isalpha()
        and all(c.isascii() and (c.isalnum() or c == "-") for c in value)
        and not value.endswith("-")
    )
    if not ok:
        raise ValueError(f"{field_name} {value!r} breaks the naming rule: {NAME_RULE}")


class DataSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str | None = Field(
        default=None,
        description="A CSV file, a folder of CSVs, an https URL, az://container/path, a blob URL, or (azure) "
        "azureml:NAME@latest; None uses the embedded heart dataset",
    )
    folder_rule: Literal["newest", "all"] = Field(
        default="newest", description="A data folder or blob prefix (a blob URI ending in /): newest (its newest *.csv) "
        "or all (every *.csv appended, in name order)"
    )
    retrain_on: Literal["always", "drift"] = Field(
        default="always", description="always: retrain on any new data; drift: only when a column drifted from the champion's training data"
    )
    force: bool = Field(default=False, description="Retrain even when the data is the champion's")
    schema_path: str | None = Field(default=None, description="A YAML or JSON dataset schema; None: inferred when target is set, else the heart schema")
    target: str | None = Field(default=None, description="The label column; with no schema_path the schema is inferred")
    positive_class: str | None = Field(default=None, description="The target's positive label when it is not 0/1")
    holdout_fraction: float = Field(default=0.1, gt=0.0, lt=0.5)
    seed: int = Field(default=42, description="Seeds the data's sampling (the holdout goes by row hash)")


ASSET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
ASSET_NAME_RULE = "letters, digits, '-', '_' and '.', at most 255 characters"
_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def azure_sweep_problems(sweep: SweepSpec) -> list[tuple[str, str]]:
    """(field, rule) for each of Azure ML's sweep limits that ``sweep`` breaks (the field validators above
    enforce the limits both backends share)."""
    out: list[tuple[str, str]] = []
    if sweep.max_concurrent_trials is not None and sweep.max_concurrent_trials > MAX_TOTAL_TRIALS_LIMIT:
        out.append(("max_concurrent_trials", f"must be 1 to {MAX_TOTAL_TRIALS_LIMIT} (got {sweep.max_concurrent_trials})"))
    if sweep.sampling == "bayesian" and sweep.early_termination is not None:
        out.append(("early_termination", "Azure ML refuses an early termination policy with bayesian sampling: "
                    f"remove it or use random sampling (got {sweep.early_termination.policy})"))
    if sweep.timeout_s and sweep.trial_timeout_s and sweep.trial_timeout_s > sweep.timeout_s:
        out.append(("trial_timeout_s", f"must not exceed sweep.timeout_s ({sweep.trial_timeout_s} > {sweep.timeout_s})"))
    for name, dist in sweep.search_space.items():
        field = f"search_space.{name}"
        if not _PARAM_NAME.match(name):
            out.append((field, "a hyperparameter name must be a Python identifier"))
        if not isinstance(dist, Choice):
            continue
        values = list(dist.values)
        if any(v is None or isinstance(v, bool) or not isinstance(v, (int, float, str)) for v in values):
            out.append((field, f"choice values must be numbers or strings (use -1 for max_depth None), got {values}"))
        elif any(isinstance(v, str) for v in values) and not all(isinstance(v, str) for v in values):
            out.append((field, f"choice values must be all numbers or all strings, got {values}"))
        elif any(isinstance(v, str) and ('"' in v or "'" in v or "\\" in v) for v in values):
            out.append((field, f"string choices may not contain quotes or backslashes, got {values}"))
    return out


def _no_password(value: str | None) -> str | None:
    from urllib.parse import urlsplit

    if value and urlsplit(value).password is not None:
        raise ValueError("contains a password: give it as MLFLOW_TRACKING_PASSWORD or PGPASSWORD / ~/.pgpass instead")
    return value


class PipelineSpec(BaseModel):
    """Everything one run of ``train-and-deploy`` needs besides secrets."""

    model_config = ConfigDict(extra="forbid")
    backend: Literal["local", "azure"] = Field(default="local", description="Where to run: local or azure")
    home: str | None = Field(
        default=None, description="Local state folder (MLflow, data, endpoints). Default: $HEARTFLOW_HOME or ./.heartflow"
    )
    tracking_uri: str | None = Field(
        default=None,
        description="Local: a shared MLflow tracking server or database (no password in it); "
        "default MLFLOW_TRACKING_URI, else <home>/mlflow.db",
    )
    artifact_root: str | None = Field(
        default=None, description="Local, with a database tracking_uri: where every machine reads artifacts"
    )
    model_name: str = Field(default=DEFAULT_MODEL_NAME, description="Registered model name")
    data: DataSpec = Field(default_factory=DataSpec)
    sweep: SweepSpec = Field(default_factory=SweepSpec)
    deploy: DeploySpec = Field(default_factory=DeploySpec)
    dry_run: bool = Field(default=False, description="Azure: build and validate every object, call nothing")
    azure_overrides: dict[str, str] = Field(
        default_factory=dict,
        description="Azure settings that win over the environment (compute, container, instance_type, ...)",
    )
    azure_secret_blocks: dict[str, str] = Field(
        default_factory=dict,
        description="Azure secrets from Prefect Secret blocks: setting -> block name, e.g. "
        "{'AZURE_STORAGE_CONNECTION_STRING': 'heartflow-storage', 'AZURE_CLIENT_SECRET': 'heartflow-sp'}",
    )

    @field_validator("tracking_uri", "artifact_root")
    @classmethod
    def _without_password(cls, value: str | None) -> str | None:
        return _no_password(value)

    # Azure ML's limits that the spec alone decides (``backend`` is validated first, so it is known here);
    # those that depend on the Azure settings too are checked in backends/azure/limits.py.
    @field_validator("model_name")
    @classmethod
    def _azure_model_name(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("backend") == "azure" and not ASSET_NAME.match(value or ""):
            raise ValueError(f"{value!r} breaks Azure ML's asset name rule: {ASSET_NAME_RULE}")
        return value

    @field_validator("sweep")
    @classmethod
    def _azure_sweep(cls, value: SweepSpec, info: ValidationInfo) -> SweepSpec:
        problems = azure_sweep_problems(value) if info.data.get("backend") == "azure" else []
        if problems:
            raise ValueError("\n".join(f"{field}: {rule}" for field, rule in problems))
        return value
