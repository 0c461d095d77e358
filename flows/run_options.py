"""The options of `heartflow run`, each bound by name to the PipelineSpec field it sets.

One table (``RUN_OPTIONS``) maps a command-line option to its field path in the spec. The option's type,
default and help come from the field itself (``PipelineSpec``'s pydantic Field), so a default or a
description lives in one place, the same in the CLI, the Prefect UI's form and a deployment's parameters.
``build_spec`` takes the options by name only and lets the spec model validate them; a refusal names the
option the user typed.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import typer
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from backends.domain.spec import PipelineSpec
from backends.errors import ConfigurationError
from flows.cli_common import resolve_home


def spec_field(path: str) -> FieldInfo:
    """The pydantic field at ``path`` ("sweep.validation.folds") of PipelineSpec; a key of a mapping field
    ("azure_overrides.compute") is the mapping's field."""
    model: Any = PipelineSpec
    field: FieldInfo | None = None
    for part in path.split("."):
        if not (isinstance(model, type) and hasattr(model, "model_fields")):
            break  # a key inside a mapping field
        field = model.model_fields[part]
        model = field.annotation
    assert field is not None, path
    return field


@dataclass(frozen=True)
class SpecOption:
    """One option of `heartflow run` and the spec field(s) it sets.

    ``value_type`` and ``help`` are given only where the field cannot say them (a union typer does not parse,
    a key of a mapping); ``to_spec`` turns the typed text into the field's value where they differ."""

    flag: str
    paths: tuple[str, ...]
    value_type: Any = None
    help: str | None = None
    to_spec: Callable[[Any], Any] | None = None

    @property
    def field(self) -> FieldInfo:
        return spec_field(self.paths[0])

    @property
    def python_type(self) -> Any:
        return self.value_type if self.value_type is not None else self.field.annotation

    @property
    def default(self) -> Any:
        if self.paths[0].startswith("azure_overrides."):
            return None  # a key of the overrides: absent unless given
        return self.field.get_default(call_default_factory=True)

    def typer_option(self) -> Any:
        return typer.Option(self.default, self.flag, help=self.help or self.field.description)


def threshold_option(text: str | None) -> float | Literal["auto"] | None:
    """--threshold: auto, or a number (the spec checks its range)."""
    if text is None or text.strip().lower() == "auto":
        return None if text is None else "auto"
    try:
        return float(text)
    except ValueError:
        raise ConfigurationError(f"--threshold {text!r}: give 0.5, auto, or a probability between 0 and 1") from None


