"""What the CLI reads from files: a whole PipelineSpec (--spec, the Prefect deployment's parameter format),
a search space (--search-space), and the schema proposal of `heartflow schema infer`; the spec `run` builds
from its options, and the data it names.

Files are checked by the same pydantic models as the flow's parameters, so a mistake gets the same
message from the CLI, the Prefect UI and a deployment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from backends.errors import ConfigurationError
from backends.fileio import read_yaml_or_json
from flows.cli_common import (
    BackendName, FolderRuleName, GateRule, MetricName, RetrainOnName, SamplingName, ValidationName, _check, _home,
)


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


def build_spec(
    backend: BackendName, home: Path | None, data: str | None, schema: Path | None, trials: int, concurrency: int | None,
    sampling: SamplingName, seed: int, validation: ValidationName, folds: int, timeout: int | None, trial_timeout: int | None,
    model_name: str, endpoint_name: str, port: int | None, workers: int, tolerance: float | None, stop_endpoint: bool,
    dry_run: bool, instance_type: str | None, target: str | None, positive_class: str | None, space: Any,
    gate: GateRule, gate_alpha: float, tracking_uri: str | None, artifact_root: str | None,
    folder_rule: FolderRuleName, force: bool, retrain_on: RetrainOnName, metric: MetricName = "accuracy",
    threshold: str = "0.5", capture_rate: float = 1.0, *, live: dict[str, Any] | None = None,
) -> Any:
    from backends.domain.search import check_search_space
    from backends.domain.spec import DataSpec, DeploySpec, PipelineSpec, SweepSpec, ValidationSpec

    # instance_type only when given: the spec's default (a size the SDK recommends) stays in one place
    deploy_options: dict[str, Any] = {"instance_type": instance_type} if instance_type else {}
    spec: PipelineSpec = _check(
        lambda: PipelineSpec(
            backend=backend.value,
            home=str(_home(home)) if backend is BackendName.local else None,
            tracking_uri=tracking_uri, artifact_root=artifact_root,
            model_name=model_name,
            data=DataSpec(path=data or None, schema_path=str(schema) if schema else None, seed=seed,
                          target=target, positive_class=positive_class, folder_rule=folder_rule, force=force,
                          retrain_on=retrain_on),
            sweep=SweepSpec(
                search_space=space,
                sampling=sampling.value, max_total_trials=trials, max_concurrent_trials=concurrency, seed=seed,
                validation=ValidationSpec(method=validation, folds=folds), timeout_s=timeout, trial_timeout_s=trial_timeout,
                metric=metric, threshold=_threshold_option(threshold),
            ),
            deploy=DeploySpec(
                endpoint_name=endpoint_name, port=port, workers=workers, stop_endpoint=stop_endpoint,
                promotion_tolerance=tolerance, gate=gate.value, gate_alpha=gate_alpha, capture_rate=capture_rate,
                **deploy_options, **(live or {}),
            ),
            dry_run=dry_run,
        )
    )
    _check(check_search_space, spec.sweep)
    return spec


def _threshold_option(text: str) -> float | Literal["auto"]:
    """--threshold: auto, or a number (the spec checks its range)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise ConfigurationError(f"--threshold {text!r}: give 0.5, auto, or a probability between 0 and 1") from None


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
