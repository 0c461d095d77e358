"""One sweep identity for every backend: Prefect's cache key, the local sweep run's key and Azure's job name
come from the same function, and the environment trials run in is one of its inputs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from backends.domain.identity import interpreter_environment, sweep_identity
from backends.domain.spec import Choice, SweepSpec
from backends.memory import InMemoryBackend
from backends.results import DataRef
from src.features import HEART_SCHEMA

DATA = DataRef(uri="file:///x/train.csv", sha256="a" * 64, rows=10)
SPEC = SweepSpec(max_total_trials=4, search_space={"n_estimators": Choice(values=[5, 10])})


def test_the_environment_is_an_input_and_speed_is_not() -> None:
    schema, here = HEART_SCHEMA.to_json(), interpreter_environment()
    key = sweep_identity(DATA, SPEC, schema, here)
    assert key == sweep_identity(DATA, SPEC.model_copy(update={"max_concurrent_trials": 7, "timeout_s": 60}), schema, here)
    upgraded = {**here, "packages": here["packages"].replace("scikit-learn==", "scikit-learn==0.0.")}
    assert key != sweep_identity(DATA, SPEC, schema, upgraded)
    assert key != sweep_identity(DATA, SPEC, schema, {**here, "environment": "azureml:heartflow-sklearn:1"})
    assert "scikit-learn==" in here["packages"] and here["python"].startswith("3.")


def test_the_in_memory_backend_reuses_a_sweep_by_the_identity_prefect_caches_by(tmp_path: Path, heart_frame: pd.DataFrame) -> None:
    backend = InMemoryBackend(tmp_path)
    data = backend.upload(heart_frame)
    first = backend.sweep(data, SPEC, HEART_SCHEMA)
    assert backend.sweep_identity(data, SPEC, HEART_SCHEMA.to_json()) == sweep_identity(
        data, SPEC, HEART_SCHEMA.to_json(), backend.sweep_environment())
    assert backend.sweep(data, SPEC.model_copy(update={"max_concurrent_trials": 1}), HEART_SCHEMA) is first
