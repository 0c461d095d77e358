"""The training split uploaded to a real Blob API: Azurite, the Azure Storage emulator, on 127.0.0.1."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from azure.storage.blob import BlobServiceClient

from backends.azure import create_azure_backend
from backends.azure.storage import serialise_split
from tests.net import free_port

REPO = Path(__file__).resolve().parents[3]
AZURITE = REPO / "node_modules" / ".bin" / "azurite-blob"
# Azurite's well-known development account; the key is public and only opens the local emulator.
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start azurite-blob from the repo's node_modules (`npm ci`); yield its connection string."""
    if not AZURITE.exists() or shutil.which("node") is None:
        pytest.fail("azurite is not installed: run `make test` (or `npm ci`) so the Blob Storage checks run")
    port = free_port()
    location = tmp_path_factory.mktemp("azurite")
    process = subprocess.Popen(
        [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(location),
         "--skipApiVersionCheck", "--silent"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"azurite did not start: {process.stderr.read().decode() if process.stderr else ''}")
                time.sleep(0.1)
        yield (f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
               f"BlobEndpoint=http://127.0.0.1:{port}/{DEV_ACCOUNT};")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture()
def upload_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE_NAME",
                 "AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


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
