"""The flow on the in-memory backend, under the session's one Prefect test harness: each test gets its own
backend (its own registry, endpoints and history) and builds the state it needs by running the flow."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from backends.memory import Faults, InMemoryBackend
from tests.flow.bed import FlowBed
from tests.tables import user_table


@pytest.fixture
def bed(prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FlowBed]:
    faults = Faults()
    backend = InMemoryBackend(tmp_path / "memory", faults=faults)
    # The flow's one seam for its backend: the spec still names local, the stages reach this backend.
    monkeypatch.setattr("flows.train_and_deploy.backend_for_spec", lambda spec, secrets=None: backend)
    yield FlowBed(backend, faults, tmp_path)
    backend.close()


@pytest.fixture(scope="session")
def first_table() -> pd.DataFrame:
    return user_table(400, seed=3)
