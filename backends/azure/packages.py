"""The pip packages of the Azure ML Environment: the packages training and serving import, and everything
they need, each pinned to the version installed here.

Pinning the whole closure (not only the top-level names) makes the cluster, the endpoint and a local run
share one package set, so a model trained on one loads on the others and a new release of a transitive
dependency cannot change what a job runs. Markers are evaluated for the Environment's platform (Linux,
x86_64, the Environment's Python), not for the machine that builds the plan.
"""

from __future__ import annotations

import functools
import logging
import sys
from importlib.metadata import PackageNotFoundError, distribution
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from backends.errors import ConfigurationError

logger = logging.getLogger(__name__)

# What src/ imports on the compute and the endpoint (numba: the endpoint's forest kernel), plus the plugin that lets MLflow log to an Azure ML
# workspace (jobs set MLFLOW_TRACKING_URI to azureml://...) and the scoring server of managed endpoints.
ENVIRONMENT_PACKAGES: tuple[str, ...] = (
    "scikit-learn", "mlflow", "azureml-mlflow", "pandas", "numpy", "numba", "skops", "azureml-inference-server-http",
    "azureml-ai-monitoring",  # score.py's data collector (model_inputs / model_outputs to the workspace's blobs)
)
# Packages pip itself brings (or that a conda "pip" entry provides): never pinned in the pip list.
_TOOLING = frozenset({"pip", "setuptools", "wheel"})


def target_markers(python: str | None = None) -> dict[str, str]:
    """PEP 508 marker values of the Azure ML images: Linux on x86_64 with CPython ``python``."""
    python = python or f"{sys.version_info.major}.{sys.version_info.minor}"
    return {
        "os_name": "posix", "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
        "platform_python_implementation": "CPython", "implementation_name": "cpython",
        "python_version": python, "python_full_version": f"{python}.0",
    }


def _applies(requirement: Requirement, markers: dict[str, str], extras: frozenset[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({**markers, "extra": extra}) for extra in extras or frozenset({""}))


def requirement_closure(packages: tuple[str, ...] = ENVIRONMENT_PACKAGES, python: str | None = None) -> list[str]:
    """``name==version`` for ``packages`` and every package they need on the Environment's platform, as
    installed here, sorted by name. A dependency that applies on Linux but is not installed here (a
    plan built on another OS) keeps its version range instead of a pin. Computed once per process (reading
    every installed package's metadata; a run builds its Environment several times)."""
    return list(_closure(tuple(packages), python))


@functools.lru_cache(maxsize=8)
def _closure(packages: tuple[str, ...], python: str | None) -> tuple[str, ...]:
    markers = target_markers(python)
    pins: dict[str, str] = {}
    queue: list[tuple[str, frozenset[str]]] = [(name, frozenset()) for name in packages]
    seen: set[tuple[str, frozenset[str]]] = set()
    while queue:
        name, extras = queue.pop()
        key = canonicalize_name(name)
        if (key, extras) in seen or key in _TOOLING:
            continue
        seen.add((key, extras))
        try:
            dist = distribution(name)
        except PackageNotFoundError as exc:
            if name in packages:
                raise ConfigurationError(
                    f"{name} is not installed, so the Azure environment cannot pin its version: install the project "
                    "(pip install -c constraints.txt -e .)"
                ) from exc
            logger.debug("%s is not installed here; the environment keeps its version range", name)
            continue
        pins[key] = f"{dist.metadata['Name']}=={dist.version}"
        for line in dist.requires or []:
            try:
                requirement = Requirement(line)
            except InvalidRequirement:  # pragma: no cover - installed metadata is valid
                continue
            if not _applies(requirement, markers, extras):
                continue
            dep = canonicalize_name(requirement.name)
            if dep in pins or dep in _TOOLING:
                if requirement.extras:
                    queue.append((requirement.name, frozenset(requirement.extras)))
                continue
            if not _installed(requirement.name):
                pins.setdefault(dep, f"{requirement.name}{requirement.specifier}")
                continue
            queue.append((requirement.name, frozenset(requirement.extras)))
    return tuple(pins[key] for key in sorted(pins))


def _installed(name: str) -> bool:
    try:
        distribution(name)
    except PackageNotFoundError:
        return False
    return True


def pip_entries(conda: dict[str, Any]) -> list[str]:
    """The pip list of a conda specification (what the Environment installs with pip)."""
    for dep in conda.get("dependencies", []):
        if isinstance(dep, dict) and "pip" in dep:
            return [str(p) for p in dep["pip"]]
    return []


def top_level(pins: list[str], packages: tuple[str, ...] = ENVIRONMENT_PACKAGES) -> list[str]:
    """The pins of ``packages`` alone (for a short description of the Environment)."""
    wanted = {canonicalize_name(name) for name in packages}
    return [pin for pin in pins if canonicalize_name(Requirement(pin).name) in wanted]