# Parameter name -> option. The order is the order of `heartflow run --help`.
RUN_OPTIONS: dict[str, SpecOption] = {
    "backend": SpecOption("--backend", ("backend",)),
    "home": SpecOption("--home", ("home",)),
    "data": SpecOption("--data", ("data.path",)),
    "folder_rule": SpecOption("--folder-rule", ("data.folder_rule",)),
    "force": SpecOption("--force", ("data.force",)),
    "retrain_on": SpecOption("--retrain-on", ("data.retrain_on",)),
    "schema": SpecOption("--schema", ("data.schema_path",)),
    "target": SpecOption("--target", ("data.target",)),
    "positive_class": SpecOption("--positive-class", ("data.positive_class",)),
    "trials": SpecOption("--trials", ("sweep.max_total_trials",)),
    "concurrency": SpecOption("--concurrency", ("sweep.max_concurrent_trials",)),
    "sampling": SpecOption("--sampling", ("sweep.sampling",)),
    "seed": SpecOption("--seed", ("sweep.seed", "data.seed")),
    "validation": SpecOption("--validation", ("sweep.validation.method",)),
    "folds": SpecOption("--folds", ("sweep.validation.folds",)),
    "timeout": SpecOption("--timeout", ("sweep.timeout_s",)),
    "trial_timeout": SpecOption("--trial-timeout", ("sweep.trial_timeout_s",)),
    "metric": SpecOption("--metric", ("sweep.metric",)),
    "threshold": SpecOption("--threshold", ("sweep.threshold",), value_type=str | None, to_spec=threshold_option),
    "model_name": SpecOption("--model-name", ("model_name",)),
    "endpoint_name": SpecOption("--endpoint-name", ("deploy.endpoint_name",)),
    "port": SpecOption("--port", ("deploy.port",)),
    "workers": SpecOption("--workers", ("deploy.workers",)),
    "tolerance": SpecOption("--tolerance", ("deploy.promotion_tolerance",)),
    "gate": SpecOption("--gate", ("deploy.gate",)),
    "gate_alpha": SpecOption("--gate-alpha", ("deploy.gate_alpha",)),
    "shadow": SpecOption("--shadow", ("deploy.shadow_seconds",)),
    "shadow_min_requests": SpecOption("--shadow-min-requests", ("deploy.shadow_min_requests",)),
    "max_disagreement": SpecOption("--max-disagreement", ("deploy.max_disagreement",)),
    "watch": SpecOption("--watch", ("deploy.watch_seconds",)),
    "stop_endpoint": SpecOption("--stop-endpoint", ("deploy.stop_endpoint",)),
    "capture_rate": SpecOption("--capture-rate", ("deploy.capture_rate",)),
    "dry_run": SpecOption("--dry-run", ("dry_run",)),
    "compute": SpecOption("--compute", ("azure_overrides.compute",), value_type=str | None,
                          help="Azure compute cluster name"),
    "instance_type": SpecOption("--instance-type", ("deploy.instance_type",)),
    "tracking_uri": SpecOption("--tracking-uri", ("tracking_uri",)),
    "artifact_root": SpecOption("--artifact-root", ("artifact_root",)),
}


def with_run_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give ``command`` (whose ``**options`` receives them) one typer option per entry of RUN_OPTIONS,
    before its own parameters: typer reads a command's options from its signature."""
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    bound = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option.typer_option(),
                               annotation=option.python_type) for name, option in RUN_OPTIONS.items()]
    context = [p for p in own if p.name == "ctx"]
    rest = [p for p in own if p.name != "ctx"]
    positional = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in rest]
    command.__signature__ = inspect.Signature(context + bound + positional)  # type: ignore[attr-defined]
    command.__annotations__ = {**command.__annotations__, **{n: o.python_type for n, o in RUN_OPTIONS.items()}}
    return command


def _set(tree: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


def _flag_of(location: tuple[Any, ...]) -> str:
    """The option that set the field at ``location`` (a pydantic error's loc), or the field's path."""
    path = ".".join(map(str, location))
    flags = [(p, o.flag) for o in RUN_OPTIONS.values() for p in o.paths] + [("sweep.search_space", "--search-space")]
    for prefix, flag in flags:
        if path == prefix or path.startswith(prefix + "."):
            return f"{flag} ({path})"
    return path


def build_spec(*, search_space: Mapping[str, Any] | None = None, **options: Any) -> PipelineSpec:
    """The PipelineSpec of `heartflow run`'s options, given by name (RUN_OPTIONS' keys; an option left out
    keeps the spec's default). A None leaves the field at its default; the local home is resolved."""
    unknown = sorted(set(options) - set(RUN_OPTIONS))
    if unknown:
        raise TypeError(f"build_spec: no option named {', '.join(unknown)}; the options are RUN_OPTIONS' keys")
    tree: dict[str, Any] = {}
    for name, value in options.items():
        option = RUN_OPTIONS[name]
        value = option.to_spec(value) if option.to_spec is not None else value
        if isinstance(value, Path):
            value = str(value)
        if value is None:
            continue
        for path in option.paths:
            _set(tree, path, value)
    if search_space is not None:
        _set(tree, "sweep.search_space", dict(search_space))
    local = tree.get("backend", spec_field("backend").default) == "local"
    tree["home"] = str(resolve_home(tree.get("home"))) if local else None
    try:
        spec = PipelineSpec.model_validate(tree)
    except ValidationError as exc:
        problems = "; ".join(f"{_flag_of(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigurationError(f"invalid settings: {problems}") from None
    from backends.domain.search import check_search_space

    check_search_space(spec.sweep)
    return spec
