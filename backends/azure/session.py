"""What the Azure collaborators (registry, endpoints, provisioner) share: the settings, the MLClient, the
retry policy, the ledger of created resources and the blob store. ``AzureBackend`` provides it; the
collaborators depend on this protocol, not on the backend class."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from backends.azure.ledger import Ledger
    from backends.azure.settings import AzureSettings, Need
    from backends.azure.storage import BlobStore


class AzureSession(Protocol):
    settings: AzureSettings
    ledger: Ledger

    @property
    def workspace_scope(self) -> str: ...

    @property
    def credential(self) -> Any:
        """The one Azure credential of every call (the SDK's, Blob Storage's and MLflow's)."""
        ...

    def client(self, stage: str, *extra: Need) -> Any:
        """The MLClient, after checking that ``stage`` has every setting it needs."""
        ...

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One Azure call under the retry policy."""
        ...

    def listing(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> list[Any]:
        """A paged listing read to its end under the retry policy (the SDK's pagers fetch pages lazily)."""
        ...

    def now(self) -> float:
        """A monotonic clock (injectable in tests)."""
        ...

    def pause(self, seconds: float) -> None:
        """Sleep between polls (injectable in tests)."""
        ...

    def blob_store(self) -> BlobStore: ...

    def storage_scopes(self) -> list[str]:
        """The storage accounts heartflow may have created containers in (the ledger's scopes)."""
        ...
