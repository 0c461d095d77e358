"""Azure ML's documented limits, checked before any call so a bad run fails in a second, not after an hour.

The pipeline spec's own validation (backends/domain/spec.py, with Azure's rules for ``backend="azure"``) is
the one place the spec's limits live: a run's spec is validated for Azure here (so a spec edited by hand
is refused as one built by the CLI), and what depends on the Azure settings too (names with the settings'
prefix, the cluster's size, the VM size, a trial's rendered command line) is checked beside it. Every
violation is reported at once, each naming the field and the rule.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from dataclasses import dataclass

from pydantic import BaseModel, ValidationError

from backends.azure import naming
from backends.azure.settings import AzureSettings
from backends.azure.trial_args import trial_argument_problems
from backends.errors import ConfigurationError
from backends.domain.spec import NAME_RULE, PipelineSpec

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


@dataclass(frozen=True)
class LimitViolation:
    field: str
    rule: str
    value: object = None  # None: the rule says what it got

    def __str__(self) -> str:
        return f"{self.field}: {self.rule}" if self.value is None else f"{self.field} = {self.value!r}: {self.rule}"


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


def _dumped(value: Any) -> Any:
    return value.model_dump() if isinstance(value, BaseModel) else value


def validate_for_azure(spec: PipelineSpec | Mapping[str, Any]) -> tuple[PipelineSpec | None, list[LimitViolation]]:
    """``spec`` (or its parts: model_name, sweep, deploy) validated by the spec's own rules for the Azure
    backend, from its values (so a spec that skipped validation, or was changed after it, is checked as
    one built from flags): the valid spec, or None and every violation."""
    parts = dict(spec) if isinstance(spec, Mapping) else {k: getattr(spec, k) for k in type(spec).model_fields}
    data = {k: _dumped(v) for k, v in parts.items()}
    try:
        return PipelineSpec.model_validate({**data, "backend": "azure"}), []
    except ValidationError as exc:
        out = []
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            if error["type"] == "value_error" and field in ("sweep",) and ": " in message:
                for line in message.splitlines():  # one line per rule the sweep breaks: "<field>: <rule>"
                    inner, _, rule = line.partition(": ")
                    out.append(LimitViolation(f"{field}.{inner}", rule))
            else:
                out.append(LimitViolation(field, message, None if isinstance(error.get("input"), dict) else error.get("input")))
        return None, out


def check_limits(spec: PipelineSpec | Mapping[str, Any], settings: AzureSettings) -> list[LimitViolation]:
    """Every violated limit of a run of ``spec`` with ``settings``; empty when the run may go ahead."""
    valid, out = validate_for_azure(spec)
    for field, value in (
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
    if valid is None:
        return out
    sweep, deploy = valid.sweep, valid.deploy
    endpoint = naming.endpoint_name(settings, deploy.endpoint_name)  # with the settings' prefix or override
    if not name_ok(endpoint):
        out.append(LimitViolation("deploy.endpoint_name", NAME_RULE, endpoint))
    if sweep.max_concurrent_trials is not None and sweep.max_concurrent_trials > settings.compute_max_nodes:
        out.append(LimitViolation(
            "sweep.max_concurrent_trials",
            f"must not exceed the cluster's max nodes ({settings.compute_max_nodes}, settings.compute_max_nodes; the "
            "sweep re-checks an existing cluster's real size): lower it or raise HEARTFLOW_AZURE_COMPUTE_MAX_NODES",
            sweep.max_concurrent_trials))
    instance_type = settings.instance_type or deploy.instance_type
    if not instance_type or not _ONLINE_SKU.match(instance_type.lower()):
        out.append(LimitViolation("deploy.instance_type", ONLINE_SKU_RULE, instance_type))
    if not out:  # the command line of a trial, as Azure renders its values (only for a spec the rules allow)
        for name, value, said in trial_argument_problems(sweep):
            out.append(LimitViolation(f"search_space.{name}", f"a trial would fail with it ({said})", value))
    return out


def enforce_limits(spec: PipelineSpec | Mapping[str, Any], settings: AzureSettings, *, extra: list[LimitViolation] | None = None) -> None:
    """Raise one ConfigurationError listing every violated limit (and call nothing)."""
    violations = check_limits(spec, settings) + list(extra or [])
    if violations:
        lines = "\n".join(f"  - {v}" for v in violations)
        raise ConfigurationError(f"the Azure run breaks {len(violations)} documented limit(s):\n{lines}")
