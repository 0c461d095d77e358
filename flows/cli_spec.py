"""What the CLI reads from files: a whole PipelineSpec (--spec, the Prefect deployment's parameter format),
a search space (--search-space), and the schema proposal of `heartflow schema infer`; and the data a spec
names (read once per run: the flow is handed what the CLI validated).

Files are checked by the same pydantic models as the flow's parameters, so a mistake gets the same
message from the CLI, the Prefect UI and a deployment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backends.errors import ConfigurationError
from backends.fileio import read_yaml_or_json


def read_mapping(path: Path, what: str) -> dict[str, Any]:
    """A YAML or JSON file holding a mapping."""
    raw = read_yaml_or_json(path, what)
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{what} file {path} must hold a mapping, not {type(raw).__name__}")
    return raw


def load_spec(path: Path) -> Any:
    """The whole PipelineSpec from ``path``: the mapping itself, or a deployment's ``parameters`` holding it
    under ``spec`` (``{"spec": {...}}``), as prefect.yaml writes it."""
    from backends.domain.search import check_search_space
    from backends.domain.spec import PipelineSpec

    raw = read_mapping(path, "spec")
    if set(raw) == {"spec"}:
        raw = raw["spec"]
    elif "parameters" in raw and isinstance(raw["parameters"], dict) and "spec" in raw["parameters"]:
        raw = raw["parameters"]["spec"]
    spec = PipelineSpec.model_validate(raw)
    check_search_space(spec.sweep)
    return spec


def load_search_space(path: Path) -> dict[str, Any]:
    """A search space: {name: {type: choice, values: [...]}, ...}, or the same under ``search_space``."""
    raw = read_mapping(path, "search-space")
    if set(raw) == {"search_space"}:
        raw = raw["search_space"]
    return raw


def infer_schema_yaml(data: Path, target: str, positive_class: str | None) -> str:
    from backends.domain.dataset import read_table
    from backends.domain.inference import infer_schema

    raw, _source = read_table(data)
    return infer_schema(raw, target, positive_class).to_yaml()


def recorded_schema_yaml(home: Path, model_name: str, version: str | None) -> str:
    """The schema a registered model (the champion by default) was trained with, as a --schema file, so a
    retraining run uses exactly the schema the served model was trained and validated with."""
    import yaml

    from backends.local import tracking
    from backends.local.backend import LocalBackend
    from src.model_files import find_model_dir, read_model_info

    local = LocalBackend(home)
    model = local.registry.get(model_name, version) if version else local.champion(model_name)
    if model is None:
        raise ConfigurationError(f"no champion of {model_name!r} in {home}: run `heartflow run` first or pass --model-version")
    info = read_model_info(find_model_dir(tracking.served_model_dir(local.registry.client, local.home, model.name, model.version)))
    if info.schema is None:
        raise ConfigurationError(f"{model.name} v{model.version} was saved before schemas were recorded: it uses the heart schema")
    mapping = info.schema.to_mapping()
    mapping.pop("labels", None)
    mapping["missing"] = dict(info.schema.missing) if len(info.schema.missing) > 1 else info.schema.policy("")
    header = f"# the schema {model.name} v{model.version} was trained with (recorded in its MLmodel)\n"
    return header + yaml.safe_dump(mapping, sort_keys=False, allow_unicode=True)


def load_data_of(spec: Any) -> Any:
    """Fetch and validate the data named by the spec (an Azure data asset through the workspace)."""
    from backends.domain.sources import load_spec_data

    resolver = None
    if spec.backend == "azure" and (spec.data.path or "").startswith("azureml:"):
        from backends.base import DataAssetResolver
        from backends.factory import backend_for_spec

        backend = backend_for_spec(spec)
        resolver = backend.resolve_data_asset if isinstance(backend, DataAssetResolver) else None
    return load_spec_data(spec.data, asset_resolver=resolver)
