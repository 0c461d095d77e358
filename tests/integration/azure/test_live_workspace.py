"""Live checks against a real workspace: run with `make test-azure` (or `pytest -m azure
tests/integration/azure`) once the settings of docs/azure.md are set. Skipped by default (and when the
settings are missing). The cost estimate of the lifecycle test is printed before any test starts
(tests/integration/azure/conftest.py); its teardown runs in a ``finally``."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.azure import create_azure_backend
from backends.domain.spec import PipelineSpec

pytestmark = pytest.mark.azure


@pytest.fixture()
def live_backend():
    backend = create_azure_backend({})
    missing = backend.settings.missing(("workspace", "storage"))
    if missing:
        pytest.skip(f"no Azure settings: {', '.join(missing)}")
    return backend


def test_live_dry_run_and_provision_are_idempotent(live_backend) -> None:
    assert "sweep" in live_backend.plan(PipelineSpec(backend="azure")).render()
    live_backend.provision(create_workspace=False)
    again = live_backend.provision(create_workspace=False)
    assert again.created == ()


def test_live_teardown_of_a_missing_endpoint_is_a_no_op(live_backend) -> None:
    live_backend.teardown("heartflow-no-such-endpoint")


def test_live_readiness_check_reads_every_line(live_backend) -> None:
    from backends.azure.readiness import check_readiness

    report = check_readiness(live_backend, PipelineSpec(backend="azure"))
    names = [line.name for line in report.lines]
    assert names[:2] == ["credential", "workspace"] and "storage" in names
    assert all(line.fix for line in report.lines if line.status == "fail")


def test_live_lifecycle_sweep_deploy_gate_rollback_teardown(tmp_path: Path) -> None:
    """provision, a 2-trial sweep on a 1-node cluster, register, deploy on the smallest SKU, evaluate through
    the endpoint, gate, a second champion, rollback, and the teardown (which runs even when a step fails)."""
    from backends.domain.dataset import prepare_data
    from tests.integration.azure.live import LiveNames, live_overrides, run_lifecycle

    names = LiveNames()
    backend = create_azure_backend(live_overrides(names, tmp_path), model_name=names.model)
    missing = backend.settings.missing(("workspace",))
    if missing:
        pytest.skip(f"no Azure settings: {', '.join(missing)}")
    steps: list[str] = []
    run_lifecycle(backend, prepare_data(None, None, 0.1), names, steps)
    assert steps[-1] == "teardown" and "rollback" in steps
