"""The training split uploaded to a real Blob API: Azurite, the Azure Storage emulator, on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from azure.storage.blob import BlobServiceClient

from backends.azure import create_azure_backend
from backends.azure.settings import blob_service_from_connection_string
from backends.azure.storage import serialise_split
from tests.azurite import AZURITE, DEV_ACCOUNT, azurite_command
from tests.servers import accepts_connections, running_server

def test_upload_is_content_addressed_private_and_idempotent(azurite: str, upload_env: Path) -> None:
    frame = pd.DataFrame({"age": [63, 37, 41], "output": [1, 1, 0]})
    # only storage settings: the upload stage needs no workspace
    backend = create_azure_backend({"storage_connection_string": azurite, "container": "data4ml-test"}, env_file=None)
    first = backend.upload(frame)
    import hashlib

    assert first.sha256 == hashlib.sha256(serialise_split(frame)).hexdigest()
    assert first.uri.endswith(f"/data4ml-test/heartflow/train/{first.sha256}.csv") and first.rows == 3

    service = BlobServiceClient.from_connection_string(azurite)
    container = service.get_container_client("data4ml-test")
    assert not container.get_container_properties().public_access
    blob = container.get_blob_client(f"heartflow/train/{first.sha256}.csv")
    props = blob.get_blob_properties()
    assert props.metadata["sha256"] == first.sha256
    assert blob.download_blob().readall() == serialise_split(frame)

    second = backend.upload(frame)  # the same data again: a no-op with the same reference
    assert second == first
    assert blob.get_blob_properties().etag == props.etag
    assert [b.name for b in container.list_blobs()] == [f"heartflow/train/{first.sha256}.csv"]

    other = backend.upload(frame.assign(age=[64, 38, 42]))
    assert other.sha256 != first.sha256 and len(list(container.list_blobs())) == 2


def test_a_public_container_is_refused(azurite: str, upload_env: Path) -> None:
    from backends.errors import UploadError

    service = BlobServiceClient.from_connection_string(azurite)
    service.create_container("public-data", public_access="blob")
    backend = create_azure_backend({"storage_connection_string": azurite, "container": "public-data"}, env_file=None)
    with pytest.raises(UploadError, match="anonymous public access"):
        backend.upload(pd.DataFrame({"a": [1]}))
    assert list(service.get_container_client("public-data").list_blobs()) == []


# --- the emulator's standard connection string, the default datastore, teardown of what heartflow created ---

DEV_PORT = 10000  # `UseDevelopmentStorage=true` always means 127.0.0.1:10000


def _is_azurite(connection_string: str) -> bool:
    try:
        blob_service_from_connection_string(connection_string, retry_total=0, connection_timeout=2,
                                            read_timeout=2).get_service_properties()
        return True
    except Exception:  # noqa: BLE001 - any failure means: not an emulator we can use
        return False


@pytest.fixture(scope="module")
def dev_storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Azurite on the well-known port, so the standard `UseDevelopmentStorage=true` reaches it. If the port
    already serves an Azurite (another test run), that one is used; anything else there fails clearly."""
    connection = "UseDevelopmentStorage=true"
    if accepts_connections(DEV_PORT)():
        if not _is_azurite(connection):
            pytest.fail(f"port {DEV_PORT} is taken by something that is not Azurite; free it for this test")
        yield connection
        return
    if not AZURITE.exists():
        pytest.fail("azurite is not installed: run `make test` (or `npm ci`)")
    location = tmp_path_factory.mktemp("azurite-dev")
    with running_server(azurite_command(DEV_PORT, location), ready=lambda: _is_azurite(connection), what="azurite",
                        log=location / "azurite.log", timeout_s=30):
        yield connection


