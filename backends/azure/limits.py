"""Azure ML's documented limits, checked before any call so a bad run fails in a second, not after an hour.

The pipeline spec's own validators enforce most of them at construction; these checks run again on the
values about to be sent (a spec built without validation, CLI overrides, settings) and report every
violation at once, each naming the field and the rule.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from backends.azure import naming
from backends.azure.settings import AzureSettings
from backends.errors import ConfigurationError
from backends.spec import MAX_REQUEST_TIMEOUT_MS, MAX_TOTAL_TRIALS_LIMIT, METRICS, NAME_RULE, SAMPLING_ACCEPTS, PipelineSpec

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,30}[A-Za-z0-9]$")
_ASSET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class LimitViolation:
    field: str
    rule: str
    value: object

    def __str__(self) -> str:
        return f"{self.field} = {self.value!r}: {self.rule}"


def name_ok(value: str) -> bool:
    """Endpoint and deployment names: 3 to 32 characters, letters, digits and '-', starting with a letter."""
    return bool(_NAME.match(value or ""))


def check_traffic(traffic: Mapping[str, int], field: str = "traffic") -> list[LimitViolation]:
    out = []
    total = sum(int(v) for v in traffic.values())
    if total not in (0, 100):
        out.append(LimitViolation(field, "traffic percentages must sum to 0 or 100", dict(traffic)))
    for name, share in traffic.items():
        if not 0 <= int(share) <= 100:
            out.append(LimitViolation(f"{field}.{name}", "each share must be 0 to 100", share))
    return out


def check_limits(spec: PipelineSpec, settings: AzureSettings) -> list[LimitViolation]:
    """Every violated limit of a run of ``spec`` with ``settings``; empty when the run may go ahead."""
    out: list[LimitViolation] = []
    sweep, deploy = spec.sweep, spec.deploy

    endpoint = naming.endpoint_name(settings, deploy.endpoint_name)
    for field, value in (
        ("deploy.endpoint_name", endpoint),
        ("settings.blue_deployment", settings.blue_deployment),
        ("settings.green_deployment", settings.green_deployment),
        ("settings.compute", settings.compute),
    ):
        if not name_ok(value):
            out.append(LimitViolation(field, NAME_RULE, value))
    if settings.blue_deployment == settings.green_deployment:
        out.append(LimitViolation("settings.green_deployment", "the two deployment names must differ", settings.green_deployment))
    if not _ASSET_NAME.match(spec.model_name or ""):
        out.append(LimitViolation("model_name", "letters, digits, '-', '_' and '.', at most 255 characters", spec.model_name))

    if not 1 <= sweep.max_total_trials <= MAX_TOTAL_TRIALS_LIMIT:
        out.append(LimitViolation("sweep.max_total_trials", f"must be 1 to {MAX_TOTAL_TRIALS_LIMIT}", sweep.max_total_trials))
    if sweep.max_concurrent_trials is not None and not 1 <= sweep.max_concurrent_trials <= MAX_TOTAL_TRIALS_LIMIT:
        out.append(LimitViolation("sweep.max_concurrent_trials", f"must be 1 to {MAX_TOTAL_TRIALS_LIMIT}", sweep.max_concurrent_trials))
    for field in ("timeout_s", "trial_timeout_s"):
        value = getattr(sweep, field)
        if value is not None and value < 1:
            out.append(LimitViolation(f"sweep.{field}", "must be at least 1 second", value))
    if sweep.timeout_s and sweep.trial_timeout_s and sweep.trial_timeout_s > sweep.timeout_s:
        out.append(LimitViolation("sweep.trial_timeout_s", "must not exceed sweep.timeout_s", sweep.trial_timeout_s))
    if sweep.primary_metric not in METRICS:
        out.append(LimitViolation("sweep.primary_metric", f"must be a metric model_train.py logs: {', '.join(METRICS)}", sweep.primary_metric))
    if sweep.goal not in ("maximize", "minimize"):
        out.append(LimitViolation("sweep.goal", "must be maximize or minimize", sweep.goal))

    accepted = SAMPLING_ACCEPTS.get(sweep.sampling)
    if accepted is None:
        out.append(LimitViolation("sweep.sampling", "must be grid, random or bayesian", sweep.sampling))
        accepted = frozenset()
    if not sweep.search_space:
        out.append(LimitViolation("sweep.search_space", "must name at least one hyperparameter", {}))
    for name, dist in sweep.search_space.items():
        field = f"sweep.search_space.{name}"
        if not _PARAM_NAME.match(name):
            out.append(LimitViolation(field, "a hyperparameter name must be a Python identifier", name))
        if accepted and dist.type not in accepted:
            out.append(LimitViolation(
                field, f"{sweep.sampling} sampling accepts only {', '.join(sorted(accepted))}", dist.type))
        if dist.type == "choice":
            values = list(dist.values)
            if not values:
                out.append(LimitViolation(field, "a choice needs at least one value", values))
            if any(v is None or isinstance(v, bool) or not isinstance(v, (int, float, str)) for v in values):
                out.append(LimitViolation(field, "choice values must be numbers or strings (use -1 for max_depth None)", values))
            elif any(isinstance(v, str) for v in values) and not all(isinstance(v, str) for v in values):
                out.append(LimitViolation(field, "choice values must be all numbers or all strings", values))
            elif any(isinstance(v, str) and ('"' in v or "'" in v or "\\" in v) for v in values):
                out.append(LimitViolation(field, "string choices may not contain quotes or backslashes", values))

    if not 1 <= deploy.request_timeout_ms <= MAX_REQUEST_TIMEOUT_MS:
        out.append(LimitViolation("deploy.request_timeout_ms", f"must be 1 to {MAX_REQUEST_TIMEOUT_MS} ms", deploy.request_timeout_ms))
    if deploy.instance_count < 1:
        out.append(LimitViolation("deploy.instance_count", "must be at least 1", deploy.instance_count))
    instance_type = settings.instance_type or deploy.instance_type
    if not instance_type or not instance_type.lower().startswith("standard_"):
        out.append(LimitViolation("deploy.instance_type", "an Azure VM size such as Standard_DS3_v2", instance_type))
    return out


def enforce_limits(spec: PipelineSpec, settings: AzureSettings, *, extra: list[LimitViolation] | None = None) -> None:
    """Raise one ConfigurationError listing every violated limit (and call nothing)."""
    violations = check_limits(spec, settings) + list(extra or [])
    if violations:
        lines = "\n".join(f"  - {v}" for v in violations)
        raise ConfigurationError(f"the Azure run breaks {len(violations)} documented limit(s):\n{lines}")
