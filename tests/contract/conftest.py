"""Three harnesses for the rollout contract (tests/contract/harnesses.py): the local backend for real (MLflow
on SQLite in a temporary home, the real local endpoint host on 127.0.0.1; `make test` only, as it starts
endpoint hosts), the Azure backend on the control-plane fakes, and the in-memory backend (models trained in
this process)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.contract.harnesses import AzureHarness, Harness, LocalHarness, MemoryHarness


@pytest.fixture(scope="module")
def local_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("contract-home")


@pytest.fixture(params=[pytest.param("local", marks=pytest.mark.full), "azure", "memory"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    made: Any
    if request.param == "local":
        model_dir = request.getfixturevalue("trained_model_dir")
        made = LocalHarness(request.getfixturevalue("local_home"), model_dir, tmp_path)
    elif request.param == "azure":
        made = AzureHarness(request.getfixturevalue("settings"))
    else:
        made = MemoryHarness(request.getfixturevalue("heart_frame"), tmp_path)
    try:
        yield made
    finally:
        made.close()

