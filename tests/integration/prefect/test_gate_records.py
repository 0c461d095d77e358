"""The promotion gate carries out its decision before it records the figures: a tracking store that fails
while the figures are recorded leaves the candidate promoted or rejected, never deployed at 0 % in between."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect import flow
from prefect.settings import PREFECT_API_URL, temporary_settings

from backends.base import Endpoint, EvalReport, ModelVersion
from backends.errors import RegistrationError
from backends.local.backend import LocalBackend
from tasks.stages import promotion_gate
from tests.contract.harnesses import LocalHarness, report_for
from tests.integration.prefect.server import PrefectServer


class GateRecordsFail(LocalBackend):
    """A real local backend whose tracking store refuses the gate's figures (as a store that went away)."""

    def __init__(self, home: Path) -> None:
        super().__init__(home)
        self.record_attempts = 0

    def record_gate(self, model: ModelVersion, numbers: Any) -> None:
        self.record_attempts += 1
        raise RegistrationError("could not record the gate's numbers: tracking store unavailable")


@pytest.fixture
def harness(tmp_path: Path, trained_model_dir: Path, prefect_server: PrefectServer) -> Iterator[LocalHarness]:
    made = LocalHarness(tmp_path / "home", trained_model_dir, tmp_path)
    made.backend = GateRecordsFail(tmp_path / "home")
    with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}):
        try:
            yield made
        finally:
            made.close()


def holdout(report: EvalReport, predictions: tuple[int, ...] | None = None) -> EvalReport:
    """A 40-row holdout answer: large enough for the gate's no-skill floor to see a perfect model."""
    labels = (1, 0) * 20
    answered = predictions or labels
    accuracy = sum(a == b for a, b in zip(labels, answered, strict=True)) / len(labels)
    return dataclasses.replace(report, rows=len(labels), labels=labels, predictions=answered, accuracy=accuracy)


@flow(name="gate-records-check")
def gate(backend: LocalBackend, endpoint: Endpoint, model: ModelVersion, report: EvalReport,
         champion_report: EvalReport | None) -> Any:
    return promotion_gate(backend, endpoint, model, report, champion_report, 0.0, "test", return_state=True)


def test_a_failing_tracking_store_does_not_leave_the_candidate_undecided(harness: LocalHarness) -> None:
    backend = harness.backend
    assert isinstance(backend, GateRecordsFail)
    first = harness.model()
    endpoint = backend.deploy(first, harness.spec)
    state = gate(backend, endpoint, first, holdout(report_for(endpoint.name, endpoint.deployment, first, 1.0)), None)
    assert state.is_completed(), state.message
    assert backend.record_attempts == 1
    champion = backend.champion(harness.model_name)
    assert champion is not None and champion.version == first.version
    assert [e.event for e in backend.history(endpoint.name)] == ["promoted"]

    second = harness.model()
    candidate = backend.deploy(second, harness.spec)
    assert harness.traffic() == {endpoint.deployment: 100} and candidate.deployment in harness.deployments()
    champion_report = holdout(report_for(endpoint.name, endpoint.deployment, first, 1.0))
    worse = holdout(report_for(candidate.name, candidate.deployment, second, 0.5), predictions=(0,) * 40)
    state = gate(backend, candidate, second, worse, champion_report)
    assert state.is_completed(), state.message
    decision, _ = state.result()
    assert not decision.promote
    assert harness.deployments() == {endpoint.deployment}, "the rejected candidate's deployment was left behind"
    assert backend.get_model(harness.model_name, second.version).tags.get("heartflow.status") == "rejected"
    assert [e.event for e in backend.history(endpoint.name)] == ["promoted", "rejected"]
