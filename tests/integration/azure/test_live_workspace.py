"""Live checks against a real workspace: run with `pytest -m azure tests/integration/azure` once the
settings of docs/azure.md are set. Skipped by default (and when the settings are missing)."""

from __future__ import annotations

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
