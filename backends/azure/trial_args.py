"""A trial's command line checked before anything is submitted: each search-space dimension's extreme
values, written as Azure ML renders a sampled value into ``${{inputs.<name>}}`` (a q-distribution's integer
as ``50.0``), read by model_train.py's own parser, typed as a trial types them, and validated by the
estimator (scikit-learn's parameter validation). What only failed trials would show otherwise: an argument
the script cannot parse, or a value the estimator refuses (say, a randint that can draw 0 trees).
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from typing import Any

from backends.azure.code import TRAIN_COMMAND
from backends.azure.entities import training_command
from backends.domain.spec import SweepSpec
from src.features import FAMILIES, FAMILY_PARAM, family_of, split_parameter, to_estimator_params


_INPUT = re.compile(r"\$\{\{inputs\.(\w+)\}\}")


def _render(template: str, values: dict[str, str]) -> str:
    """``template`` with each ``${{inputs.<name>}}`` replaced by its value, as Azure ML fills the command."""
    return _INPUT.sub(lambda match: values[match.group(1)], template)


def rendered(value: Any) -> str:
    """A sampled value as Azure ML writes it into the command line."""
    return repr(value) if isinstance(value, float) else str(value)


def probe_values(dist: Any) -> list[Any]:
    """The values a dimension's check tries (``Distribution.extremes``): every choice, else the ends of its
    range (the centre of an unbounded normal), as the distribution samples them."""
    return dist.extremes()


def trial_argument_problems(spec: SweepSpec) -> list[tuple[str, str, str]]:
    """(search-space name, the value as rendered, what model_train.py or the estimator said) per refused
    value. Each value is checked alone against its own parameter's constraints, so one bad dimension is
    never blamed on another."""
    from sklearn.utils._param_validation import InvalidParameterError, validate_parameter_constraints

    from src import model_train

    template = training_command(spec)
    base = {name: probe_values(dist)[0] for name, dist in spec.search_space.items()}
    fixed = {"input_data": "data.csv", "model_name": "model", "test_size": "0.3", "random_state": "0", "seed": "0",
             "validation": "split", "folds": "2"}
    problems: list[tuple[str, str, str]] = []
    for name, dist in spec.search_space.items():
        for value in probe_values(dist):
            values = {**fixed, **{k: rendered(v) for k, v in {**base, name: value}.items()}}
            argv = shlex.split(_render(template, values))[len(TRAIN_COMMAND):]
            errors = io.StringIO()
            try:
                with contextlib.redirect_stderr(errors):
                    params = model_train.trial_params(model_train.parse_args(argv))
                if name == FAMILY_PARAM:
                    family_of(params)
                    continue
                family, arg = split_parameter(name)
                estimator: Any = FAMILIES[family]
                typed = to_estimator_params({name: params[name]}, family)
                validate_parameter_constraints({arg: estimator._parameter_constraints[arg]}, typed,
                                               caller_name=estimator.__name__)
            except SystemExit:
                said = errors.getvalue().strip().splitlines()
                problems.append((name, rendered(value), said[-1] if said else "model_train.py's parser refused it"))
            except (InvalidParameterError, ValueError, TypeError, KeyError) as exc:
                problems.append((name, rendered(value), str(exc).splitlines()[0]))
    return problems
