"""Reading a data source from Blob Storage: ``az://<container>/<path>``, a blob URL
(``https://<account>.blob.core.windows.net/<container>/<path>``), or a URL under the configured
connection string's blob endpoint (an emulator or a custom domain).

Credentials: the configured connection string (AZURE_STORAGE_CONNECTION_STRING) when it names the same
account or endpoint, else DefaultAzureCredential (Storage Blob Data Reader on the container is enough).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlparse

from azure.core.exceptions import AzureError, ClientAuthenticationError, ResourceNotFoundError
from azure.storage.blob import BlobClient, BlobServiceClient

from backends.azure.settings import AzureSettings
from backends.errors import DataValidationError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BlobContent:
    name: str
    url: str  # the blob's URL (never with a SAS token or key)
    version: str  # ETag and last-modified time
    payload: bytes


def _connection_string(settings: AzureSettings) -> str | None:
    secret = settings.storage_connection_string
    return secret.get_secret_value() if secret is not None else None


def configured_blob_endpoint(settings: AzureSettings | None = None) -> str | None:
    """The blob endpoint of the configured connection string, if any (parsed by the SDK's client)."""
    conn = _connection_string(settings or AzureSettings())
    if conn is None:
        return None
    try:
        return BlobServiceClient.from_connection_string(conn).url.rstrip("/")
    except ValueError as exc:
        raise DataValidationError(f"AZURE_STORAGE_CONNECTION_STRING is not a valid connection string: {exc}") from exc


def _blob_client(uri: str, settings: AzureSettings, credential: Any | None, timeout_s: float) -> BlobClient:
    timeouts = {"connection_timeout": timeout_s, "read_timeout": timeout_s}
    conn = _connection_string(settings)
    parsed = urlparse(uri)
    if parsed.scheme == "az":
        container, name = parsed.netloc, unquote(parsed.path.lstrip("/"))
        if not container or not name:
            raise DataValidationError(f"{uri}: a blob source is az://<container>/<path/to/file.csv>")
        if conn is not None:
            return BlobServiceClient.from_connection_string(conn, **timeouts).get_blob_client(container, name)
        if not settings.storage_account_url:
            raise DataValidationError(
                f"{uri} names no storage account: set AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT_URL, "
                "or give the blob's https URL"
            )
        service = BlobServiceClient(settings.storage_account_url, credential=credential or _default_credential(), **timeouts)
        return service.get_blob_client(container, name)
    endpoint = configured_blob_endpoint(settings)
    if conn is not None and endpoint and uri.startswith(endpoint.rstrip("/") + "/"):
        container, _, name = unquote(uri[len(endpoint.rstrip("/")) + 1:]).partition("/")
        return BlobServiceClient.from_connection_string(conn, **timeouts).get_blob_client(container, name)
    return BlobClient.from_blob_url(uri, credential=credential or _default_credential(), **timeouts)


def _default_credential() -> Any:
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def read_blob(uri: str, *, settings: AzureSettings | None = None, credential: Any | None = None,
              timeout_s: float = 60.0) -> BlobContent:
    """Download one blob; every failure is a DataValidationError that says what to check."""
    client = _blob_client(uri, settings or AzureSettings(), credential, timeout_s)
    try:
        downloader = client.download_blob(timeout=int(timeout_s))
        payload = downloader.readall()
        props = downloader.properties
    except ResourceNotFoundError as exc:
        raise DataValidationError(f"blob {client.url} does not exist: check the container and path") from exc
    except ClientAuthenticationError as exc:
        raise DataValidationError(
            f"not allowed to read blob {client.url}: check the connection string or the identity's "
            "Storage Blob Data Reader role"
        ) from exc
    except AzureError as exc:
        raise DataValidationError(f"could not read blob {client.url}: {type(exc).__name__}: {exc}") from exc
    modified = props.last_modified.isoformat() if props.last_modified else ""
    version = f"etag {props.etag} modified {modified}".strip()
    logger.info("read blob %s (%d bytes, %s)", client.url, len(payload), version)
    return BlobContent(client.blob_name, client.url, version, bytes(payload))
