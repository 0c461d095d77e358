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

from backends.azure import entities
from backends.azure.resilience import translate
from backends.azure.session import AzureSession
from backends.errors import ConfigurationError, DataValidationError, UploadError
from backends.results import DataRef

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


def ensure_data_asset(session: AzureSession, client: Any, data: DataRef, path: str, known: set[str]) -> str:
    """Get-or-create a training split's data asset at ``path`` (version from its sha256); its
    ``azureml:name:version``. ``known`` holds the assets this run already ensured."""
    asset = entities.build_data_asset(session.settings, path=path, sha256=data.sha256, rows=data.rows)
    ref = entities.data_asset_ref(asset)
    if ref in known:
        return ref
    try:
        existing = session.call("read the data asset", client.data.get, name=asset.name, version=asset.version)
    except ResourceNotFoundError:
        existing = None
    except AzureError as exc:
        raise translate(exc, UploadError, f"reading data asset {ref}") from exc
    if existing is not None and (existing.tags or {}).get("sha256") not in (None, data.sha256):
        raise ConfigurationError(
            f"data asset {ref} already holds another split (sha256 {existing.tags['sha256']}); set "
            "HEARTFLOW_AZURE_DATA_ASSET_NAME to another name")
    if existing is None:
        try:
            session.call("register the data asset", client.data.create_or_update, asset)
        except AzureError as exc:
            raise translate(exc, UploadError, f"registering data asset {ref}",
                            check="the AzureML Data Scientist role on the workspace") from exc
        logger.info("registered the training split as data asset %s", ref)
    return ref
