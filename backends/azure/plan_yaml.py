"""The dry run's plan as Azure ML CLI v2 YAML files: what a run would create, one file per object, each
with its ``$schema`` line, so a user can review it, diff it in a pull request or submit it by hand
(``az ml <kind> create -f <file>``). Every file is written from the SDK's own serialisation of the
objects ``build_plan`` validated, and read back with the SDK's ``load_*`` function before it is kept.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from azure.ai.ml import load_compute, load_data, load_datastore, load_environment, load_job
from azure.ai.ml import load_online_deployment, load_online_endpoint
from azure.ai.ml.exceptions import ValidationException
from marshmallow import ValidationError

from backends.azure.plan import AzurePlan
from backends.errors import ConfigurationError

SCHEMA_ROOT = "https://azuremlschemas.azureedge.net/latest/"  # the CLI v2 reference's schema URLs
CONDA_FILE = "conda.yml"
LATEST_MODEL_NOTE = "the latest registered version; heartflow deploys the version its run registers"


@dataclass(frozen=True)
class _Kind:
    file: str
    schema: str
    loader: Callable[..., Any]
    create: str


KINDS: Mapping[str, _Kind] = MappingProxyType({
    "compute": _Kind("compute.yml", "amlCompute.schema.json", load_compute, "az ml compute create -f"),
    "datastore": _Kind("datastore.yml", "azureBlob.schema.json", load_datastore, "az ml datastore create -f"),
    "environment": _Kind("environment.yml", "environment.schema.json", load_environment, "az ml environment create -f"),
    "data": _Kind("data.yml", "data.schema.json", load_data, "az ml data create -f"),
    "sweep": _Kind("sweep-job.yml", "sweepJob.schema.json", load_job, "az ml job create -f"),
    "endpoint": _Kind("endpoint.yml", "managedOnlineEndpoint.schema.json", load_online_endpoint,
                      "az ml online-endpoint create -f"),
    "deployment": _Kind("deployment.yml", "managedOnlineDeployment.schema.json", load_online_deployment,
                        "az ml online-deployment create -f"),
})


@dataclass(frozen=True)
class PlanFiles:
    """The YAML files written for one plan, by kind (``conda`` is the environment's conda file)."""

    directory: Path
    files: Mapping[str, Path]

    def render(self) -> str:
        lines = [f"Azure ML CLI v2 YAML written to {self.directory} (create in this order):"]
        lines += [f"  {KINDS[kind].create} {path.name}" for kind, path in self.files.items() if kind in KINDS]
        return "\n".join(lines)


def _relative(target: str | None, directory: Path) -> str | None:
    """A local path as seen from ``directory`` (the CLI resolves paths relative to the YAML file)."""
    if not target or "://" in target or target.startswith("azureml:"):
        return target
    try:
        return os.path.relpath(Path(target).resolve(), directory.resolve())
    except ValueError:  # another drive (Windows): keep it absolute
        return str(Path(target).resolve())


def yaml_documents(plan: AzurePlan, directory: Path) -> dict[str, dict[str, Any]]:
    """Each object as the dict its YAML file holds (``$schema`` first), paths relative to ``directory``."""
    docs: dict[str, dict[str, Any]] = {}
    environment = {k: v for k, v in plan.environment.items() if k != "conda_file"}
    environment["conda_file"] = CONDA_FILE
    docs["compute"] = dict(plan.compute)
    if plan.datastore:
        docs["datastore"] = {k: v for k, v in plan.datastore.items() if k != "credentials"}
    docs["environment"] = environment
    docs["data"] = dict(plan.data_asset)

    sweep = _copy(plan.sweep)
    trial = sweep.get("trial", {})
    trial["code"] = _relative(trial.get("code"), directory)
    sweep.setdefault("inputs", {}).setdefault("input_data", {})["path"] = (
        f"azureml:{plan.data_asset['name']}:{plan.data_asset['version']}"
    )
    docs["sweep"] = sweep
    docs["endpoint"] = dict(plan.endpoint)
    deployment = _copy(plan.deployment)
    deployment["model"] = f"azureml:{plan.model.get('name')}@latest"
    code = deployment.get("code_configuration", {})
    code["code"] = _relative(code.get("code"), directory)
    docs["deployment"] = deployment
    return {kind: {"$schema": SCHEMA_ROOT + KINDS[kind].schema, **doc} for kind, doc in docs.items()}


def _copy(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return yaml.safe_load(yaml.safe_dump(dict(mapping)))


def _header(kind: str, plan: AzurePlan) -> str:
    lines = [f"# heartflow dry run: the {kind} a run would create in {plan.workspace}.",
             f"# Create it by hand with: {KINDS[kind].create} {KINDS[kind].file}"]
    if kind == "deployment":
        lines.append(f"# model: {LATEST_MODEL_NOTE}.")
    if kind == "data":
        lines.append("# The split itself is uploaded by `heartflow upload --backend azure` (content-addressed by sha256).")
    if kind == "datastore":
        lines.append("# Identity-based here; with a connection string heartflow also stores the account key (never written).")
    return "\n".join(lines) + "\n"


def write_plan_yaml(plan: AzurePlan, directory: Path) -> PlanFiles:
    """Write the plan's YAML files into ``directory`` (created if needed) and check that each loads with
    the SDK; raise ConfigurationError (and leave no file) when one does not."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"--plan-dir {directory}: cannot create the folder ({exc.strerror}); pick a writable path") from exc
    docs = yaml_documents(plan, directory)
    texts = {kind: _header(kind, plan) + yaml.safe_dump(doc, sort_keys=False, width=10_000) for kind, doc in docs.items()}
    conda_text = yaml.safe_dump(dict(plan.environment["conda_file"]), sort_keys=False)
    written: dict[str, Path] = {}
    try:
        conda_path = directory / CONDA_FILE
        conda_path.write_text(conda_text, encoding="utf-8")
        written["conda"] = conda_path
        for kind, text in texts.items():
            path = directory / KINDS[kind].file
            path.write_text(text, encoding="utf-8")
            written[kind] = path
            _check_loads(kind, path)
    except (OSError, ConfigurationError) as exc:
        for path in written.values():
            path.unlink(missing_ok=True)
        if isinstance(exc, ConfigurationError):
            raise
        raise ConfigurationError(f"--plan-dir {directory}: cannot write the plan ({exc}); pick a writable path") from exc
    return PlanFiles(directory=directory, files=MappingProxyType(dict(written)))


def _check_loads(kind: str, path: Path) -> None:
    try:
        KINDS[kind].loader(source=path)
    except (ValidationException, ValidationError, ValueError, KeyError, TypeError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"the {kind} YAML heartflow wrote ({path.name}) does not load with the Azure ML SDK: {exc}") from exc
