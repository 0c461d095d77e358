"""Details a first scheduled run on a real workspace would hit: deployment names equal but for case, the
endpoint quota (blue and green at once, Azure's 20 % reserve), the dry run's YAML carrying the job's
identity and the configured data-asset name, `teardown` naming the endpoint it deletes, and paged listings
read to their end under the retry (the fake's pagers fetch page two lazily, as the SDK's ItemPaged does)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from azure.ai.ml.entities import ManagedOnlineEndpoint

from backends.azure import AzureBackend, naming
from backends.azure.limits import check_limits
from backends.azure.plan_yaml import write_plan_yaml
from backends.azure.resilience import RetryPolicy
from backends.azure.settings import AzureSettings
from backends.base import ModelVersion
from backends.domain.spec import DeploySpec, PipelineSpec
from tests.unit.azure.fakes import FakeAzure
from tests.unit.azure.readiness_fakes import FakeCredential, blob_service, run, workspace_fake


def test_deployment_names_equal_but_for_case_are_refused(settings: AzureSettings) -> None:
    same = settings.model_copy(update={"blue_deployment": "Blue", "green_deployment": "blue"})
    (violation,) = [v for v in check_limits(PipelineSpec(backend="azure"), same) if v.field == "settings.green_deployment"]
    assert "ignoring case" in violation.rule


def test_the_endpoint_quota_counts_both_colours_and_azures_reserve(settings: AzureSettings) -> None:
    # Standard_F4s_v2: 4 vCPUs. Two instances: ceil(2 x 1.2) = 3 with the reserve, x2 for blue and green = 24.
    spec = PipelineSpec(backend="azure", deploy=DeploySpec(instance_type="Standard_F4s_v2", instance_count=2))
    fake = workspace_fake()
    fake.compute.list_usage.side_effect = lambda **kw: iter([_usage("standardDSv2Family", 24), _usage("standardFSv2Family", 20)])
    line = run(settings, fake, spec=spec).line("endpoint quota")
    assert line.status == "fail" and "needs 24 vCPUs" in line.detail and "x2 deployments at once, +20% Azure reserves" in line.detail
    fake.compute.list_usage.side_effect = lambda **kw: iter([_usage("standardDSv2Family", 24), _usage("standardFSv2Family", 24)])
    assert run(settings, fake, spec=spec).line("endpoint quota").status == "ok"


def _usage(family: str, limit: int) -> object:
    from azure.ai.ml.entities import Usage
    from azure.ai.ml.entities._compute._usage import UsageName

    return Usage(name=UsageName(value=family, localized_value=family), current_value=0, limit=limit, unit="Count")


@pytest.mark.parametrize(("storage", "identity"), [
    ({"storage_connection_string": None, "storage_account_url": "https://heartacct.blob.core.windows.net"}, True),
    ({}, False),  # a connection string: the datastore holds the account key
])
def test_the_yaml_plan_carries_the_jobs_identity_and_the_configured_asset_name(
        settings: AzureSettings, tmp_path: Path, storage: dict, identity: bool) -> None:
    configured = settings.model_copy(update={"data_asset_name": "cardio-train", **storage})
    backend = AzureBackend(configured, ml_client=FakeAzure(), blob_service=object())
    files = write_plan_yaml(backend.plan(PipelineSpec(backend="azure"), data_sha256="ab" * 32), tmp_path)
    data = yaml.safe_load(files.files["data"].read_text())
    sweep = yaml.safe_load(files.files["sweep"].read_text())
    assert data["name"] == "cardio-train"
    assert sweep["inputs"]["input_data"]["path"].startswith("azureml:cardio-train:")
    assert (sweep.get("identity") == {"type": "user_identity"}) is identity, sweep.get("identity")


def test_teardown_prints_the_endpoint_it_deletes(settings: AzureSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import flows.azure_cli
    from flows.cli import app

    derived = naming.endpoint_name(settings)
    fake = FakeAzure()
    fake.online_endpoints.begin_create_or_update(ManagedOnlineEndpoint(name=derived, auth_mode="key"))
    backend = AzureBackend(settings, ml_client=fake, blob_service=blob_service(), credential=FakeCredential())
    monkeypatch.setattr(flows.azure_cli, "provisioner_for_spec", lambda spec: backend)
    result = CliRunner().invoke(app, ["teardown", "--backend", "azure"])
    assert result.exit_code == 0, result.output
    assert f"endpoint {derived} deleted" in result.output and "heart-classify-endpoint" not in result.output
    assert derived not in fake.endpoints


def test_listings_are_read_to_their_end_under_the_retry(settings: AzureSettings) -> None:
    """A dropped connection on page two of the deployments' and the model versions' listings is retried."""
    fake = FakeAzure(page_two_failures=2)
    backend = AzureBackend(settings, ml_client=fake, blob_service=object(), trial_reader=fake.trial_reader,
                           retry=RetryPolicy(attempts=3, initial_s=0, max_s=0, sleep=lambda s: None), sleep=lambda s: None)
    from azure.ai.ml.entities import Model

    fake.models.create_or_update(Model(name="heart-classifier", path="azureml://jobs/j_1/outputs/artifacts/paths/outputs/m/"))
    assert [m.version for m in backend.registry.versions("heart-classifier")] == ["1"]
    model = ModelVersion(name="heart-classifier", version="1", source_run_id="j_1", sweep_id="j", metric_name="accuracy",
                         metric_value=0.85, data_sha256="ab" * 32, uri="azureml:heart-classifier:1")
    endpoint = backend.deploy(model, DeploySpec())
    backend.rollout_policy().append_history(_entry(endpoint.name))  # lists the deployments
    assert fake.page_two_failures == [0]


def _entry(endpoint: str) -> object:
    from backends.base import HistoryEntry

    return HistoryEntry(time="2026-12-03T09:00:00+00:00", event="promoted", endpoint=endpoint, deployment="blue",
                        model_name="heart-classifier", model_version="1", accuracy=0.85, champion_accuracy=None,
                        reason="test", triggered_by="test")