def _unique(prefix: str) -> str:
    import uuid

    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_the_emulators_standard_connection_string_works(dev_storage: str, upload_env: Path) -> None:
    from backends.azure.entities import build_datastore

    container = _unique("devstore")
    backend = create_azure_backend({"storage_connection_string": dev_storage, "container": container,
                                    "ledger_path": str(upload_env / "ledger.json")}, env_file=None)
    assert backend.settings.storage_account_name == "devstoreaccount1"
    assert build_datastore(backend.settings).account_name == "devstoreaccount1"  # was "cannot tell the account"
    frame = pd.DataFrame({"age": [63.5, 37.25], "thal": ["fixed", None], "output": [1, 0]})
    ref = backend.upload(frame)
    blob = blob_service_from_connection_string(dev_storage).get_blob_client(container, f"heartflow/train/{ref.sha256}.csv")
    assert blob.download_blob().readall() == serialise_split(frame)
    (entry,) = backend.ledger.entries()
    assert (entry.kind, entry.name, entry.scope) == ("container", container, "storage/devstoreaccount1")
    blob_service_from_connection_string(dev_storage).delete_container(container)


def _fake_workspace() -> object:
    from tests.unit.azure.fakes import FakeAzure

    return FakeAzure(existing=("workspace",))


WORKSPACE = {"subscription_id": "00000000-0000-0000-0000-000000000000", "resource_group": "rg", "workspace_name": "ws"}


def test_teardown_all_removes_exactly_the_containers_heartflow_created(azurite: str, upload_env: Path) -> None:
    service = BlobServiceClient.from_connection_string(azurite)
    theirs = _unique("theirs")
    service.create_container(theirs)  # someone else's container, used by heartflow but not created by it
    ours = _unique("ours")
    ledger = str(upload_env / "ledger.json")
    frame = pd.DataFrame({"age": [63, 37, 41], "output": [1, 1, 0]})
    fake = _fake_workspace()
    for container in (ours, theirs):
        backend = create_azure_backend({**WORKSPACE, "storage_connection_string": azurite, "container": container,
                                        "ledger_path": ledger}, env_file=None, ml_client=fake)
        backend.upload(frame)
    recorded = [(e.kind, e.name, e.scope) for e in backend.ledger.entries()]
    assert recorded == [("container", ours, "storage/devstoreaccount1")]
    # an entry of another account is not this storage's to delete
    backend.ledger.record("container", "elsewhere", "storage/otheraccount")

    preview = backend.teardown_all(yes=False)
    assert preview.planned == (f"container {ours}",)
    done = backend.teardown_all(yes=True)
    assert done.deleted == (f"container {ours}",)
    names = {c.name for c in service.list_containers()}
    assert ours not in names and theirs in names
    assert [(e.name, e.scope) for e in backend.ledger.entries()] == [("elsewhere", "storage/otheraccount")]
    assert backend.teardown_all(yes=False).planned == ()


def test_a_workspace_alone_uploads_to_its_default_datastore(azurite: str, upload_env: Path) -> None:
    """No storage setting: the split goes to the default datastore's container (the workspace's, never
    created or deleted by heartflow) and becomes a versioned data asset."""
    from azure.ai.ml.entities import AzureBlobDatastore

    service = BlobServiceClient.from_connection_string(azurite)
    default_container = _unique("azureml-blobstore")
    service.create_container(default_container)
    fake = _fake_workspace()
    fake.datastores.get_default.side_effect = lambda **kw: AzureBlobDatastore(
        name="workspaceblobstore", account_name=DEV_ACCOUNT, container_name=default_container)
    backend = create_azure_backend({**WORKSPACE, "ledger_path": str(upload_env / "ledger.json")}, env_file=None,
                                   ml_client=fake, blob_service=service)
    assert backend.settings.storage_mode == "workspace"
    frame = pd.DataFrame({"age": [63, 37, 41], "cp": ["typical", "atypical", None], "output": [1, 1, 0]})
    ref = backend.upload(frame)
    blob = service.get_blob_client(default_container, f"heartflow/train/{ref.sha256}.csv")
    assert blob.download_blob().readall() == serialise_split(frame)
    asset = fake.data_assets[("heartflow-train", ref.sha256[:16])]
    assert asset.path == f"azureml://datastores/workspaceblobstore/paths/heartflow/train/{ref.sha256}.csv"
    assert backend.ledger.entries() == [] and backend.teardown_all(yes=False).planned == ()
    assert backend.upload(frame) == ref and fake.data.create_or_update.call_count == 1  # idempotent
