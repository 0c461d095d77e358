"""The search space's distributions, each defined once: its fields (with the meaning and the rules of
``azure.ai.ml.sweep``), how it samples a value here (grid, random), the Azure ML class of the same meaning
(``azure_form``), the values a pre-submit check tries (``extremes``) and a placeholder for a command input.
"""

from __future__ import annotations

import abc
import math
from typing import Annotated, Any, ClassVar, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator


def _q(value: float, q: float) -> float:
    """``value`` rounded to a multiple of ``q``, as Azure ML's q-distributions round."""
    return float(np.round(value / q) * q)


def _python_scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


class _Dist(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    azure_class: ClassVar[str]  # the azure.ai.ml.sweep class of the same meaning

    @abc.abstractmethod
    def sample(self, rng: np.random.Generator) -> Any:
        """One value, drawn as the Azure ML distribution draws it."""

    @abc.abstractmethod
    def extremes(self) -> list[Any]:
        """The values a check tries: every choice, else the ends of its range (the centre of an unbounded
        normal), typed as a sampled value (floats for all but choice and randint)."""

    @abc.abstractmethod
    def placeholder(self) -> Any:
        """A default for a command's input (the first choice, else the range's low end or the centre);
        a sweep replaces it with the sampled value."""

    def azure_form(self) -> tuple[str, dict[str, Any]]:
        """(the azure.ai.ml.sweep class name, its keyword arguments): the same fields, the same meaning."""
        return self.azure_class, self.model_dump(exclude={"type"})


class Choice(_Dist):
    azure_class = "Choice"
    type: Literal["choice"] = "choice"
    values: list[Any] = Field(min_length=1)

    def sample(self, rng: np.random.Generator) -> Any:
        return _python_scalar(self.values[int(rng.integers(len(self.values)))])

    def extremes(self) -> list[Any]:
        return list(self.values)

    def placeholder(self) -> Any:
        return self.values[0]


class Randint(_Dist):
    """An integer in [0, upper), as azure.ai.ml.sweep.Randint."""

    azure_class = "Randint"
    type: Literal["randint"] = "randint"
    upper: int = Field(gt=0)

    def sample(self, rng: np.random.Generator) -> Any:
        return int(rng.integers(self.upper))

    def extremes(self) -> list[Any]:
        return [0, self.upper - 1]

    def placeholder(self) -> Any:
        return 0


class Uniform(_Dist):
    azure_class = "Uniform"
    type: Literal["uniform"] = "uniform"
    min_value: float
    max_value: float

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        if self.min_value >= self.max_value:
            raise ValueError(f"min_value ({self.min_value}) must be below max_value ({self.max_value})")
        return self

    def sample(self, rng: np.random.Generator) -> Any:
        return float(rng.uniform(self.min_value, self.max_value))

    def extremes(self) -> list[Any]:
        return [float(self.min_value), float(self.max_value)]

    def placeholder(self) -> Any:
        return float(self.min_value)


class LogUniform(Uniform):
    """exp(uniform(min_value, max_value)), as azure.ai.ml.sweep.LogUniform."""

    azure_class = "LogUniform"
    type: Literal["loguniform"] = "loguniform"  # type: ignore[assignment] # a narrower tag than its base: the discriminator

    def sample(self, rng: np.random.Generator) -> Any:
        return float(math.exp(rng.uniform(self.min_value, self.max_value)))

    def extremes(self) -> list[Any]:
        return [math.exp(self.min_value), math.exp(self.max_value)]


class QUniform(Uniform):
    azure_class = "QUniform"
    type: Literal["quniform"] = "quniform"  # type: ignore[assignment] # a narrower tag than its base: the discriminator
    q: float = Field(gt=0)

    def sample(self, rng: np.random.Generator) -> Any:
        return _q(rng.uniform(self.min_value, self.max_value), self.q)

    def extremes(self) -> list[Any]:
        return [_q(self.min_value, self.q), _q(self.max_value, self.q)]


class QLogUniform(Uniform):
    azure_class = "QLogUniform"
    type: Literal["qloguniform"] = "qloguniform"  # type: ignore[assignment] # a narrower tag than its base: the discriminator
    q: float = Field(gt=0)

    def sample(self, rng: np.random.Generator) -> Any:
        return _q(math.exp(rng.uniform(self.min_value, self.max_value)), self.q)

    def extremes(self) -> list[Any]:
        return [_q(math.exp(self.min_value), self.q), _q(math.exp(self.max_value), self.q)]


class Normal(_Dist):
    azure_class = "Normal"
    type: Literal["normal"] = "normal"
    mu: float
    sigma: float = Field(gt=0)

    def sample(self, rng: np.random.Generator) -> Any:
        return float(rng.normal(self.mu, self.sigma))

    def extremes(self) -> list[Any]:
        return [float(self.mu)]

    def placeholder(self) -> Any:
        return float(self.mu)


class LogNormal(Normal):
    azure_class = "LogNormal"
    type: Literal["lognormal"] = "lognormal"  # type: ignore[assignment] # a narrower tag than its base: the discriminator

    def sample(self, rng: np.random.Generator) -> Any:
        return float(math.exp(rng.normal(self.mu, self.sigma)))

    def extremes(self) -> list[Any]:
        return [math.exp(self.mu)]


class QNormal(Normal):
    azure_class = "QNormal"
    type: Literal["qnormal"] = "qnormal"  # type: ignore[assignment] # a narrower tag than its base: the discriminator
    q: float = Field(gt=0)

    def sample(self, rng: np.random.Generator) -> Any:
        return _q(rng.normal(self.mu, self.sigma), self.q)

    def extremes(self) -> list[Any]:
        return [_q(self.mu, self.q)]


class QLogNormal(Normal):
    azure_class = "QLogNormal"
    type: Literal["qlognormal"] = "qlognormal"  # type: ignore[assignment] # a narrower tag than its base: the discriminator
    q: float = Field(gt=0)

    def sample(self, rng: np.random.Generator) -> Any:
        return _q(math.exp(rng.normal(self.mu, self.sigma)), self.q)

    def extremes(self) -> list[Any]:
        return [_q(math.exp(self.mu), self.q)]


DISTRIBUTIONS: tuple[type[_Dist], ...] = (Choice, Randint, Uniform, LogUniform, QUniform, QLogUniform, Normal, LogNormal,
                                          QNormal, QLogNormal)
Distribution = Annotated[
    Union[Choice, Randint, Uniform, LogUniform, QUniform, QLogUniform, Normal, LogNormal, QNormal, QLogNormal],
    Field(discriminator="type"),
]
_READER: TypeAdapter[Any] = TypeAdapter(Distribution)


def distribution_of(fields: dict[str, Any]) -> Any:
    """The spec distribution of ``{"type": ..., <fields>}`` (an Azure ML sweep expression's fields, or a spec's)."""
    return _READER.validate_python(fields)
