"""The training split in Blob Storage: content-addressed, private, never half-written."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContentSettings

from backends.azure.resilience import SDK_CLIENT_OPTIONS, RetryPolicy, translate
from backends.azure.settings import AzureSettings, blob_service_from_connection_string
from backends.base import DataRef
from backends.domain.dataset import canonical_csv
from backends.errors import UploadError

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)


def serialise_split(frame: pd.DataFrame) -> bytes:
    """The bytes that are hashed and stored: the one serialisation both backends use, so a split has
    the same sha256 locally, as a blob name and as the blob's content."""
    return canonical_csv(frame)


def blob_name_for(prefix: str, sha256: str) -> str:
    return f"{prefix.strip('/')}/{sha256}.csv"


def create_blob_service(settings: AzureSettings, credential: Any | None = None, *, account_url: str | None = None) -> BlobServiceClient:
    """A client from the connection string, or from an account URL (the override, or ``account_url``: the
    workspace's default datastore's account) with DefaultAzureCredential. azure-core's own retries are off:
    RetryPolicy is the one retry layer."""
    timeouts = {"connection_timeout": settings.http_timeout_s, "read_timeout": settings.http_timeout_s, **SDK_CLIENT_OPTIONS}
    if settings.storage_connection_string is not None and account_url is None:
        return blob_service_from_connection_string(settings.storage_connection_string.get_secret_value(), **timeouts)
    url = account_url or settings.storage_account_url
    if not url:
        settings.require("storage", stage="upload")
        raise AssertionError("unreachable: require raised")  # pragma: no cover
    if credential is None:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    return BlobServiceClient(account_url=str(url), credential=credential, **timeouts)


def datastore_account_url(datastore: Any) -> str:
    """The blob endpoint of an AzureBlobDatastore (``https://<account>.blob.<endpoint>``)."""
    protocol = getattr(datastore, "protocol", None) or "https"
    endpoint = getattr(datastore, "endpoint", None) or "core.windows.net"
    return f"{protocol}://{datastore.account_name}.blob.{endpoint}"


def datastore_secret(client: Any, call: Any) -> Any | None:
    """The credential the workspace's default datastore holds (its account key, or a SAS token), to upload
    with: the user's own Azure AD identity would need Storage Blob Data Contributor on the account, which
    neither AzureML Data Scientist nor Owner grants. None for an identity-based datastore, or when the
    secret may not be listed (the upload then uses the identity and needs that role)."""
    from azure.ai.ml.entities import AccountKeyConfiguration, SasTokenConfiguration

    try:
        datastore = call("read the default datastore's credentials", client.datastores.get_default, include_secrets=True)
    except AzureError as exc:
        logger.warning("could not read the default datastore's credentials (%s): the upload uses your Azure AD "
                       "identity, which needs Storage Blob Data Contributor on the storage account", type(exc).__name__)
        return None
    credentials = getattr(datastore, "credentials", None)
    if isinstance(credentials, AccountKeyConfiguration) and credentials.account_key:
        return {"account_name": datastore.account_name, "account_key": credentials.account_key}
    if isinstance(credentials, SasTokenConfiguration) and credentials.sas_token:
        return credentials.sas_token
    return None


def container_scope(service: BlobServiceClient) -> str:
    """The ledger scope of a container: the storage account it belongs to."""
    return f"storage/{service.account_name}"


@dataclass(frozen=True)
class StoredSplit:
    """An uploaded split: where it is, and whether this upload created its container."""

    ref: DataRef
    blob_name: str
    container_created: bool


@dataclass
class BlobStore:
    """Get-or-create the private container and store content-addressed blobs in it."""

    service: BlobServiceClient
    container: str
    prefix: str
    retry: RetryPolicy
    timeout_s: float = 60.0

    def ensure_container(self) -> bool:
        """Create the container without public access; True when heartflow created it. Refuses a
        container that allows anonymous reads."""
        client = self.service.get_container_client(self.container)
        try:
            self.retry.call("create the blob container", client.create_container, timeout=int(self.timeout_s))
            logger.info("created private blob container %s", self.container)
            return True
        except ResourceExistsError:
            pass
        except AzureError as exc:
            raise translate(exc, UploadError, f"creating blob container {self.container}",
                            check="the storage account name and the Storage Blob Data Contributor role") from exc
        try:
            props = self.retry.call("read the container's properties", client.get_container_properties, timeout=int(self.timeout_s))
        except AzureError as exc:
            raise translate(exc, UploadError, f"reading blob container {self.container}") from exc
        if getattr(props, "public_access", None):
            raise UploadError(
                f"blob container {self.container} allows anonymous public access ({props.public_access}); "
                "heartflow does not store training data there. Make it private (az storage container "
                f"set-permission --name {self.container} --public-access off) or set HEARTFLOW_AZURE_CONTAINER."
            )
        return False

    def upload(self, frame: pd.DataFrame) -> DataRef:
        return self.store(frame).ref

    def store(self, frame: pd.DataFrame, *, create_container: bool = True) -> StoredSplit:
        """Upload the split (content-addressed, idempotent). ``create_container``: False for a container
        heartflow does not own (the workspace's default datastore), which must already exist."""
        payload = serialise_split(frame)
        sha256 = hashlib.sha256(payload).hexdigest()
        name = blob_name_for(self.prefix, sha256)
        created = self.ensure_container() if create_container else False
        blob = self.service.get_blob_client(self.container, name)
        ref = DataRef(uri=blob.url, sha256=sha256, rows=len(frame), columns=tuple(str(c) for c in frame.columns))
        try:
            if self.retry.call("check the training blob", blob.exists, timeout=int(self.timeout_s)):
                logger.info("training split %s already stored as %s; upload skipped", sha256[:12], name)
                return StoredSplit(ref, name, created)
            # overwrite=False: a concurrent upload of the same content wins and ours is a no-op. A blob
            # becomes visible only when its single put or its block list commits, so a failure leaves none.
            self.retry.call(
                "upload the training split",
                blob.upload_blob,
                payload,
                overwrite=False,
                content_settings=ContentSettings(content_type="text/csv; charset=utf-8"),
                metadata={"sha256": sha256, "rows": str(len(frame)), "created_by": "heartflow"},
                validate_content=True,
                timeout=int(self.timeout_s),
            )
            logger.info("stored training split (%s rows) as %s", len(frame), name)
        except ResourceExistsError:
            logger.info("training split %s was stored concurrently; upload skipped", sha256[:12])
        except AzureError as exc:
            raise translate(exc, UploadError, f"uploading the training split to {self.container}/{name}",
                            check="the storage settings and the Storage Blob Data Contributor role") from exc
        return StoredSplit(ref, name, created)

    def delete_container(self, name: str | None = None) -> bool:
        """Delete the container (``name``, default this store's; teardown --all); False when it did not exist."""
        container = name or self.container
        try:
            self.retry.call("delete the blob container", self.service.delete_container, container, timeout=int(self.timeout_s))
            return True
        except ResourceNotFoundError:
            return False
        except AzureError as exc:
            raise translate(exc, UploadError, f"deleting blob container {container}") from exc
