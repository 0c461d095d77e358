"""Turning a search-space spec into trial parameters: grid, seeded random, and Bayesian (Optuna TPE).

Every sampler numbers its trials from 0 and gives the same parameters for the same number and seed,
so a sweep that is rerun (or resumed after a crash) asks for exactly the same trials.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any, Literal, Protocol

import numpy as np

from backends.errors import ConfigurationError
from backends.domain.spec import (
    Choice,
    QUniform,
    SweepSpec,
    Uniform,
)
from src.features import FAMILIES, FAMILY_PARAM, tunable_parameters


class ParameterSampler(Protocol):
    def ask(self) -> tuple[int, dict[str, Any]] | None:
        """The next trial's number and parameters, or None when the sweep has asked for all."""

    def tell(self, number: int, value: float | None) -> None:
        """The primary metric of a finished trial (None: it failed)."""


def check_search_space(spec: SweepSpec) -> None:
    """Names must be parameters of a model family (``model`` picks the family; unprefixed names are the
    random forest's, ``hgb__*`` and ``logreg__*`` the other families'); Choice values must be scalars."""
    known = tunable_parameters()
    unknown = sorted(set(spec.search_space) - known)
    if unknown:
        raise ConfigurationError(
            f"search_space names {unknown} are not parameters of a model family: use model (one of "
            f"{', '.join(FAMILIES)}), RandomForestClassifier's names as they are, and "
            f"HistGradientBoostingClassifier's or LogisticRegression's as hgb__<name> or logreg__<name>"
        )
    family = spec.search_space.get(FAMILY_PARAM)
    if family is not None:
        values = getattr(family, "values", None)
        if values is None or any(v not in FAMILIES for v in values):
            raise ConfigurationError(
                f"search_space.{FAMILY_PARAM} must be a choice among {', '.join(FAMILIES)}; got {family.model_dump()}"
            )
    for name, dist in spec.search_space.items():
        if isinstance(dist, Choice):
            for value in dist.values:
                if not (value is None or isinstance(value, (int, float, str, bool))):
                    raise ConfigurationError(f"search_space.{name}: choice values must be numbers or strings, got {value!r}")


def grid_points(spec: SweepSpec) -> list[dict[str, Any]]:
    """Every combination, in the spec's dimension order (the last dimension varies fastest)."""
    names = list(spec.search_space)
    values: list[list[Any]] = []
    for name in names:
        dimension = spec.search_space[name]
        if not isinstance(dimension, Choice):
            raise ConfigurationError(f"search_space.{name}: grid sampling takes only choice dimensions")
        values.append(dimension.values)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]


def _python_scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def sample_one(dist: Any, rng: np.random.Generator) -> Any:
    """Draw one value with the meaning of the matching azure.ai.ml.sweep distribution (``Distribution.sample``)."""
    return dist.sample(rng)


def random_point(spec: SweepSpec, number: int) -> dict[str, Any]:
    """Trial ``number``'s parameters: a generator seeded by (seed, number), so trials do not depend on
    the order they are asked in."""
    rng = np.random.default_rng([spec.seed, number])
    return {name: sample_one(dist, rng) for name, dist in spec.search_space.items()}


def random_points(spec: SweepSpec) -> list[dict[str, Any]]:
    """Seeded random trials. When every dimension is a Choice the space is finite, and random sampling
    draws without replacement (a seeded permutation of the grid), so no combination runs twice."""
    if spec.grid_size() is not None:
        points = grid_points(spec)
        order = np.random.default_rng(spec.seed).permutation(len(points))
        return [points[i] for i in order[: spec.max_total_trials]]
    return [random_point(spec, n) for n in range(spec.max_total_trials)]


class ListSampler:
    """Grid or random: the trials are known up front."""

    def __init__(self, points: list[dict[str, Any]], skip: Mapping[int, Any] | None = None) -> None:
        self._points = points
        self._next = 0
        self._skip = set(skip or ())

    def ask(self) -> tuple[int, dict[str, Any]] | None:
        while self._next < len(self._points) and self._next in self._skip:
            self._next += 1
        if self._next >= len(self._points):
            return None
        number = self._next
        self._next += 1
        return number, dict(self._points[number])

    def tell(self, number: int, value: float | None) -> None:
        return None


class BayesianSampler:
    """Optuna's TPE sampler behind ask/tell; finished trials of an earlier attempt are told first."""

    def __init__(self, spec: SweepSpec, done: Mapping[int, tuple[dict[str, Any], float | None]] | None = None) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._spec = spec
        self._optuna = optuna
        direction: Literal["maximize", "minimize"] = "maximize" if spec.goal == "maximize" else "minimize"
        self._study = optuna.create_study(direction=direction, sampler=optuna.samplers.TPESampler(seed=spec.seed))
        self._distributions = {name: self._to_optuna(dist) for name, dist in spec.search_space.items()}
        self._pending: dict[int, Any] = {}
        self._done = dict(done or {})
        self._next = 0
        for number in sorted(self._done):
            params, value = self._done[number]
            internal = {n: self._to_internal(n, v) for n, v in params.items() if n in self._distributions}
            state = optuna.trial.TrialState.COMPLETE if value is not None else optuna.trial.TrialState.FAIL
            self._study.add_trial(
                optuna.trial.create_trial(
                    params=internal, distributions=self._distributions, value=value, state=state
                )
            )

    def _to_optuna(self, dist: Any) -> Any:
        d = self._optuna.distributions
        if isinstance(dist, Choice):
            return d.CategoricalDistribution([_python_scalar(v) for v in dist.values])
        if isinstance(dist, (QUniform, Uniform)):
            return d.FloatDistribution(dist.min_value, dist.max_value)
        raise ConfigurationError(f"bayesian sampling does not accept {dist.type}")

    def _to_internal(self, name: str, value: Any) -> Any:
        dist = self._spec.search_space[name]
        return float(value) if isinstance(dist, Uniform) else value

    def _to_external(self, name: str, value: Any) -> Any:
        dist = self._spec.search_space[name]
        if isinstance(dist, QUniform):
            return float(np.round(value / dist.q) * dist.q)
        return value

    def ask(self) -> tuple[int, dict[str, Any]] | None:
        while self._next in self._done:
            self._next += 1
        if self._next >= self._spec.max_total_trials:
            return None
        trial = self._study.ask(self._distributions)
        number = self._next
        self._next += 1
        self._pending[number] = trial
        return number, {n: self._to_external(n, v) for n, v in trial.params.items()}

    def tell(self, number: int, value: float | None) -> None:
        trial = self._pending.pop(number, None)
        if trial is None:
            return
        if value is None or math.isnan(value):
            self._study.tell(trial, state=self._optuna.trial.TrialState.FAIL)
        else:
            self._study.tell(trial, value)


def planned_trials(spec: SweepSpec) -> int:
    """How many trials the sweep will run: the grid caps max_total_trials."""
    size = spec.grid_size() if spec.sampling in {"grid", "random"} else None
    return min(spec.max_total_trials, size) if size is not None else spec.max_total_trials


def make_sampler(
    spec: SweepSpec, done: Mapping[int, tuple[dict[str, Any], float | None]] | None = None
) -> ParameterSampler:
    """A sampler for ``spec``; ``done`` maps trial numbers already finished (resume) to (params, value)."""
    check_search_space(spec)
    if spec.sampling == "grid":
        return ListSampler(grid_points(spec)[: planned_trials(spec)], skip=done)
    if spec.sampling == "random":
        return ListSampler(random_points(spec), skip=done)
    return BayesianSampler(spec, done)
