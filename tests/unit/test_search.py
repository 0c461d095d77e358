"""Search-space rules and samplers: grid size and order, seeds, Azure's limits."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from backends.errors import ConfigurationError
from backends.domain.search import grid_points, make_sampler, planned_trials
from backends.domain.spec import (
    Choice,
    LogUniform,
    Normal,
    QUniform,
    Randint,
    SweepSpec,
    Uniform,
    tutorial_search_space,
)


def _drain(sampler) -> list[tuple[int, dict]]:
    out = []
    while (asked := sampler.ask()) is not None:
        out.append(asked)
        sampler.tell(asked[0], 0.5)
    return out


def test_tutorial_grid_has_100_combinations_in_a_fixed_order() -> None:
    spec = SweepSpec(sampling="grid", max_total_trials=1000)
    points = grid_points(spec)
    assert spec.grid_size() == 100 == len(points) == planned_trials(spec)
    assert len({tuple(sorted(p.items())) for p in points}) == 100
    assert points[0] == {"n_estimators": 10, "max_depth": 4, "criterion": "gini", "max_features": "sqrt"}
    assert [n for n, _ in _drain(make_sampler(spec))] == list(range(100))


def test_grid_is_capped_by_max_total_trials() -> None:
    assert len(_drain(make_sampler(SweepSpec(sampling="grid", max_total_trials=7)))) == 7


def test_random_on_a_finite_space_never_repeats_and_is_seeded() -> None:
    first = _drain(make_sampler(SweepSpec(sampling="random", max_total_trials=25, seed=1)))
    again = _drain(make_sampler(SweepSpec(sampling="random", max_total_trials=25, seed=1)))
    other = _drain(make_sampler(SweepSpec(sampling="random", max_total_trials=25, seed=2)))
    assert first == again != other
    assert len({tuple(sorted(p.items())) for _, p in first}) == 25


def test_random_continuous_distributions_stay_in_range() -> None:
    spec = SweepSpec(
        sampling="random", max_total_trials=200,
        search_space={
            "n_estimators": Randint(upper=50),
            "min_weight_fraction_leaf": Uniform(min_value=0.0, max_value=0.4),
            "ccp_alpha": LogUniform(min_value=-6, max_value=-1),
            "max_samples": QUniform(min_value=0.2, max_value=0.9, q=0.1),
            "min_impurity_decrease": Normal(mu=0.0, sigma=0.01),
        },
    )
    trials = _drain(make_sampler(spec))
    assert len(trials) == 200
    for _, p in trials:
        assert 0 <= p["n_estimators"] < 50 and isinstance(p["n_estimators"], int)
        assert 0.0 <= p["min_weight_fraction_leaf"] <= 0.4
        assert 2.4e-3 <= p["ccp_alpha"] <= 0.37
        assert abs(p["max_samples"] * 10 - round(p["max_samples"] * 10)) < 1e-9
    assert trials == _drain(make_sampler(spec))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sampling": "grid", "search_space": {"n_estimators": Randint(upper=5)}}, "grid sampling accepts only choice"),
        ({"sampling": "bayesian", "search_space": {"ccp_alpha": LogUniform(min_value=-3, max_value=-1)}}, "bayesian sampling accepts only choice, quniform, uniform"),
        ({"max_total_trials": 0}, "greater than or equal to 1"),
        ({"max_total_trials": 1001}, "less than or equal to 1000"),
        ({"search_space": {}}, "search space is empty"),
        ({"search_space": {"x": {"type": "uniform", "min_value": 2, "max_value": 1}}}, "must be below"),
    ],
)
def test_azure_rules_are_enforced_on_the_spec(kwargs: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SweepSpec(**kwargs)


def test_unknown_hyperparameter_is_a_configuration_error() -> None:
    spec = SweepSpec(search_space={**tutorial_search_space(), "learning_rate": Choice(values=[0.1])})
    with pytest.raises(ConfigurationError, match="learning_rate"):
        make_sampler(spec)


def test_bayesian_is_seeded_and_resumes_from_finished_trials() -> None:
    spec = SweepSpec(sampling="bayesian", max_total_trials=8, seed=3)
    first = _drain(make_sampler(spec))
    assert first == _drain(make_sampler(spec))
    assert [n for n, _ in first] == list(range(8))
    done = {n: (p, 0.5) for n, p in first[:5]}
    resumed = _drain(make_sampler(spec, done))
    assert [n for n, _ in resumed] == [5, 6, 7]


def test_model_families_widen_the_space_and_the_default_stays_the_tutorials() -> None:
    from backends.domain.spec import family_search_space

    assert family_search_space(["rf"]) == tutorial_search_space()
    wide = family_search_space(["rf", "hgb", "logreg"])
    assert wide["model"].values == ["rf", "hgb", "logreg"] and "hgb__learning_rate" in wide and "logreg__C" in wide
    make_sampler(SweepSpec(search_space=wide))  # accepted
    with pytest.raises(ConfigurationError, match="unknown model family"):
        family_search_space(["rf", "xgb"])


@pytest.mark.parametrize(("space", "message"), [
    ({"model": Choice(values=["rf", "svm"])}, "must be a choice among rf, hgb, logreg"),
    ({"model": Choice(values=["rf"]), "hgb__no_such": Choice(values=[1])}, "not parameters of a model family"),
    ({"learning_rate": Choice(values=[0.1])}, "hgb__<name>"),
])
def test_family_spaces_are_checked(space: dict, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make_sampler(SweepSpec(search_space=space))


def test_each_family_gets_only_its_own_parameters() -> None:
    from src.features import build_pipeline, to_estimator_params

    params = {"model": "hgb", "n_estimators": 50, "max_depth": 4, "hgb__max_depth": -1, "hgb__learning_rate": 0.3, "logreg__C": 2.0}
    assert to_estimator_params(params, "hgb") == {"max_depth": None, "learning_rate": 0.3}
    assert to_estimator_params(params, "rf") == {"n_estimators": 50, "max_depth": 4}
    assert to_estimator_params(params, "logreg") == {"C": 2.0}
    from src.features import HEART_SCHEMA

    classifier = build_pipeline(HEART_SCHEMA, params, seed=3).steps[-1][1]
    assert type(classifier).__name__ == "HistGradientBoostingClassifier"
    assert classifier.learning_rate == 0.3 and classifier.max_depth is None and classifier.random_state == 3
