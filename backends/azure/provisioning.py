"""Get-or-create of the workspace's resources, and the removal of what heartflow created."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError

from backends.azure import entities
from backends.azure.ledger import CreatedResource
from backends.azure.resilience import await_poller, translate
from backends.azure.session import AzureSession
from backends.azure.storage import container_scope
from backends.errors import ConfigurationError, DeploymentError, HeartflowError, SweepError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProvisionReport:
    """What ``provision`` found and what it created (``kind name`` strings)."""

    created: tuple[str, ...]
    existing: tuple[str, ...]

    def render(self) -> str:
        lines = [f"created   {item}" for item in self.created] + [f"existing  {item}" for item in self.existing]
        return "\n".join(lines) or "nothing to do"


@dataclass(frozen=True)
class TeardownReport:
    """What ``teardown_all`` removed (or, without ``yes``, would remove)."""

    planned: tuple[str, ...]
    deleted: tuple[str, ...]
    missing: tuple[str, ...]
    confirmed: bool

    def render(self) -> str:
        if not self.confirmed:
            if not self.planned:
                return "heartflow created nothing that still needs removing"
            return "would delete (confirm with --yes):\n" + "\n".join(f"  {item}" for item in self.planned)
        lines = [f"deleted   {item}" for item in self.deleted] + [f"gone      {item}" for item in self.missing]
        return "\n".join(lines) or "nothing to delete"


class AzureProvisioner:
    """Get-or-create of the workspace's resources (once per backend), provision, and teardown_all."""

    def __init__(self, session: AzureSession) -> None:
        self._az = session
        self._ensured: set[str] = set()

    def _get_or_create(self, kind: str, name: str, get: Callable[[], Any], create: Callable[[], Any],
                       error: type[HeartflowError], report: dict[str, list[str]] | None = None) -> bool:
        """True when created. ``create`` returns a poller or the created entity."""
        label = f"{kind} {name}"
        try:
            self._az.call(f"read {label}", get)
            if report is not None:
                report["existing"].append(label)
            return False
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise translate(exc, error, f"reading {label}") from exc
        logger.info("creating %s", label)
        try:
            outcome = self._az.call(f"create {label}", create)
        except AzureError as exc:
            raise translate(exc, error, f"creating {label}") from exc
        if hasattr(outcome, "wait") and hasattr(outcome, "done"):
            await_poller(outcome, self._az.settings.operation_timeout_s, f"creating {label}", error)
        self._az.ledger.record(kind, name, self._az.workspace_scope)
        if report is not None:
            report["created"].append(label)
        return True

    def ensure_environment(self, client: Any, report: dict[str, list[str]] | None = None) -> str:
        environment = entities.build_environment(self._az.settings)
        ref = entities.environment_ref(environment)
        if "environment" not in self._ensured or report is not None:
            self._get_or_create("environment", f"{environment.name}:{environment.version}",
                                lambda: client.environments.get(name=environment.name, version=environment.version),
                                lambda: client.environments.create_or_update(environment), SweepError, report)
            self._ensured.add("environment")
        return ref

    def ensure_compute(self, client: Any, report: dict[str, list[str]] | None = None) -> None:
        if "compute" in self._ensured and report is None:
            return
        compute = entities.build_compute(self._az.settings)
        self._get_or_create("compute", self._az.settings.compute, lambda: client.compute.get(compute.name),
                            lambda: client.compute.begin_create_or_update(compute), SweepError, report)
        self._ensured.add("compute")

    def ensure_datastore(self, client: Any, report: dict[str, list[str]] | None = None) -> None:
        if "datastore" in self._ensured and report is None:
            return
        store = entities.build_datastore(self._az.settings)
        self._get_or_create("datastore", self._az.settings.datastore_name, lambda: client.datastores.get(store.name),
                            lambda: client.datastores.create_or_update(store), SweepError, report)
        self._ensured.add("datastore")

    def ensure_sweep_resources(self) -> str:
        """Compute, environment and datastore a sweep needs (each get-or-create, once per backend)."""
        client = self._az.client("sweep", "storage")
        self.ensure_compute(client)
        self.ensure_datastore(client)
        return self.ensure_environment(client)

    def provision(self, create_workspace: bool = False) -> ProvisionReport:
        """Get-or-create the workspace (only with ``create_workspace``), the compute cluster, the
        environment, the private blob container and its datastore. Idempotent."""
        needs: tuple[Any, ...] = ("storage", "location") if create_workspace else ("storage",)
        client = self._az.client("provision", *needs)
        report: dict[str, list[str]] = {"created": [], "existing": []}
        self._ensure_workspace(client, create_workspace, report)
        self.ensure_compute(client, report)
        self.ensure_environment(client, report)
        if self._az.settings.storage_mode != "workspace":  # else the workspace's default datastore holds the data
            store = self._az.blob_store()
            if store.ensure_container():
                self._az.ledger.record("container", store.container, container_scope(store.service))
                report["created"].append(f"container {store.container}")
            else:
                report["existing"].append(f"container {store.container}")
            self.ensure_datastore(client, report)
        return ProvisionReport(created=tuple(report["created"]), existing=tuple(report["existing"]))

    def _ensure_workspace(self, client: Any, create: bool, report: dict[str, list[str]]) -> None:
        from azure.ai.ml.entities import Workspace

        name = str(self._az.settings.workspace_name)
        try:
            self._az.call("read the workspace", client.workspaces.get, name)
            report["existing"].append(f"workspace {name}")
            return
        except ResourceNotFoundError as exc:
            if not create:
                raise ConfigurationError(
                    f"workspace {name} does not exist in resource group {self._az.settings.resource_group}: check "
                    "AZUREML_WORKSPACE_NAME, or create it with `heartflow provision --backend azure --create-workspace`"
                ) from exc
        except AzureError as exc:
            raise translate(exc, ConfigurationError, f"reading workspace {name}") from exc
        workspace = Workspace(name=name, location=self._az.settings.location, resource_group=self._az.settings.resource_group,
                              display_name=name, description="created by heartflow", tags=dict(entities.CREATED_BY_TAG))
        logger.info("creating workspace %s in %s (takes a few minutes)", name, self._az.settings.location)
        try:
            poller = self._az.call("create the workspace", client.workspaces.begin_create, workspace)
        except AzureError as exc:
            raise translate(exc, ConfigurationError, f"creating workspace {name}",
                            check="the Contributor role on the resource group") from exc
        await_poller(poller, self._az.settings.workspace_timeout_s, f"creating workspace {name}", ConfigurationError)
        self._az.ledger.record("workspace", name, self._az.workspace_scope)
        report["created"].append(f"workspace {name}")

    def teardown_all(self, yes: bool = False) -> TeardownReport:
        """Remove what heartflow created in this workspace (from the ledger): endpoints, the compute
        cluster, the datastore, the environment (archived), the container, and the workspace itself only
        if heartflow created it (permanently, with its dependent resources). Without ``yes`` nothing is
        deleted and the report lists what would be."""
        entries = self._az.ledger.in_scope({self._az.workspace_scope, *self._az.storage_scopes()})
        planned = tuple(f"{e.kind} {e.name}" for e in entries)
        if not yes:
            return TeardownReport(planned=planned, deleted=(), missing=(), confirmed=False)
        client = self._az.client("teardown")
        deleted: list[str] = []
        missing: list[str] = []
        for entry in entries:
            label = f"{entry.kind} {entry.name}"
            gone = self._delete_created(client, entry)
            (deleted if gone else missing).append(label)
            self._az.ledger.forget(entry.kind, entry.name, entry.scope)
        return TeardownReport(planned=planned, deleted=tuple(deleted), missing=tuple(missing), confirmed=True)

    def _delete_created(self, client: Any, entry: CreatedResource) -> bool:
        """Delete one recorded resource; False when it was already gone."""
        timeout = self._az.settings.operation_timeout_s
        try:
            if entry.kind == "endpoint":
                poller = self._az.call("delete the endpoint", client.online_endpoints.begin_delete, name=entry.name)
                await_poller(poller, timeout, f"deleting endpoint {entry.name}", DeploymentError)
            elif entry.kind == "compute":
                poller = self._az.call("delete the compute", client.compute.begin_delete, entry.name)
                await_poller(poller, timeout, f"deleting compute {entry.name}", DeploymentError)
            elif entry.kind == "datastore":
                self._az.call("delete the datastore", client.datastores.delete, entry.name)
            elif entry.kind == "environment":
                name, _, version = entry.name.partition(":")
                self._az.call("archive the environment", client.environments.archive, name=name, version=version or None)
            elif entry.kind == "container":
                return self._az.blob_store().delete_container(entry.name)
            elif entry.kind == "workspace":
                poller = self._az.call("delete the workspace", client.workspaces.begin_delete, entry.name,
                                   delete_dependent_resources=True, permanently_delete=True)
                await_poller(poller, self._az.settings.workspace_timeout_s, f"deleting workspace {entry.name}", DeploymentError)
            else:
                logger.warning("unknown recorded resource kind %s; skipped", entry.kind)
                return False
        except ResourceNotFoundError:
            return False
        except DeploymentError as exc:
            if isinstance(exc.__cause__, ResourceNotFoundError):
                return False
            raise
        except AzureError as exc:
            raise translate(exc, DeploymentError, f"deleting {entry.kind} {entry.name}") from exc
        logger.info("deleted %s %s", entry.kind, entry.name)
        return True
