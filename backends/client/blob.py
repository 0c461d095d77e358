"""A client of Azure Blob Storage for data sources, used by either backend: reading
: ``az://<container>/<path>``, a blob URL
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

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from backends.errors import DataValidationError

logger = logging.getLogger(__name__)


class BlobSettings(BaseSettings):
    """The storage settings a blob source may use (environment or .env), the same variables as the Azure
    backend's overrides; a blob source needs no workspace."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)
    storage_connection_string: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("AZURE_STORAGE_CONNECTION_STRING", "storage_connection_string"))
    storage_account_url: str | None = Field(
        default=None, validation_alias=AliasChoices("AZURE_STORAGE_ACCOUNT_URL", "storage_account_url"))


def _development_storage() -> str:
    """The connection string `UseDevelopmentStorage=true` stands for: the emulator's published development
    account on 127.0.0.1:10000. azure-storage-blob expands the shortcut itself only from 12.28; the version
    azureml-mlflow allows (<= 12.27.1) refuses it. The account's name and key come from the Azure Storage SDK
    that ships them (azure-storage-file-share, installed with azure-ai-ml), not from this repository."""
    from azure.storage.fileshare._shared.parser import DEVSTORE_ACCOUNT_KEY, DEVSTORE_ACCOUNT_NAME

    parts = {"DefaultEndpointsProtocol": "http", "AccountName": DEVSTORE_ACCOUNT_NAME,
             "AccountKey": DEVSTORE_ACCOUNT_KEY, "BlobEndpoint": f"http://127.0.0.1:10000/{DEVSTORE_ACCOUNT_NAME}"}
    return ";".join(f"{name}={value}" for name, value in parts.items())


def blob_service_from_connection_string(value: str, **options: Any) -> Any:
    """``BlobServiceClient.from_connection_string``, with the emulator shortcut expanded when this
    version of azure-storage-blob does not know it. Raises the SDK's ValueError for a malformed string."""
    from azure.storage.blob import BlobServiceClient

    try:
        return BlobServiceClient.from_connection_string(value, **options)
    except ValueError:
        if "usedevelopmentstorage=true" not in value.replace(" ", "").lower():
            raise
        return BlobServiceClient.from_connection_string(_development_storage(), **options)


@dataclass(frozen=True)
class BlobContent:
    name: str
    url: str  # the blob's URL (never with a SAS token or key)
    version: str  # ETag and last-modified time
    payload: bytes


def _connection_string(settings: BlobSettings) -> str | None:
    secret = settings.storage_connection_string
    return secret.get_secret_value() if secret is not None else None


def configured_blob_endpoint(settings: BlobSettings | None = None) -> str | None:
    """The blob endpoint of the configured connection string, if any (parsed by the SDK's client)."""
    conn = _connection_string(settings or BlobSettings())
    if conn is None:
        return None
    try:
        return blob_service_from_connection_string(conn).url.rstrip("/")
    except ValueError as exc:
        raise DataValidationError(f"AZURE_STORAGE_CONNECTION_STRING is not a valid connection string: {exc}") from exc


def _blob_client(uri: str, settings: BlobSettings, credential: Any | None, timeout_s: float) -> BlobClient:
    timeouts = {"connection_timeout": timeout_s, "read_timeout": timeout_s}
    conn = _connection_string(settings)
    parsed = urlparse(uri)
    if parsed.scheme == "az":
        container, name = parsed.netloc, unquote(parsed.path.lstrip("/"))
        if not container or not name:
            raise DataValidationError(f"{uri}: a blob source is az://<container>/<path/to/file.csv>")
        if conn is not None:
            return blob_service_from_connection_string(conn, **timeouts).get_blob_client(container, name)
        if not settings.storage_account_url:
            raise DataValidationError(
                f"{uri} names no storage account: set AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT_URL, "
                "or give the blob's https URL"
            )
        service = BlobServiceClient(
            settings.storage_account_url, credential=credential or _default_credential(),
            connection_timeout=timeout_s, read_timeout=timeout_s,
        )
        return service.get_blob_client(container, name)
    endpoint = configured_blob_endpoint(settings)
    if conn is not None and endpoint and uri.startswith(endpoint.rstrip("/") + "/"):
        container, _, name = unquote(uri[len(endpoint.rstrip("/")) + 1:]).partition("/")
        return blob_service_from_connection_string(conn, **timeouts).get_blob_client(container, name)
    return BlobClient.from_blob_url(
        uri, credential=credential or _default_credential(), connection_timeout=timeout_s, read_timeout=timeout_s,
    )


def _default_credential() -> Any:
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def read_blob(uri: str, *, settings: BlobSettings | None = None, credential: Any | None = None,
              timeout_s: float = 60.0) -> BlobContent:
    """Download one blob; every failure is a DataValidationError that says what to check."""
    client = _blob_client(uri, settings or BlobSettings(), credential, timeout_s)
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
