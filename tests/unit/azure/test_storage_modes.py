"""Where the training split goes and how the trials read it: the workspace's default datastore by default
(no storage setting), a versioned data asset as the sweep's input, and the submitting user's identity
whenever the datastore holds no secret."""

from __future__ import annotations

from typing import Any

import pytest
from azure.ai.ml.entities import AccountKeyConfiguration, AzureBlobDatastore, UserIdentityConfiguration

from backends.azure import AzureBackend
from backends.azure.resilience import RetryPolicy
from backends.azure.settings import AzureSettings
from backends.base import DataRef
from backends.errors import ConfigurationError
from backends.domain.spec import SweepSpec
from tests.unit.azure.fakes import FakeAzure

SHA = "9f" * 32
DATA = DataRef(uri=f"https://wsacct.blob.core.windows.net/azureml-blobstore-1/heartflow/train/{SHA}.csv", sha256=SHA, rows=50)
SPEC = SweepSpec(sampling="grid", max_total_trials=3, max_concurrent_trials=2)


def default_store(with_key: bool) -> AzureBlobDatastore:
    return AzureBlobDatastore(
        name="workspaceblobstore", account_name="wsacct", container_name="azureml-blobstore-1",
        credentials=AccountKeyConfiguration(account_key="a2V5") if with_key else None)


def make(settings: AzureSettings, fake: FakeAzure) -> AzureBackend:
    return AzureBackend(settings, ml_client=fake, blob_service=object(), trial_reader=fake.trial_reader,
                        retry=RetryPolicy(attempts=2, initial_s=0, max_s=0, sleep=lambda s: None), sleep=lambda s: None)


def workspace_only(settings: AzureSettings) -> AzureSettings:
    return settings.model_copy(update={"storage_connection_string": None, "storage_account_url": None})


@pytest.mark.parametrize("with_key", [True, False])
def test_a_workspace_alone_sweeps_from_the_default_datastore(settings: AzureSettings, with_key: bool) -> None:
    fake = FakeAzure()
    fake.datastores.get_default.side_effect = lambda **kw: default_store(with_key)
    result = make(workspace_only(settings), fake).sweep(DATA, SPEC)
    fake.datastores.create_or_update.assert_not_called()  # no datastore of heartflow's own
    submitted = fake.jobs.create_or_update.call_args.args[0]
    assert submitted.inputs["input_data"].path == f"azureml:heartflow-train:{SHA[:16]}"
    asset = fake.data_assets[("heartflow-train", SHA[:16])]
    assert asset.path == f"azureml://datastores/workspaceblobstore/paths/heartflow/train/{SHA}.csv"
    assert asset.type == "uri_file" and asset.tags["sha256"] == SHA
    # a default datastore without a stored key: the trials read it as the submitting user
    assert isinstance(submitted.identity, UserIdentityConfiguration) is (not with_key)
    assert result.best.number == 1


def test_an_account_url_sweep_runs_with_the_users_identity(settings: AzureSettings) -> None:
    fake = FakeAzure()
    by_url = settings.model_copy(update={"storage_connection_string": None,
                                         "storage_account_url": "https://heartacct.blob.core.windows.net"})
    make(by_url, fake).sweep(DATA, SPEC)
    submitted = fake.jobs.create_or_update.call_args.args[0]
    assert isinstance(submitted.identity, UserIdentityConfiguration)
    store = fake.datastores.create_or_update.call_args.args[0]
    assert store.account_name == "heartacct" and type(store.credentials).__name__ == "NoneCredentialConfiguration"
    # the sweep as the SDK would send it carries the user identity
    job = submitted._to_job()
    assert job._to_rest_object().properties.identity.identity_type == "UserIdentity"
    assert job._to_dict()["identity"] == {"type": "user_identity"}


