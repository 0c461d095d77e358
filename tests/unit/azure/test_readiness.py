"""`heartflow check --backend azure`: every line of the read-only readiness report, on every branch,
against the fake control plane (autospecced SDK operations returning real SDK entities)."""

from __future__ import annotations

import pytest
from azure.ai.ml.entities import AmlCompute, ComputeInstance, ManagedOnlineEndpoint, Usage
from azure.core.exceptions import ClientAuthenticationError

from backends.azure import AzureBackend, naming
from backends.azure.readiness import check_readiness
from backends.azure.settings import AzureSettings
from backends.domain.spec import DeploySpec, PipelineSpec, SweepSpec
from tests.unit.azure.fakes import FakeAzure, http_error
from tests.unit.azure.readiness_fakes import FakeCredential, blob_service, run, workspace_fake


def test_a_ready_workspace_is_all_ok_and_nothing_is_written(settings: AzureSettings) -> None:
    cluster = AmlCompute(name="heartclassifycluster", size="Standard_DS3_v2", min_instances=0, max_instances=4)
    fake = workspace_fake(cluster=cluster)
    report = run(settings, fake)
    assert report.ready, report
    assert [line.name for line in report.lines] == [
        "credential", "workspace", "cluster", "cluster quota", "endpoint quota", "endpoint name", "storage"]
    assert "ana@contoso.com" in report.line("credential").detail and "FakeCredential" in report.line("credential").detail
    assert "westeurope" in report.line("workspace").detail
    assert "16 vCPUs of standardDSv2Family; 24 of 24 left" in report.line("cluster quota").detail
    assert "free in westeurope" in report.line("endpoint name").detail
    written = [c for op in (fake.compute, fake.online_endpoints, fake.datastores, fake.environments, fake.jobs, fake.workspaces)
               for c in op.method_calls if not c[0].split(".")[-1].startswith(("get", "list"))]
    assert written == []


def test_no_credential_fails_with_what_to_do(settings: AzureSettings) -> None:
    report = run(settings, workspace_fake(), credential=FakeCredential(error=ClientAuthenticationError("no login")))
    assert not report.ready and "az login" in report.line("credential").fix


def test_missing_settings_are_one_failing_line(settings: AzureSettings) -> None:
    bare = settings.model_copy(update={"workspace_name": None})
    report = run(bare, workspace_fake())
    assert not report.ready and "AZUREML_WORKSPACE_NAME" in report.line("settings").detail


def test_workspace_missing_or_forbidden(settings: AzureSettings) -> None:
    fake = FakeAzure()  # no workspace
    report = run(settings, fake)
    assert not report.ready and "--create-workspace" in report.line("workspace").fix
    forbidden = FakeAzure()
    forbidden.workspaces.get.side_effect = http_error(403, "AuthorizationFailed")
    assert "AzureML Data Scientist" in run(settings, forbidden).line("workspace").fix


def test_cluster_branches(settings: AzureSettings) -> None:
    missing = run(settings, workspace_fake())
    assert missing.line("cluster").status == "ok" and "run creates it" in missing.line("cluster").detail
    small = AmlCompute(name="heartclassifycluster", size="Standard_DS3_v2", max_instances=2)
    spec = PipelineSpec(backend="azure", sweep=SweepSpec(max_concurrent_trials=4), deploy=DeploySpec(instance_type="Standard_F4s_v2"))
    report = run(settings, workspace_fake(cluster=small), spec=spec)
    assert not report.ready and "--max-instances 4" in report.line("cluster").fix
    instance = ComputeInstance(name="heartclassifycluster", size="Standard_DS3_v2")
    assert "not a compute cluster" in run(settings, workspace_fake(cluster=instance)).line("cluster").detail


def test_quota_branches(settings: AzureSettings) -> None:
    report = run(settings, workspace_fake(used=20, limit=24))
    assert not report.ready and report.line("cluster quota").status == "fail"
    assert "request more standardDSv2Family quota" in report.line("cluster quota").fix
    odd = run(settings, workspace_fake(), spec=PipelineSpec(backend="azure", deploy=DeploySpec(instance_type="Standard_E4s_v3")))
    assert odd.line("endpoint quota").status == "fail" and "not offered" in odd.line("endpoint quota").detail
    unlisted = workspace_fake()
    unlisted.compute.list_usage.side_effect = lambda **kw: iter([])
    assert run(settings, unlisted).line("cluster quota").status == "warn"
    denied = workspace_fake()
    denied.compute.list_usage.side_effect = http_error(403)
    assert run(settings, denied).line("quota").status == "warn"


def test_endpoint_name_branches(settings: AzureSettings) -> None:
    derived = naming.endpoint_name(settings)
    ours = ManagedOnlineEndpoint(name=derived, tags={"created-by": "heartflow"})
    assert run(settings, workspace_fake(endpoint=ours)).line("endpoint name").status == "ok"
    foreign = ManagedOnlineEndpoint(name=derived, tags={})
    report = run(settings, workspace_fake(endpoint=foreign))
    assert not report.ready and "--endpoint-name" in report.line("endpoint name").fix
    taken = run(settings, workspace_fake(), taken=True)
    assert not taken.ready and "taken in westeurope" in taken.line("endpoint name").detail
    assert run(settings, workspace_fake(), taken=None).line("endpoint name").status == "warn"


