"""The pipeline spec: one typed, validated description of a run, shared by both backends.

It is the Prefect flow's parameter (so the UI renders a form) and the CLI builds it from flags.
The search space has the meaning and the rules of ``azure.ai.ml.sweep``, so one spec runs on both backends.
"""

from __future__ import annotations

import math
import os
from typing import Annotated, Any, Literal, Union

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from backends.errors import ConfigurationError
from backends.domain.shadow import DEFAULT_MAX_DISAGREEMENT, DEFAULT_MIN_REQUESTS

# Azure ML's documented limits, checked before any call on either backend.
MAX_TOTAL_TRIALS_LIMIT = 1000
MAX_REQUEST_TIMEOUT_MS = 180_000
NAME_RULE = "3 to 32 characters: letters, digits and '-', starting with a letter and not ending with '-'"


class _Dist(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Choice(_Dist):
    type: Literal["choice"] = "choice"
    values: list[Any] = Field(min_length=1)


class Randint(_Dist):
    """An integer in [0, upper), as azure.ai.ml.sweep.Randint."""

    type: Literal["randint"] = "randint"
    upper: int = Field(gt=0)


class Uniform(_Dist):
    type: Literal["uniform"] = "uniform"
    min_value: float
    max_value: float

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        if self.min_value >= self.max_value:
            raise ValueError(f"min_value ({self.min_value}) must be below max_value ({self.max_value})")
        return self


class LogUniform(Uniform):
    """exp(uniform(min_value, max_value)), as azure.ai.ml.sweep.LogUniform."""

    type: Literal["loguniform"] = "loguniform"  # type: ignore[assignment] # a narrower tag than its base: the discriminator


class QUniform(Uniform):
    type: Literal["quniform"] = "quniform"  # type: ignore[assignment] # a narrower tag than its base: the discriminator
    q: float = Field(gt=0)


class QLogUniform(Uniform):
    type: Literal["qloguniform"] = "qloguniform"  # type: ignore[assignment] # a narrower tag than its base: the discriminator
    q: float = Field(gt=0)


class Normal(_Dist):
    type: Literal["normal"] = "normal"
    mu: float
    sigma: float = Field(gt=0)


class LogNormal(Normal):
    type: Literal["lognormal"] = "lognormal"  # type: ignore[assignment] # a narrower tag than its base: the discriminator


class QNormal(Normal):
    type: Literal["qnormal"] = "qnormal"  # type: ignore[assignment] # a narrower tag than its base: the discriminator
    q: float = Field(gt=0)


class QLogNormal(Normal):
    type: Literal["qlognormal"] = "qlognormal"  # type: ignore[assignment] # a narrower tag than its base: the discriminator
    q: float = Field(gt=0)


Distribution = Annotated[
    Union[Choice, Randint, Uniform, LogUniform, QUniform, QLogUniform, Normal, LogNormal, QNormal, QLogNormal],
    Field(discriminator="type"),
]

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
    method: Literal["split", "kfold"] = "kfold"
    test_size: float = Field(default=0.3, gt=0.0, lt=1.0)
    folds: int = Field(default=5, ge=2, le=20)
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
    sampling: Sampling = "random"
    max_total_trials: int = Field(default=25, ge=1, le=MAX_TOTAL_TRIALS_LIMIT)
    max_concurrent_trials: int | None = Field(default=None, ge=1, description="Default: the machine's cores")
    timeout_s: int | None = Field(default=None, ge=1, description="Whole sweep; trials not started by then are skipped")
    trial_timeout_s: int | None = Field(default=None, ge=1)
    metric: Metric = Field(
        default="accuracy", validation_alias=AliasChoices("metric", "primary_metric"),
        description="Selects the best trial (Azure: the sweep's primary metric) and drives the gate and reports; "
        "every metric is logged",
    )
    goal: Literal["maximize", "minimize"] = Field(default="maximize", description="Always the metric's direction")
    threshold: float | Literal["auto"] | None = Field(
        default=None,
        description="Decision threshold stored with the model: None or 0.5 (the model's own decision), auto "
        "(maximises F1 for metric f1, else balanced accuracy, on out-of-fold predictions), or a probability",
    )
    seed: int = 42
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
    endpoint_name: str = "heart-classify-endpoint"
    port: int | None = Field(default=None, ge=0, le=65535, description="Local: None picks a free port")
    workers: int = Field(default=1, ge=1, le=64)
    stop_endpoint: bool = Field(default=False, description="Stop the local endpoint when the flow ends")
    # Azure: the SDK warns about Standard_DS1_v2/DS2_v2 (azure.ai.ml.constants._deployment.SmallSKUs) and
    # recommends at least Standard_DS3_v2 for a managed online deployment.
    instance_type: str = "Standard_DS3_v2"
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
    gate_alpha: float = Field(default=0.05, gt=0.0, lt=1.0, description="Significance level of the paired gate")
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
        default="newest", description="A folder: read its newest *.csv, or all of them appended"
    )
    retrain_on: Literal["always", "drift"] = Field(
        default="always", description="always: retrain on any new data; drift: only when a column drifted"
    )
    force: bool = Field(default=False, description="Retrain even when the data is the champion's")
    schema_path: str | None = Field(default=None, description="A YAML or JSON dataset schema; None: inferred when target is set, else the heart schema")
    target: str | None = Field(default=None, description="The label column; with no schema_path the schema is inferred")
    positive_class: str | None = Field(default=None, description="The target's positive label when it is not 0/1")
    holdout_fraction: float = Field(default=0.1, gt=0.0, lt=0.5)
    seed: int = 42


def _no_password(value: str | None) -> str | None:
    from urllib.parse import urlsplit

    if value and urlsplit(value).password is not None:
        raise ValueError("contains a password: give it as MLFLOW_TRACKING_PASSWORD or PGPASSWORD / ~/.pgpass instead")
    return value


class PipelineSpec(BaseModel):
    """Everything one run of ``train-and-deploy`` needs besides secrets."""

    model_config = ConfigDict(extra="forbid")
    backend: Literal["local", "azure"] = "local"
    home: str | None = Field(default=None, description="Local: where MLflow, data and endpoints live")
    tracking_uri: str | None = Field(
        default=None,
        description="Local: a shared MLflow tracking server or database (no password in it); "
        "default MLFLOW_TRACKING_URI, else <home>/mlflow.db",
    )
    artifact_root: str | None = Field(
        default=None, description="Local, with a database tracking_uri: where every machine reads artifacts"
    )
    model_name: str = "heart-classifier"
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
