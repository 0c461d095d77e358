"""The interfaces say what the code does: plan/provision/teardown_all on the Provisioner protocol, cache
identity and report files on Backend, and tasks/ never reaching into a backend's modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from backends.azure import AzureBackend
from backends.base import Backend, DataRef, Provisioner
from backends.errors import ConfigurationError
from backends.factory import provisioner_for_spec
from backends.domain.spec import PipelineSpec, SweepSpec
from src.features import HEART_SCHEMA
from tasks import caching
from tests.unit.azure.fakes import FakeAzure

ROOT = Path(__file__).resolve().parents[3]


def test_the_azure_backend_is_a_provisioner_and_the_local_one_says_it_is_not(settings, tmp_path: Path) -> None:
    backend = AzureBackend(settings, ml_client=FakeAzure(), blob_service=object())
    assert isinstance(backend, Backend) and isinstance(backend, Provisioner)
    with pytest.raises(ConfigurationError, match="nothing to plan, provision or tear down"):
        provisioner_for_spec(PipelineSpec(backend="local", home=str(tmp_path / "home")))


def test_azure_cache_keys_follow_the_workspace_and_what_the_sweep_computes(settings) -> None:
    backend = AzureBackend(settings, ml_client=FakeAzure(), blob_service=object())
    other = AzureBackend(settings.model_copy(update={"workspace_name": "other"}), ml_client=FakeAzure(), blob_service=object())
    data, schema = DataRef(uri="x", sha256="a" * 64, rows=3), HEART_SCHEMA.to_json()
    key = caching.sweep_cache_key(backend, data, SweepSpec(), schema)
    assert key == caching.sweep_cache_key(backend, data, SweepSpec(max_concurrent_trials=2), schema)
    assert key != caching.sweep_cache_key(backend, DataRef(uri="x", sha256="b" * 64, rows=3), SweepSpec(), schema)
    assert key != caching.sweep_cache_key(other, data, SweepSpec(), schema)
    assert caching.result_storage_for(backend) is None  # Prefect's default storage


@pytest.mark.full  # a fresh interpreter: `make test`, not `make test-fast`
def test_tasks_import_no_backend_internals() -> None:
    code = ("import sys, tasks.caching, tasks.reports, tasks.stages; "
            "print(sorted(m for m in sys.modules if m.startswith(('backends.local', 'backends.azure'))))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    assert loaded.stdout.strip() == "[]", loaded.stdout
