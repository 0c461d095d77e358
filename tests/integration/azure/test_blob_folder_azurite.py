"""A blob "folder" (a URI ending in /) read from a real Blob API, Azurite on 127.0.0.1: its .csv blobs appended
in name order like a local folder's files, each recorded with its ETag, size and sha256."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from backends.domain.sources import load_data
from backends.errors import DataValidationError
from tests.tables import TARGET, user_table

BOM = b"\xef\xbb\xbf"


@pytest.fixture()
def container(azurite: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ContainerClient:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's is read
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite)
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_URL", raising=False)
    client = BlobServiceClient.from_connection_string(azurite).get_container_client(f"drop-{uuid.uuid4().hex[:12]}")
    client.create_container()
    return client


def _tables() -> list[bytes]:
    """Three days of a user's table: text categories, text labels, empty cells; the second written by a
    spreadsheet (byte-order mark, CRLF, no final newline)."""
    first = user_table(120, 1).to_csv(index=False).encode()
    second = BOM + user_table(90, 2).to_csv(index=False, lineterminator="\r\n").encode().rstrip(b"\r\n")
    third = user_table(70, 3).to_csv(index=False).encode()
    return [first, second, third]


def _load(uri: str, rule: str = "all"):
    return load_data(uri, None, 0.1, folder_rule=rule, target=TARGET)


def test_every_csv_blob_under_the_prefix_is_appended_in_name_order_and_recorded(
    container: ContainerClient, tmp_path: Path,
) -> None:
    first, second, third = _tables()
    # Uploaded out of name order; a text file and a deeper "folder" sit under the prefix too.
    uploads = {"daily/2026-11-03.csv": third, "daily/2026-11-01.csv": first, "daily/2026-11-02.CSV": second}
    for name, payload in uploads.items():
        container.upload_blob(name, payload)
    container.upload_blob("daily/readme.txt", b"not data")
    container.upload_blob("daily/archive/2025-01-01.csv", user_table(50, 9).to_csv(index=False).encode())

    loaded = _load(f"az://{container.container_name}/daily/")
    source = loaded.source
    assert source.rows == 120 + 90 + 70 and "3 blobs" in source.version and source.resolved.endswith("/daily/ (3 blobs)")
    names = ["daily/2026-11-01.csv", "daily/2026-11-02.CSV", "daily/2026-11-03.csv"]
    assert [p.name for p in source.parts] == names
    for part in source.parts:
        props = container.get_blob_client(part.name).get_blob_properties()
        assert part.version == f"etag {props.etag.strip(chr(34))}" and part.size == props.size == len(uploads[part.name])
        assert part.sha256 == hashlib.sha256(uploads[part.name]).hexdigest()
    # The same bytes as the same files in a local folder read with folder_rule "all": the same rules.
    folder = tmp_path / "daily"
    folder.mkdir()
    for name, payload in uploads.items():
        (folder / Path(name).name).write_bytes(payload)
    local = _load(str(folder))
    assert source.sha256 == local.source.sha256 and loaded.prepared.train_sha256 == local.prepared.train_sha256
    assert [p.sha256 for p in local.source.parts] == [p.sha256 for p in source.parts]
    # Empty cells and text categories reached validation as they are: the imputed cells are counted.
    assert loaded.prepared.missing_cells and set(loaded.prepared.schema.categorical) >= {"Sex", "Exercise Angina"}
    tags = source.tags()
    assert tags["heartflow.source_parts_count"] == "3"
    assert [row[0] for row in json.loads(tags["heartflow.source_parts"])] == names

    # The folder's URL under the emulator's endpoint reads the same blobs.
    by_url = _load(f"{container.url}/daily/")
    assert by_url.source.sha256 == source.sha256 and by_url.source.parts == source.parts

    # A scheduled rerun with nothing new reads the same bytes, so the split (what the early end compares) is
    # the same; a new day's blob changes both, and the record shows which blob is new.
    again = _load(f"az://{container.container_name}/daily/")
    assert again.source.sha256 == source.sha256 and again.prepared.train_sha256 == loaded.prepared.train_sha256
    container.upload_blob("daily/2026-11-04.csv", user_table(40, 4).to_csv(index=False).encode())
    grown = _load(f"az://{container.container_name}/daily/")
    assert grown.source.rows == 320 and grown.source.parts[:3] == source.parts
    assert grown.source.parts[3].name == "daily/2026-11-04.csv"
    assert grown.source.sha256 != source.sha256 and grown.prepared.train_sha256 != loaded.prepared.train_sha256


def test_the_default_rule_reads_the_newest_blob_only(container: ContainerClient) -> None:
    first, second, third = _tables()
    container.upload_blob("daily/b.csv", first)
    time.sleep(1.1)  # Last-Modified has a resolution of one second
    container.upload_blob("daily/a.csv", third)  # uploaded last: the newest, though first by name
    loaded = _load(f"az://{container.container_name}/daily/", rule="newest")
    assert loaded.source.rows == 70 and loaded.source.resolved.endswith("/daily/a.csv")
    assert [p.name for p in loaded.source.parts] == ["daily/a.csv"]


def test_an_empty_prefix_says_so(container: ContainerClient) -> None:
    container.upload_blob("other/data.csv", user_table(30, 5).to_csv(index=False).encode())
    container.upload_blob("daily/notes.txt", b"not data")
    for prefix in ("nothing/", "daily/"):
        with pytest.raises(DataValidationError, match=rf"blob folder .*/{container.container_name}/{prefix} holds no \.csv blob"):
            _load(f"az://{container.container_name}/{prefix}")


def test_a_blob_with_another_header_is_named(container: ContainerClient) -> None:
    first, _, third = _tables()
    container.upload_blob("mixed/1.csv", first)
    container.upload_blob("mixed/2.csv", user_table(40, 6).drop(columns=["Sex"]).to_csv(index=False).encode())
    container.upload_blob("mixed/3.csv", third)
    with pytest.raises(DataValidationError) as caught:
        _load(f"az://{container.container_name}/mixed/")
    message = str(caught.value)
    assert message.startswith(f"blob {container.url}/mixed/2.csv has another header than blob {container.url}/mixed/1.csv")
    assert "every CSV under the prefix needs the same columns" in message


def test_an_empty_blob_and_a_missing_container_say_so(container: ContainerClient) -> None:
    container.upload_blob("gaps/1.csv", _tables()[0])
    container.upload_blob("gaps/2.csv", b"")
    with pytest.raises(DataValidationError, match=r"blob .*/gaps/2\.csv is empty"):
        _load(f"az://{container.container_name}/gaps/")
    with pytest.raises(DataValidationError, match="container no-such-container does not exist"):
        _load("az://no-such-container/daily/")
