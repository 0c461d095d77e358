"""The Environment's pip list: azureml-mlflow and every package training and serving need, pinned to the
versions constraints.txt pins for the project, with markers evaluated for the Environment's Linux."""

from __future__ import annotations

from pathlib import Path

from packaging.utils import canonicalize_name

from backends.azure import entities, packages

CONSTRAINTS = Path(__file__).resolve().parents[3] / "constraints.txt"


def _pins(lines: list[str]) -> dict[str, str]:
    return {canonicalize_name(n): v.strip() for n, _, v in (line.partition("==") for line in lines if "==" in line)}


def test_the_environment_pins_exactly_what_constraints_pin() -> None:
    listed = _pins(packages.pip_entries(entities.conda_specification()))
    constrained = _pins(CONSTRAINTS.read_text().splitlines())
    for name in ("azureml-mlflow", "mlflow", "mlflow-skinny", "scikit-learn", "skops", "azure-storage-blob", "pytz"):
        assert name in listed, name
    assert {name: listed[name] for name in listed} == {name: constrained.get(name) for name in listed}
    assert listed["mlflow-skinny"] == "3.15.0"  # azureml-mlflow 1.62.0.post6 requires mlflow-skinny<=3.15.0


def test_markers_are_evaluated_for_linux_not_for_this_machine() -> None:
    closure = _pins(packages.requirement_closure(("click", "mlflow")))
    assert "colorama" not in closure  # click needs it on Windows only
    assert "gunicorn" in closure  # mlflow needs it everywhere but Windows
    assert packages.target_markers("3.12")["python_version"] == "3.12"


def test_the_tag_names_only_the_top_level_pins() -> None:
    top = packages.top_level(packages.pip_entries(entities.conda_specification()))
    assert sorted(canonicalize_name(p.split("==")[0]) for p in top) == sorted(
        canonicalize_name(n) for n in packages.ENVIRONMENT_PACKAGES)
