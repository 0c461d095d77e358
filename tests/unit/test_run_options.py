"""`heartflow run`'s options are bound by name to the PipelineSpec's fields: every option lands in its own field
(so two options of the same type cannot be swapped unseen), every default and help text is the spec's, and
build_spec takes its options by name only. Through typer's runner in this process, stopped right after the
spec is built (before any data is read or any server starts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from backends.base import DEFAULT_ENDPOINT_NAME
from backends.domain.spec import PipelineSpec
from backends.errors import ConfigurationError
from flows import cli_spec, early_server
from flows.cli import app
from flows.run_options import RUN_OPTIONS, build_spec, spec_field

# Every option with a value unlike its default and unlike every other option's value of the same type, and the
# spec field(s) it must land in: a swap of two options (two ints, two floats, two strings) fails here.
GIVEN: dict[str, tuple[list[str], Any]] = {
    "data": (["--data", "clinic.csv"], "clinic.csv"),
    "folder_rule": (["--folder-rule", "all"], "all"),
    "force": (["--force"], True),
    "retrain_on": (["--retrain-on", "drift"], "drift"),
    "schema": (["--schema", "clinic-schema.yaml"], "clinic-schema.yaml"),
    "target": (["--target", "label"], "label"),
    "positive_class": (["--positive-class", "yes"], "yes"),
    "trials": (["--trials", "7"], 7),
    "concurrency": (["--concurrency", "3"], 3),
    "sampling": (["--sampling", "grid"], "grid"),
    "seed": (["--seed", "11"], 11),
    "validation": (["--validation", "split"], "split"),
    "folds": (["--folds", "4"], 4),
    "timeout": (["--timeout", "600"], 600),
    "trial_timeout": (["--trial-timeout", "60"], 60),
    "metric": (["--metric", "f1"], "f1"),
    "threshold": (["--threshold", "0.3"], 0.3),
    "model_name": (["--model-name", "clinic-model"], "clinic-model"),
    "endpoint_name": (["--endpoint-name", "clinic-endpoint"], "clinic-endpoint"),
    "port": (["--port", "8123"], 8123),
    "workers": (["--workers", "2"], 2),
    "tolerance": (["--tolerance", "0.02"], 0.02),
    "gate": (["--gate", "paired"], "paired"),
    "gate_alpha": (["--gate-alpha", "0.1"], 0.1),
    "shadow": (["--shadow", "30"], 30),
    "shadow_min_requests": (["--shadow-min-requests", "9"], 9),
    "max_disagreement": (["--max-disagreement", "0.2"], 0.2),
    "watch": (["--watch", "45"], 45),
    "stop_endpoint": (["--stop-endpoint"], True),
    "capture_rate": (["--capture-rate", "0.5"], 0.5),
    "dry_run": (["--dry-run"], True),
    "compute": (["--compute", "cpu-a"], "cpu-a"),
    "instance_type": (["--instance-type", "Standard_F4s_v2"], "Standard_F4s_v2"),
    "tracking_uri": (["--tracking-uri", "sqlite:///shared/mlflow.db"], "sqlite:///shared/mlflow.db"),
    "artifact_root": (["--artifact-root", "/shared/artifacts"], "/shared/artifacts"),
}


def _field(spec: PipelineSpec, path: str) -> Any:
    value: Any = spec
    for part in path.split("."):
        value = value[part] if isinstance(value, dict) else getattr(value, part)
    return value


@pytest.fixture
def specs(monkeypatch: pytest.MonkeyPatch) -> list[PipelineSpec]:
    """The specs `heartflow run` built; the run stops there, before reading data or starting a server."""
    built: list[PipelineSpec] = []

    def stop(spec: PipelineSpec) -> None:
        built.append(spec)
        raise ConfigurationError("stopped after the spec was built")

    monkeypatch.setattr(cli_spec, "load_data_of", stop)
    monkeypatch.setattr(early_server, "start_temporary_server_early", early_server.EarlyServer)
    return built


def _run(specs: list[PipelineSpec], *args: str) -> PipelineSpec:
    result = CliRunner().invoke(app, ["run", *args])
    assert result.exit_code == 1 and "stopped after the spec was built" in result.output, result.output
    return specs.pop()


def test_every_option_lands_in_its_own_spec_field(specs: list[PipelineSpec], tmp_path: Path) -> None:
    assert set(GIVEN) | {"backend", "home"} == set(RUN_OPTIONS)  # a new option needs its case here
    by_type: dict[type, list[Any]] = {}
    for _, expected in GIVEN.values():
        by_type.setdefault(type(expected), []).append(expected)
    for kind, values in by_type.items():  # distinct, so an option read into a neighbour's field shows
        assert kind is bool or len(set(values)) == len(values), values
    args = [arg for flags, _ in GIVEN.values() for arg in flags]
    spec = _run(specs, "--home", str(tmp_path / "home"), *args)
    assert spec.backend == "local" and spec.home == str((tmp_path / "home").resolve())
    for name, (_, expected) in GIVEN.items():
        for path in RUN_OPTIONS[name].paths:
            assert _field(spec, path) == expected, f"{RUN_OPTIONS[name].flag} -> {path}"
    azure = _run(specs, "--backend", "azure", "--home", str(tmp_path), "--compute", "gpu-b")
    assert azure.backend == "azure" and azure.home is None and azure.azure_overrides == {"compute": "gpu-b"}


def test_no_option_given_is_the_spec_default(specs: list[PipelineSpec], tmp_path: Path) -> None:
    spec = _run(specs, "--home", str(tmp_path))
    assert spec.model_dump() == PipelineSpec(home=str(tmp_path.resolve())).model_dump()
    assert spec.deploy.endpoint_name == DEFAULT_ENDPOINT_NAME


def test_defaults_and_help_are_the_spec_fields() -> None:
    for name, option in RUN_OPTIONS.items():
        typer_option = option.typer_option()
        if option.value_type is None:  # the option takes the field's own type, default and description
            field = spec_field(option.paths[0])
            assert typer_option.default == field.get_default(call_default_factory=True), name
            assert typer_option.help == field.description and field.description, name
        for path in option.paths[1:]:  # one option setting two fields: their defaults agree
            assert spec_field(path).default == option.default, (name, path)


def test_build_spec_takes_options_by_name_only(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        build_spec("azure")  # type: ignore[misc]
    with pytest.raises(TypeError, match="no option named trails"):
        build_spec(trails=3)
    spec = build_spec(backend="local", home=tmp_path, trial_timeout=60, timeout=600)
    assert (spec.sweep.timeout_s, spec.sweep.trial_timeout_s) == (600, 60)


def test_a_refused_value_names_the_option_the_user_typed(specs: list[PipelineSpec]) -> None:
    result = CliRunner().invoke(app, ["run", "--trials", "5000", "--endpoint-name", "x"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "invalid settings: --trials (sweep.max_total_trials): Input should be less than or equal to 1000" in result.output
    assert "--endpoint-name (deploy.endpoint_name)" in result.output and result.output.count("error:") == 1
    result = CliRunner().invoke(app, ["run", "--threshold", "half"])
    assert result.exit_code == 1 and "--threshold 'half': give 0.5, auto, or a probability" in result.output
    assert not specs
