"""A client of Azure Blob Storage for data sources, used by either backend: reading
: ``az://<container>/<path>``, a blob URL
(``https://<account>.blob.core.windows.net/<container>/<path>``), or a URL under the configured
connection string's blob endpoint (an emulator or a custom domain). A URI ending in ``/`` names a prefix
(a "folder"): ``read_blob_folder`` lists the ``.csv`` blobs directly under it and reads them.

Credentials: the configured connection string (AZURE_STORAGE_CONNECTION_STRING) when it names the same
account or endpoint, else DefaultAzureCredential (Storage Blob Data Reader on the container is enough).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlparse

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ClientAuthenticationError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobClient, BlobProperties, BlobServiceClient, ContainerClient

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
    etag: str = ""
    last_modified: str = ""  # ISO 8601


def is_blob_prefix(uri: str) -> bool:
    """True when a blob URI names a prefix (a "folder" of blobs), not one blob: it ends with ``/``."""
    return uri.endswith("/")


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


def _configured_container(
    uri: str, settings: BlobSettings, credential: Any | None, timeout_s: float,
) -> tuple[ContainerClient, str] | None:
    """For an az:// URI, or a URL under the configured connection string's endpoint: the container client
    and the path inside the container (a blob's name, or a folder's prefix). None for any other URL."""
    conn = _connection_string(settings)
    parsed = urlparse(uri)
    if parsed.scheme == "az":
        container, path = parsed.netloc, unquote(parsed.path.lstrip("/"))
        if not container:
            raise DataValidationError(f"{uri}: a blob source is az://<container>/<path/to/file.csv>, or az://<container>/<prefix>/ for its CSV blobs")
        if conn is not None:
            service = blob_service_from_connection_string(conn, connection_timeout=timeout_s, read_timeout=timeout_s)
        elif settings.storage_account_url:
            service = BlobServiceClient(
                settings.storage_account_url, credential=credential or _default_credential(),
                connection_timeout=timeout_s, read_timeout=timeout_s,
            )
        else:
            raise DataValidationError(
                f"{uri} names no storage account: set AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT_URL, "
                "or give its https URL"
            )
        return service.get_container_client(container), path
    endpoint = configured_blob_endpoint(settings)
    if conn is not None and endpoint and uri.startswith(endpoint.rstrip("/") + "/"):
        container, _, path = unquote(uri[len(endpoint.rstrip("/")) + 1:]).partition("/")
        service = blob_service_from_connection_string(conn, connection_timeout=timeout_s, read_timeout=timeout_s)
        return service.get_container_client(container), path
    return None


def _blob_client(uri: str, settings: BlobSettings, credential: Any | None, timeout_s: float) -> BlobClient:
    located = _configured_container(uri, settings, credential, timeout_s)
    if located is not None:
        container, name = located
        if not name:
            raise DataValidationError(f"{uri}: a blob source is az://<container>/<path/to/file.csv>, or az://<container>/<prefix>/ for its CSV blobs")
        return container.get_blob_client(name)
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
    return BlobContent(client.blob_name, client.url, version, bytes(payload), etag=str(props.etag or ""),
                       last_modified=modified)


def _container_client(uri: str, settings: BlobSettings, credential: Any | None, timeout_s: float) -> tuple[ContainerClient, str]:
    """The container a prefix URI names, and the prefix inside it; the same credentials as ``_blob_client``."""
    located = _configured_container(uri, settings, credential, timeout_s)
    if located is not None:
        return located
    parsed = urlparse(uri)
    container, _, prefix = unquote(parsed.path.lstrip("/")).partition("/")
    if not container:
        raise DataValidationError(f"{uri}: a blob folder URL is https://<account>.blob.core.windows.net/<container>/<prefix>/")
    client = ContainerClient.from_container_url(
        f"{parsed.scheme}://{parsed.netloc}/{container}", credential=credential or _default_credential(),
        connection_timeout=timeout_s, read_timeout=timeout_s,
    )
    return client, prefix


def _listed_csvs(container: ContainerClient, prefix: str, where: str, timeout_s: float) -> list[BlobProperties]:
    """The ``.csv`` blobs directly under ``prefix`` (not in deeper "folders"), in name order."""
    try:
        listed = [
            item for item in container.walk_blobs(name_starts_with=prefix, delimiter="/", timeout=int(timeout_s))
            if isinstance(item, BlobProperties)
        ]
    except ResourceNotFoundError as exc:
        raise DataValidationError(f"blob folder {where}: container {container.container_name} does not exist") from exc
    except ClientAuthenticationError as exc:
        raise DataValidationError(
            f"not allowed to list blob folder {where}: check the connection string or the identity's "
            "Storage Blob Data Reader role"
        ) from exc
    except AzureError as exc:
        raise DataValidationError(f"could not list blob folder {where}: {type(exc).__name__}: {exc}") from exc
    leaf = len(prefix)
    return sorted(
        (b for b in listed if b.name.lower().endswith(".csv") and not b.name[leaf:].startswith(".")),
        key=lambda b: b.name,
    )


def read_blob_folder(
    uri: str, *, newest_only: bool = False, settings: BlobSettings | None = None, credential: Any | None = None,
    timeout_s: float = 60.0,
) -> tuple[str, tuple[BlobContent, ...]]:
    """(the prefix's URL, its ``.csv`` blobs in name order, downloaded); with ``newest_only`` only the last
    modified one (ties broken by name). Each blob is read at the ETag it was listed with, so a blob replaced
    mid-read is an error rather than a mix. An empty prefix and every storage failure are a
    DataValidationError that says what to check."""
    container, prefix = _container_client(uri, settings or BlobSettings(), credential, timeout_s)
    where = f"{container.url.rstrip('/')}/{prefix}"
    blobs = _listed_csvs(container, prefix, where, timeout_s)
    if not blobs:
        raise DataValidationError(
            f"blob folder {where} holds no .csv blob: upload the table there as <prefix>/<name>.csv "
            "(blobs in deeper folders are not read)"
        )
    if newest_only:
        blobs = [max(blobs, key=lambda b: (b.last_modified, b.name))]
    read = []
    for listed in blobs:
        client = container.get_blob_client(listed.name)
        etag = str(listed.etag).strip('"')  # a listing gives it bare, a download's properties quoted
        try:
            downloader = client.download_blob(etag=f'"{etag}"', match_condition=MatchConditions.IfNotModified,
                                              timeout=int(timeout_s))
            payload = downloader.readall()
        except ResourceModifiedError as exc:
            raise DataValidationError(f"blob {client.url} changed while the folder was read: run again") from exc
        except ResourceNotFoundError as exc:
            raise DataValidationError(f"blob {client.url} was deleted while the folder was read: run again") from exc
        except AzureError as exc:
            raise DataValidationError(f"could not read blob {client.url}: {type(exc).__name__}: {exc}") from exc
        modified = listed.last_modified.isoformat() if listed.last_modified else ""
        read.append(BlobContent(listed.name, client.url, f"etag {etag} modified {modified}".strip(),
                                bytes(payload), etag=etag, last_modified=modified))
    logger.info("read %d blob(s) under %s (%d bytes)", len(read), where, sum(len(b.payload) for b in read))
    return where, tuple(read)
