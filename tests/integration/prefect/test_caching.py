"""The cache keys of upload and sweep: what changes the result changes the key, nothing else does."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.base import DataRef
from backends.domain import identity
from backends.local.backend import LocalBackend
from backends.domain.spec import Choice, SweepSpec
from src.features import HEART_SCHEMA
from tasks import caching


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache-homes")


@pytest.fixture(scope="module")
def backend(homes: Path) -> LocalBackend:
    return LocalBackend(homes / "home")


def _data(sha: str = "a" * 64) -> DataRef:
    return DataRef(uri="file:///x/train.csv", sha256=sha, rows=10)


def test_the_sweep_key_follows_data_space_and_code_not_speed(backend: LocalBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    schema = HEART_SCHEMA.to_json()
    spec = SweepSpec(max_total_trials=4)
    key = caching.sweep_cache_key(backend, _data(), spec, schema)
    assert key == caching.sweep_cache_key(backend, _data(), SweepSpec(max_total_trials=4), schema)
    assert key == caching.sweep_cache_key(backend, _data(), spec.model_copy(update={"max_concurrent_trials": 7}), schema)
    assert key != caching.sweep_cache_key(backend, _data("b" * 64), spec, schema)
    other_space = spec.model_copy(update={"search_space": {"n_estimators": Choice(values=[10, 20])}})
    assert key != caching.sweep_cache_key(backend, _data(), other_space, schema)
    assert key != caching.sweep_cache_key(backend, _data(), SweepSpec(max_total_trials=5), schema)
    monkeypatch.setattr(identity, "code_version", lambda: "changed-training-code")
    assert key != caching.sweep_cache_key(backend, _data(), spec, schema)


def test_keys_and_results_belong_to_one_heartflow_home(homes: Path, backend: LocalBackend) -> None:
    other = LocalBackend(homes / "other-home")
    assert caching.upload_key(backend, "a" * 64) != caching.upload_key(other, "a" * 64)
    assert caching.upload_key(backend, "a" * 64) != caching.upload_key(backend, "b" * 64)
    assert caching.result_storage_for(backend) == (homes / "home" / "prefect-results").resolve()
    assert caching.result_storage_for(backend).is_dir()