def test_the_data_asset_is_get_or_create_and_refuses_a_foreign_version(settings: AzureSettings) -> None:
    fake = FakeAzure()
    backend = make(settings, fake)
    ref = backend.ensure_data_asset(fake, DATA)
    assert ref == f"azureml:heartflow-train:{SHA[:16]}" and fake.data.create_or_update.call_count == 1
    make(settings, fake).ensure_data_asset(fake, DATA)  # another run: read, not registered again
    assert fake.data.create_or_update.call_count == 1
    other = DataRef(uri=DATA.uri, sha256=SHA[:16] + "0" * 48, rows=1)  # same version prefix, other content
    with pytest.raises(ConfigurationError, match="another split"):
        make(settings, fake).ensure_data_asset(fake, other)


def test_the_upload_registers_the_data_asset_when_a_workspace_is_set(settings: AzureSettings) -> None:
    import pandas as pd
    from unittest.mock import create_autospec

    from azure.storage.blob import BlobClient, BlobServiceClient, ContainerClient

    service: Any = create_autospec(BlobServiceClient, instance=True)
    service.account_name = "wsacct"
    service.get_container_client.return_value = create_autospec(ContainerClient, instance=True)
    blob = create_autospec(BlobClient, instance=True)
    blob.exists.return_value = False
    blob.url = "https://wsacct.blob.core.windows.net/azureml-blobstore-1/x.csv"
    service.get_blob_client.return_value = blob
    fake = FakeAzure()
    fake.datastores.get_default.side_effect = lambda **kw: default_store(True)
    backend = AzureBackend(workspace_only(settings), ml_client=fake, blob_service=service,
                           retry=RetryPolicy(attempts=1, initial_s=0, max_s=0))
    ref = backend.upload(pd.DataFrame({"age": [63, 37], "sex": ["male", "female"], "output": [1, 0]}))
    service.get_container_client.return_value.create_container.assert_not_called()  # the workspace's container
    assert service.get_blob_client.call_args.args[0] == "azureml-blobstore-1"
    assert (("heartflow-train", ref.sha256[:16])) in fake.data_assets
    assert backend.ledger.entries() == []  # nothing of heartflow's to tear down


class AzureAdCredential:
    """Stands for the user's Azure AD identity (az login): a write with it needs Storage Blob Data Contributor."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        raise AssertionError("not expected to be asked in this test")


@pytest.mark.parametrize("kind", ["key", "sas", "identity"])
def test_the_workspace_upload_signs_with_the_datastores_own_credential(settings: AzureSettings, kind: str) -> None:
    """Neither AzureML Data Scientist nor Owner grants a blob write to the user's identity; the default
    datastore's account key (or SAS), read with include_secrets, does. An identity-based datastore has none:
    then the user's identity it is, and `heartflow check` says which role the write needs."""
    fake = FakeAzure(default_datastore=kind)
    identity = AzureAdCredential()
    backend = AzureBackend(workspace_only(settings), ml_client=fake, credential=identity,
                           retry=RetryPolicy(attempts=2, initial_s=0, max_s=0, sleep=lambda s: None))
    service = backend.blob_store().service
    assert service.url.startswith("https://wsacct.blob.core.windows.net")
    assert any(c.kwargs.get("include_secrets") for c in fake.datastores.get_default.call_args_list)
    if kind == "key":
        assert service.credential.account_name == "wsacct" and service.credential.account_key == FakeAzure.DATASTORE_KEY
    elif kind == "sas":
        assert "sig=c2Fz" in service.url and service.credential is None
    else:
        assert service.credential is identity


def test_a_refused_secret_listing_falls_back_to_the_identity(settings: AzureSettings) -> None:
    from tests.unit.azure.fakes import http_error

    fake = FakeAzure()
    plain = fake.datastores.get_default.side_effect

    def no_secrets(*, include_secrets: bool = False) -> Any:
        if include_secrets:
            raise http_error(403, "AuthorizationFailed: listSecrets")
        return plain()

    fake.datastores.get_default.side_effect = no_secrets
    identity = AzureAdCredential()
    backend = AzureBackend(workspace_only(settings), ml_client=fake, credential=identity,
                           retry=RetryPolicy(attempts=2, initial_s=0, max_s=0, sleep=lambda s: None))
    assert backend.blob_store().service.credential is identity
