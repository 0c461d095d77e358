"""Each search distribution is defined once (backends/domain/distributions.py) with its sampling here and its
Azure ML form: every one round-trips through azure.ai.ml.sweep, and samples what the Azure form means."""

from __future__ import annotations

import math

import numpy as np
import pytest

from backends.azure.entities import translate_distribution
from backends.azure.trial_args import probe_values
from backends.domain.distributions import DISTRIBUTIONS, distribution_of
from backends.domain.search import sample_one
from backends.domain.spec import (
    SAMPLING_ACCEPTS, Choice, LogNormal, LogUniform, Normal, QLogNormal, QLogUniform, QNormal, QUniform, Randint, Uniform,
)

EXAMPLES = [
    Choice(values=["gini", "entropy", "log_loss"]), Randint(upper=7), Uniform(min_value=0.1, max_value=0.9),
    LogUniform(min_value=-3.0, max_value=0.0), QUniform(min_value=10, max_value=200, q=10),
    QLogUniform(min_value=1.0, max_value=5.0, q=5), Normal(mu=0.5, sigma=0.1), LogNormal(mu=0.0, sigma=0.5),
    QNormal(mu=50, sigma=10, q=5), QLogNormal(mu=3.0, sigma=0.5, q=2),
]


def in_support(dist, value) -> bool:  # what the Azure ML distribution of that name can draw
    kind = dist.type
    if kind == "choice":
        return value in dist.values
    if kind == "randint":
        return isinstance(value, int) and 0 <= value < dist.upper
    on_grid = math.isclose(value / dist.q, round(value / dist.q)) if hasattr(dist, "q") else True
    if kind in ("uniform", "quniform"):
        return dist.min_value - getattr(dist, "q", 0) / 2 <= value <= dist.max_value + getattr(dist, "q", 0) / 2 and on_grid
    if kind in ("loguniform", "qloguniform"):
        low, high = math.exp(dist.min_value), math.exp(dist.max_value)
        return low - getattr(dist, "q", 0) / 2 <= value <= high + getattr(dist, "q", 0) / 2 and on_grid
    if kind in ("lognormal", "qlognormal"):
        return value >= 0 and on_grid
    return isinstance(value, float) and on_grid  # normal, qnormal


def test_the_examples_cover_every_distribution_once() -> None:
    assert [type(d) for d in EXAMPLES] == list(DISTRIBUTIONS)
    assert {d.type for d in EXAMPLES} == SAMPLING_ACCEPTS["random"]


@pytest.mark.parametrize("dist", EXAMPLES, ids=lambda d: d.type)
def test_each_distribution_round_trips_through_its_azure_form(dist) -> None:
    azure = translate_distribution(dist)
    assert type(azure).__module__.startswith("azure.ai.ml") and azure.type == dist.type
    fields = {k: v for k, v in vars(azure).items() if not k.startswith("_")}
    assert distribution_of(fields) == dist


@pytest.mark.parametrize("dist", EXAMPLES, ids=lambda d: d.type)
def test_each_distribution_samples_what_its_azure_form_means(dist) -> None:
    rng = np.random.default_rng(7)
    values = [sample_one(dist, rng) for _ in range(300)]
    assert all(in_support(dist, v) for v in values), [v for v in values if not in_support(dist, v)][:3]
    assert all(in_support(dist, v) for v in probe_values(dist)) and dist.placeholder() is not None
    if dist.type not in ("choice", "randint"):
        assert all(isinstance(v, float) for v in values + probe_values(dist))
