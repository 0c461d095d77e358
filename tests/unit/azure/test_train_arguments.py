"""model_train.py reads its search-space arguments as Azure ML renders sampled values (a q-distribution's
integer as "50.0", a numeric max_features as "0.5", None as "None") and values them as a local trial would:
parsed as JSON numbers, then typed by to_estimator_params. One case per distribution type of the spec
(tests/sweep_renderings.py); the same cases run in the Environment's package set in
tests/integration/azure/test_environment_venv.py."""

from __future__ import annotations

import pytest

from src import model_train
from src.features import HEART_SCHEMA, build_pipeline, parse_param_text
from tests.sweep_renderings import RENDERINGS, Rendering


@pytest.mark.parametrize("case", RENDERINGS, ids=lambda c: c.name)
def test_the_command_line_azure_renders_gives_the_local_estimator_arguments(case: Rendering) -> None:
    args = model_train.parse_args(case.argv("data.csv"))
    classifier = build_pipeline(HEART_SCHEMA, model_train.trial_params(args), args.seed).named_steps["classifier"]
    assert type(classifier).__name__ == case.estimator
    got = {name: classifier.get_params()[name] for name in case.expected}
    assert got == case.expected
    assert all(type(got[n]) is type(v) for n, v in case.expected.items()), got  # 50, not 50.0 nor "50"


def test_every_distribution_type_of_the_spec_is_covered() -> None:
    from typing import get_args

    from backends.domain.spec import Distribution

    kinds = {c.model_fields["type"].default for c in get_args(get_args(Distribution)[0])}
    covered = {d["type"] for case in RENDERINGS for d in case.search_space.values()}
    assert len(kinds) == 10 and kinds <= covered, (kinds, kinds - covered)


@pytest.mark.parametrize(("text", "value"), [
    ("50", 50), ("50.0", 50.0), ("0.5", 0.5), ("-1", -1), ("1e-3", 0.001), ("sqrt", "sqrt"), ("None", None),
    ("null", None), ("True", True), ("false", False), ("log2", "log2"), ("[1, 2]", "[1, 2]"), ('"x"', '"x"'),
])
def test_parse_param_text(text: str, value: object) -> None:
    assert parse_param_text(text) == value and type(parse_param_text(text)) is type(value)


@pytest.mark.parametrize("case", RENDERINGS, ids=lambda c: c.name)
def test_the_dry_run_passes_every_case(case: Rendering) -> None:
    from backends.azure.trial_args import trial_argument_problems

    assert trial_argument_problems(case.spec()) == []


def test_the_dry_run_refuses_a_value_a_trial_would_fail_with(settings: object) -> None:
    """A randint can draw 0 trees; a uniform max_features can reach 0.0: each is named, with the estimator's
    own words, before anything is submitted (the others pass)."""
    from backends.azure.limits import check_limits
    from backends.domain.spec import PipelineSpec, SweepSpec

    spec = SweepSpec.model_validate({"sampling": "random", "search_space": {
        "n_estimators": {"type": "randint", "upper": 50},
        "max_features": {"type": "uniform", "min_value": 0.0, "max_value": 0.9},
        "max_depth": {"type": "quniform", "min_value": 2, "max_value": 12, "q": 2}}})
    violations = {v.field: v for v in check_limits(PipelineSpec(backend="azure", sweep=spec), settings)}  # type: ignore[arg-type]
    assert set(violations) == {"search_space.n_estimators", "search_space.max_features"}
    assert "Got 0 instead" in violations["search_space.n_estimators"].rule
    assert violations["search_space.max_features"].value == "0.0"
