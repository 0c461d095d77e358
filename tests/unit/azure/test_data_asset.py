"""A registered data asset resolved through fakes built on the SDK's DataOperations and
DatastoreOperations (create_autospec), returning real Data and AzureBlobDatastore entities."""

from __future__ import annotations

from unittest.mock import create_autospec

import pytest
from azure.ai.ml.entities import AzureBlobDatastore, Data
from azure.ai.ml.operations import DataOperations, DatastoreOperations
from azure.core.exceptions import ResourceNotFoundError

from backends.azure.data_asset import parse_asset_uri, resolve_data_asset
from backends.domain.sources import fetch
from backends.errors import DataValidationError

WORKSPACE_PATH = ("azureml://subscriptions/0000/resourcegroups/rg/workspaces/ws/datastores/incoming/paths/"
                  "heart/2026-11.csv")


def _fakes(assets: dict[str, Data]) -> tuple[DataOperations, DatastoreOperations]:
    data = create_autospec(DataOperations, instance=True)

    def get(name: str, version: str | None = None, label: str | None = None) -> Data:
        if version is None and label == "latest":
            versions = [a for key, a in assets.items() if key.startswith(f"{name}:")]
            if versions:
                return max(versions, key=lambda a: int(a.version))
        elif f"{name}:{version}" in assets:
            return assets[f"{name}:{version}"]
        raise ResourceNotFoundError(f"data {name} {version or label} not found")

    data.get.side_effect = get
    stores = create_autospec(DatastoreOperations, instance=True)
    stores.get.side_effect = lambda name, **_: (
        AzureBlobDatastore(name=name, account_name="heartdata", container_name="clinic") if name == "incoming"
        else (_ for _ in ()).throw(ResourceNotFoundError(f"datastore {name}"))
    )
    return data, stores


ASSETS = {
    "heart:1": Data(name="heart", version="1", type="uri_file", path="https://heartdata.blob.core.windows.net/clinic/h1.csv"),
    "heart:2": Data(name="heart", version="2", type="uri_file", path=WORKSPACE_PATH),
}


def test_latest_and_pinned_versions_resolve_to_blob_urls() -> None:
    data, stores = _fakes(ASSETS)
    assert resolve_data_asset(data, stores, "azureml:heart@latest") == (
        "https://heartdata.blob.core.windows.net/clinic/heart/2026-11.csv", "2")
    data.get.assert_called_with("heart", label="latest")
    stores.get.assert_called_with("incoming")
    assert resolve_data_asset(data, stores, "azureml:heart:1") == (
        "https://heartdata.blob.core.windows.net/clinic/h1.csv", "1")
    data.get.assert_called_with("heart", version="1")


def test_missing_assets_folders_and_bad_names_say_what_to_do() -> None:
    folder = {"rows:1": Data(name="rows", version="1", type="uri_folder", path="https://a.blob.core.windows.net/c/dir/")}
    data, stores = _fakes({**ASSETS, **folder})
    with pytest.raises(DataValidationError, match="'heart' has no version 9"):
        resolve_data_asset(data, stores, "azureml:heart:9")
    with pytest.raises(DataValidationError, match="uri_folder"):
        resolve_data_asset(data, stores, "azureml:rows:1")
    with pytest.raises(DataValidationError, match="azureml:NAME@latest or azureml:NAME:VERSION"):
        parse_asset_uri("azureml:heart@newest")


def test_the_source_records_the_asset_and_its_version(tmp_path) -> None:
    """fetch() follows the resolver to the asset's storage; here the asset points at a local file."""
    local = tmp_path / "h.csv"
    local.write_text("a,b\n1,2\n")
    data, stores = _fakes({"heart:3": Data(name="heart", version="3", type="uri_file", path=str(local))})
    fetched = fetch("azureml:heart@latest", tmp_path, asset_resolver=lambda uri: resolve_data_asset(data, stores, uri))
    assert fetched.local == local and fetched.version == "3" and fetched.resolved.startswith("azureml:heart@latest -> ")
