"""A registered Azure ML data asset as a data source: ``azureml:NAME@latest`` or ``azureml:NAME:VERSION``.

The asset (a ``uri_file``) is looked up with ``ml_client.data``; a datastore path
(``azureml://[...]/datastores/<store>/paths/<path>``) becomes the blob URL of that datastore's container,
read by ``backends.client.blob``. The version recorded is the asset's version.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError

from backends.errors import DataValidationError

logger = logging.getLogger(__name__)

ASSET_RULE = re.compile(r"^azureml:(?P<name>[A-Za-z0-9][A-Za-z0-9_.\-]{0,254})(?:@(?P<label>latest)|:(?P<version>[A-Za-z0-9_.\-]+))$")
DATASTORE_PATH = re.compile(r"^azureml://(?:.*/)?datastores/(?P<store>[^/]+)/paths/(?P<path>.+)$")


def parse_asset_uri(uri: str) -> tuple[str, str | None]:
    """(name, version); version None means the latest."""
    match = ASSET_RULE.match(uri.strip())
    if match is None:
        raise DataValidationError(f"{uri}: a data asset is azureml:NAME@latest or azureml:NAME:VERSION")
    return match["name"], match["version"]


def _datastore_blob_url(datastores: Any, path: str) -> str:
    match = DATASTORE_PATH.match(path)
    if match is None:
        return path
    try:
        store = datastores.get(match["store"])
    except ResourceNotFoundError as exc:
        raise DataValidationError(f"the data asset's datastore {match['store']!r} does not exist in the workspace") from exc
    account, container = getattr(store, "account_name", None), getattr(store, "container_name", None)
    if not account or not container:
        raise DataValidationError(
            f"datastore {match['store']!r} is not an Azure Blob datastore: register the asset on a blob datastore"
        )
    protocol = getattr(store, "protocol", None) or "https"
    endpoint = getattr(store, "endpoint", None) or "core.windows.net"
    return f"{protocol}://{account}.blob.{endpoint}/{container}/{match['path'].lstrip('/')}"


def resolve_data_asset(data: Any, datastores: Any, uri: str) -> tuple[str, str]:
    """(blob URL or https URL of the asset's file, the asset's version), from ``ml_client.data`` and
    ``ml_client.datastores``."""
    name, version = parse_asset_uri(uri)
    try:
        asset = data.get(name, version=version) if version else data.get(name, label="latest")
    except ResourceNotFoundError as exc:
        which = f"version {version}" if version else "any version"
        raise DataValidationError(f"data asset {name!r} has no {which} in the workspace: see `az ml data list`") from exc
    except AzureError as exc:
        raise DataValidationError(f"could not read data asset {uri}: {type(exc).__name__}: {exc}") from exc
    if getattr(asset, "type", "uri_file") != "uri_file":
        raise DataValidationError(f"data asset {uri} is a {asset.type}: heartflow reads a uri_file asset (one CSV)")
    url = _datastore_blob_url(datastores, str(asset.path))
    logger.info("data asset %s:%s is %s", asset.name, asset.version, url)
    return url, str(asset.version)
