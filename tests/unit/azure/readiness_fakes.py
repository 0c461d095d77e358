"""Fakes for Azure readiness checks: a credential whose token names a user, a workspace on the fake control
plane (cluster, VM sizes, quota usage, an existing endpoint), a blob service, and `run`, which checks readiness
against them. Shared by the readiness tests and the workspace-details tests."""

from __future__ import annotations

import base64
import json
from typing import Any
from unittest.mock import create_autospec

from azure.ai.ml.entities import Usage, VmSize, Workspace
from azure.ai.ml.entities._compute._usage import UsageName
from azure.core.credentials import AccessToken
from azure.storage.blob import BlobServiceClient, ContainerClient

from backends.azure import AzureBackend
from backends.azure.readiness import ReadinessReport, check_readiness
from backends.azure.settings import AzureSettings
from backends.domain.spec import DeploySpec, PipelineSpec
from tests.unit.azure.fakes import FakeAzure


class FakeCredential:
    def __init__(self, claims: dict[str, Any] | None = None, error: BaseException | None = None) -> None:
        payload = base64.urlsafe_b64encode(json.dumps(claims or {"upn": "ana@contoso.com"}).encode()).decode().rstrip("=")
        self.token = f"eyJhbGciOiJub25lIn0.{payload}.sig"
        self.error = error
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.extend(scopes)
        if self.error is not None:
            raise self.error
        return AccessToken(self.token, 2_000_000_000)


def workspace_fake(*, cluster: Any = None, used: int = 0, limit: int = 24, endpoint: Any = None) -> FakeAzure:
    fake = FakeAzure(existing=("workspace",))
    fake.workspaces.get.side_effect = lambda name, **kw: Workspace(name=name, location="westeurope")
    if cluster is not None:
        fake.existing.add("compute")
        fake.compute.get.side_effect = lambda name, **kw: cluster
    fake.compute.list_sizes.side_effect = lambda **kw: iter([
        VmSize(name="Standard_DS3_v2", family="standardDSv2Family", v_cp_us=4),
        VmSize(name="Standard_F4s_v2", family="standardFSv2Family", v_cp_us=4),
    ])
    fake.compute.list_usage.side_effect = lambda **kw: iter([
        Usage(name=UsageName(value="standardDSv2Family", localized_value="Standard DSv2 Family vCPUs"),
              current_value=used, limit=limit, unit="Count"),
        Usage(name=UsageName(value="standardFSv2Family", localized_value="Standard FSv2 Family vCPUs"),
              current_value=0, limit=16, unit="Count"),
    ])
    if endpoint is not None:  # the fake keeps endpoints in their REST form, as the service does
        rest = endpoint._to_rest_online_endpoint(location="westeurope")
        rest.name = endpoint.name
        fake.endpoints[endpoint.name] = rest
    return fake


def blob_service(exists: bool = True) -> Any:
    service = create_autospec(BlobServiceClient, instance=True)
    service.account_name = "heartacct"
    container = create_autospec(ContainerClient, instance=True)
    container.exists.return_value = exists
    service.get_container_client.return_value = container
    return service


def run(settings: AzureSettings, fake: FakeAzure, *, credential: Any = None, spec: PipelineSpec | None = None,
        taken: bool | None = False, storage: Any = None) -> ReadinessReport:
    backend = AzureBackend(settings, ml_client=fake, blob_service=storage or blob_service(),
                           credential=credential or FakeCredential())
    return check_readiness(backend, spec or PipelineSpec(backend="azure", deploy=DeploySpec(instance_type="Standard_F4s_v2")),
                           name_taken=lambda host: taken)
