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
from backends.azure.trial_args import trial_argument_problems
from backends.errors import ConfigurationError
from backends.domain.spec import MAX_REQUEST_TIMEOUT_MS, MAX_TOTAL_TRIALS_LIMIT, METRICS, NAME_RULE, SAMPLING_ACCEPTS, PipelineSpec

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,30}[A-Za-z0-9]$")
# AmlCompute names. The SDK (azure-ai-ml 1.35, entities/_compute and _schema/compute) checks none; the
# service refuses a name that breaks its rule with: "A name for an Azure ML Compute ... must be between 3
# and 24 characters in length and must use only numbers, letters and minus symbol (-), must start with
# letters", and "Compute name: ... 3 to 24 characters ... Valid characters are upper and lower case letters,
# digits, and the - character. Name must start with a letter" (Azure ML docs, how to create a compute
# cluster). A name ending in '-' is refused too.
_COMPUTE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]$")
COMPUTE_NAME_RULE = "3 to 24 characters: letters, digits and '-', starting with a letter and not ending with '-'"
# VM sizes a managed online deployment accepts. The SDK carries no such list: constants/_deployment.py has
# only SmallSKUs (standard_ds1_v2, standard_ds2_v2: accepted with a warning that at least Standard_DS3_v2 is
# recommended) and constants/_endpoint.py the default Standard_F4s_v2. The families below are those of the
# Azure ML docs' "Managed online endpoints SKU list" (general purpose, compute and memory optimised, GPU).
_ONLINE_SKU = re.compile(
    r"^standard_(?:"
    r"ds[1-5]_v2|f(?:2|4|8|16|32|48|64|72)s_v2|d(?:2|4|8|16|32|48|64|96)as?_v4|"
    r"e(?:2|4|8|16|20|32|48|64)s_v3|e(?:2|4|8|16|20|32|48|64|96)as_v4|"
    r"nc(?:6|12|24)s_v3|nc24rs_v3|nc(?:4|8|16|64)as_t4_v3|nc(?:24|48|96)ads_a100_v4|"
    r"nd40rs_v2|nd96asr_v4|nd96amsr_a100_v4"
    r")$"
)
ONLINE_SKU_RULE = ("a VM size managed online endpoints offer (Standard_DS3_v2, Standard_F4s_v2, Standard_D4as_v4, "
                   "Standard_E4s_v3, Standard_NC6s_v3 ...; see the Azure ML managed online endpoints SKU list)")
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
    ):
        if not name_ok(value):
            out.append(LimitViolation(field, NAME_RULE, value))
    if not _COMPUTE_NAME.match(settings.compute or ""):
        out.append(LimitViolation("settings.compute", f"an AmlCompute name: {COMPUTE_NAME_RULE}", settings.compute))
    if settings.blue_deployment.lower() == settings.green_deployment.lower():  # Azure lowercases them: one name
        out.append(LimitViolation("settings.green_deployment", "the two deployment names must differ (ignoring case: "
                                  "Azure ML lowercases deployment names)", settings.green_deployment))
    if not _ASSET_NAME.match(spec.model_name or ""):
        out.append(LimitViolation("model_name", "letters, digits, '-', '_' and '.', at most 255 characters", spec.model_name))

    if not 1 <= sweep.max_total_trials <= MAX_TOTAL_TRIALS_LIMIT:
        out.append(LimitViolation("sweep.max_total_trials", f"must be 1 to {MAX_TOTAL_TRIALS_LIMIT}", sweep.max_total_trials))
    if sweep.max_concurrent_trials is not None and not 1 <= sweep.max_concurrent_trials <= MAX_TOTAL_TRIALS_LIMIT:
        out.append(LimitViolation("sweep.max_concurrent_trials", f"must be 1 to {MAX_TOTAL_TRIALS_LIMIT}", sweep.max_concurrent_trials))
    elif sweep.max_concurrent_trials is not None and sweep.max_concurrent_trials > settings.compute_max_nodes:
        out.append(LimitViolation(
            "sweep.max_concurrent_trials",
            f"must not exceed the cluster's max nodes ({settings.compute_max_nodes}, settings.compute_max_nodes; the "
            "sweep re-checks an existing cluster's real size): lower it or raise HEARTFLOW_AZURE_COMPUTE_MAX_NODES",
            sweep.max_concurrent_trials))
    if sweep.sampling == "bayesian" and sweep.early_termination is not None:
        out.append(LimitViolation(
            "sweep.early_termination", "Azure ML refuses an early termination policy with bayesian sampling: "
            "remove it or use random sampling", sweep.early_termination.policy))
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
    if not instance_type or not _ONLINE_SKU.match(instance_type.lower()):
        out.append(LimitViolation("deploy.instance_type", ONLINE_SKU_RULE, instance_type))
    if not out:  # the command line of a trial, as Azure renders its values (only for a spec the rules allow)
        for name, value, said in trial_argument_problems(sweep):
            out.append(LimitViolation(f"search_space.{name}", f"a trial would fail with it ({said})", value))
    return out


def enforce_limits(spec: PipelineSpec, settings: AzureSettings, *, extra: list[LimitViolation] | None = None) -> None:
    """Raise one ConfigurationError listing every violated limit (and call nothing)."""
    violations = check_limits(spec, settings) + list(extra or [])
    if violations:
        lines = "\n".join(f"  - {v}" for v in violations)
        raise ConfigurationError(f"the Azure run breaks {len(violations)} documented limit(s):\n{lines}")
