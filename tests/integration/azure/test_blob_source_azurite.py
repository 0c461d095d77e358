"""Training data read from a real Blob API (Azurite on 127.0.0.1): az://container/path and the blob's URL."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from backends.domain.sources import load_data
from backends.errors import DataValidationError
from tests.tables import resampled_heart_table


@pytest.fixture()
def stored(azurite: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[str, bytes]:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's is read
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite)
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_URL", raising=False)
    payload = resampled_heart_table(160, 11).to_csv(index=False).encode()
    service = BlobServiceClient.from_connection_string(azurite)
    container = service.get_container_client("incoming")
    if not container.exists():
        container.create_container()
    blob = container.upload_blob("clinic/2026-11.csv", payload, overwrite=True)
    return blob.url, payload


def test_az_uri_and_blob_url_read_the_same_blob(stored: tuple[str, bytes]) -> None:
    url, payload = stored
    by_uri = load_data("az://incoming/clinic/2026-11.csv", None, 0.1)
    by_url = load_data(url, None, 0.1)
    assert url.startswith("http://127.0.0.1:") and url.endswith("/devstoreaccount1/incoming/clinic/2026-11.csv")
    for loaded in (by_uri, by_url):
        assert loaded.source.rows == 160
        assert loaded.source.sha256 == hashlib.sha256(payload).hexdigest()
        assert loaded.source.resolved == url and loaded.source.version.startswith("etag ")
    assert by_uri.prepared.train_sha256 == by_url.prepared.train_sha256


def test_a_missing_blob_says_so(stored: tuple[str, bytes]) -> None:
    with pytest.raises(DataValidationError, match=r"blob .*incoming/clinic/none\.csv does not exist"):
        load_data("az://incoming/clinic/none.csv", None, 0.1)