def test_the_check_reads_the_derived_name_the_run_uses_not_the_tutorials(settings: AzureSettings) -> None:
    """A run asked for the tutorial's name deploys to hf-<hash>; the check looks at that name, so a foreign
    endpoint under the tutorial's name (never used) blocks nothing, and the DNS probe asks for hf-<hash>."""
    derived = naming.endpoint_name(settings, "heart-classify-endpoint")
    assert derived.startswith("hf-")
    foreign = ManagedOnlineEndpoint(name="heart-classify-endpoint", tags={})
    fake = workspace_fake(endpoint=foreign)
    asked: list[str] = []
    backend = AzureBackend(settings, ml_client=fake, blob_service=blob_service(), credential=FakeCredential())
    report = check_readiness(backend, PipelineSpec(backend="azure", deploy=DeploySpec(instance_type="Standard_F4s_v2")),
                             name_taken=lambda host: asked.append(host) or False)
    line = report.line("endpoint name")
    assert line.status == "ok" and derived in line.detail, line
    assert asked == [f"{derived}.westeurope.inference.ml.azure.com"]
    assert [c.args[0] for c in fake.online_endpoints.get.call_args_list] == [derived]
    named = check_readiness(backend, PipelineSpec(backend="azure", deploy=DeploySpec(
        endpoint_name="my-own-endpoint", instance_type="Standard_F4s_v2")), name_taken=lambda host: False)
    assert "my-own-endpoint" in named.line("endpoint name").detail  # a name the user chose is used as it is


def test_storage_branches(settings: AzureSettings) -> None:
    assert run(settings, workspace_fake(), storage=blob_service(exists=False)).line("storage").status == "ok"
    broken = blob_service()
    broken.get_container_client.return_value.exists.side_effect = http_error(403, "AuthorizationPermissionMismatch")
    report = run(settings, workspace_fake(), storage=broken)
    assert not report.ready and "Storage Blob Data Contributor" in report.line("storage").fix


def test_workspace_mode_checks_the_default_datastore(settings: AzureSettings) -> None:

    default_only = settings.model_copy(update={"storage_connection_string": None})
    fake = workspace_fake()  # the default datastore holds an account key, as a new workspace's does
    assert run(default_only, fake).line("storage").status == "ok"
    missing = run(default_only, fake, storage=blob_service(exists=False))
    assert missing.line("storage").status == "fail" and "default datastore" in missing.line("storage").detail


@pytest.mark.parametrize("exit_code", [0, 1])
def test_the_cli_prints_one_table_and_exits_1_when_blocked(settings: AzureSettings, monkeypatch: pytest.MonkeyPatch,
                                                           exit_code: int) -> None:
    from typer.testing import CliRunner

    import flows.azure_cli
    from flows.cli import app

    cluster = AmlCompute(name="heartclassifycluster", size="Standard_DS3_v2", max_instances=4)
    fake = workspace_fake(cluster=cluster, used=0 if exit_code == 0 else 24)
    backend = AzureBackend(settings, ml_client=fake, blob_service=blob_service(), credential=FakeCredential())
    monkeypatch.setattr(flows.azure_cli, "provisioner_for_spec", lambda spec: backend)
    import backends.azure.readiness as readiness

    monkeypatch.setattr(readiness, "dns_name_taken", lambda host, timeout_s=5.0: False)
    result = CliRunner().invoke(app, ["check", "--backend", "azure", "--instance-type", "Standard_F4s_v2"])
    assert result.exit_code == exit_code, result.output
    assert "Azure readiness" in result.output and "cluster quota" in result.output
    assert ("not ready" in result.output) is (exit_code == 1)


def test_usages_as_the_sdks_listing_returns_them(settings: AzureSettings) -> None:
    """``compute.list_usage`` builds each Usage from the REST object's ``as_dict()``: its name is a dict."""
    from azure.ai.ml._restclient.arm_ml_service.models import Usage as RestUsage
    from azure.ai.ml._restclient.arm_ml_service.models import UsageName as RestUsageName

    rest = RestUsage(name=RestUsageName(value="standardDSv2Family", localized_value="Standard DSv2 Family vCPUs"),
                     current_value=10, limit=12, unit="Count")
    usage = Usage._from_rest_object(rest)
    fake = workspace_fake()
    fake.compute.list_usage.side_effect = lambda **kw: iter([usage])
    line = run(settings, fake).line("cluster quota")
    assert line.status == "fail" and "2 of 12 left" in line.detail


def test_check_says_which_role_a_workspace_upload_needs(settings: AzureSettings) -> None:
    default_only = settings.model_copy(update={"storage_connection_string": None})
    with_key = run(default_only, workspace_fake())  # the fake's default datastore holds an account key
    assert with_key.line("storage").status == "ok" and "datastore's own key" in with_key.line("storage").detail
    fake = workspace_fake()
    fake.default_datastore_kind = "identity"
    line = run(default_only, fake).line("storage")
    assert line.status == "warn" and "Storage Blob Data Contributor on storage account heartacct" in line.fix
    written = [c for c in fake.datastores.method_calls if not c[0].split(".")[-1].startswith(("get", "list"))]
    assert written == []  # the check still writes nothing
