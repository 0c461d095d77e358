"""``heartflow check --backend azure``: is this workspace ready for a run? Read-only.

Each check reads (never creates, updates or deletes): who signed in, the workspace and its region, the
compute cluster and its size, the vCPU quota left for the cluster's and the endpoint's VM families, whether
the endpoint name is free in the region or already heartflow's, and whether the storage answers. The
result is a frozen report; a line that blocks a run says what to do.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import socket
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from azure.core.exceptions import AzureError, ClientAuthenticationError, ResourceNotFoundError

from backends.azure import naming
from backends.azure.entities import CREATED_BY_TAG
from backends.azure.resilience import status_of
from backends.azure.storage import datastore_secret
from backends.azure.trials import ARM_SCOPE
from backends.errors import HeartflowError

if TYPE_CHECKING:
    from backends.azure.backend import AzureBackend
    from backends.domain.spec import PipelineSpec

logger = logging.getLogger(__name__)

Status = Literal["ok", "warn", "fail"]
# Managed online endpoints: Azure keeps 20 % of a deployment's instances in reserve for upgrades, so a
# deployment of n instances needs the quota of ceil(1.2 n).
ENDPOINT_QUOTA_RESERVE = 0.2


@dataclass(frozen=True)
class CheckLine:
    """One readiness check: what was checked, its outcome, what was found and (when not ok) what to do."""

    name: str
    status: Status
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class ReadinessReport:
    lines: tuple[CheckLine, ...]

    @property
    def ready(self) -> bool:
        """False when any line blocks a run."""
        return all(line.status != "fail" for line in self.lines)

    def line(self, name: str) -> CheckLine:
        return next(line for line in self.lines if line.name == name)


def _name_of(usage: Any) -> tuple[str, str]:
    """(value, localized value) of a Usage's name: a UsageName, or the dict the SDK's listing leaves."""
    name = getattr(usage, "name", None)
    if isinstance(name, dict):
        return str(name.get("value") or ""), str(name.get("localized_value") or "")
    return str(getattr(name, "value", "") or ""), str(getattr(name, "localized_value", "") or "")


def _claims(token: str) -> dict[str, Any]:
    """The (unverified) claims of a JWT, only to show who signed in; never logged with the token."""
    try:
        payload = token.split(".")[1]
        return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))
    except (IndexError, ValueError):
        return {}


def dns_name_taken(host: str, timeout_s: float = 5.0) -> bool | None:
    """True when ``host`` resolves (someone holds the endpoint name in that region); None when unknown."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(socket.getaddrinfo, host, 443)
        try:
            future.result(timeout=timeout_s)
            return True
        except socket.gaierror:
            return False
        except (FutureTimeout, OSError):
            return None


class ReadinessCheck:
    """The checks, each isolated: one failing never hides the others."""

    def __init__(self, backend: AzureBackend, spec: PipelineSpec,
                 name_taken: Callable[[str], bool | None] | None = None) -> None:
        self.backend = backend
        self.spec = spec
        self.settings = backend.settings
        self._name_taken = name_taken or dns_name_taken
        self.region: str | None = None
        self._sizes: dict[str, Any] | None = None

    def run(self) -> ReadinessReport:
        missing = self.settings.missing(["workspace"])
        if missing:
            return ReadinessReport((CheckLine("settings", "fail", f"not set: {', '.join(missing)}",
                                              "set them in the environment or .env, or run `az ml workspace show` "
                                              "and write .azureml/config.json (docs/azure.md)"),))
        lines = [self._credential()]
        client = self.backend.client("check")
        lines.append(self._workspace(client))
        if lines[-1].status != "fail":
            lines += [self._cluster(client), *self._quota(client), self._endpoint(client), self._storage(client)]
        return ReadinessReport(tuple(lines))

    # --- the checks --------------------------------------------------------------------------

    def _credential(self) -> CheckLine:
        credential = self.backend.credential
        try:
            token = credential.get_token(ARM_SCOPE).token
        except ClientAuthenticationError as exc:
            return CheckLine("credential", "fail", f"no credential could sign in ({type(exc).__name__})",
                             "run `az login`, or set AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET for a service principal")
        used = getattr(credential, "_successful_credential", None) or credential
        claims = _claims(token)
        who = claims.get("upn") or claims.get("unique_name") or claims.get("appid") or claims.get("oid") or "unknown principal"
        return CheckLine("credential", "ok", f"{type(used).__name__} signed in as {who}")

    def _workspace(self, client: Any) -> CheckLine:
        name = str(self.settings.workspace_name)
        try:
            workspace = client.workspaces.get(name)
        except ResourceNotFoundError:
            return CheckLine("workspace", "fail", f"{name} not found in resource group {self.settings.resource_group}",
                             "check AZUREML_WORKSPACE_NAME/AZURE_RESOURCE_GROUP, or create it with "
                             "`heartflow provision --backend azure --create-workspace`")
        except AzureError as exc:
            return CheckLine("workspace", "fail", f"{name} not readable ({_short(exc)})", _access_fix(exc))
        self.region = str(workspace.location or "") or None
        return CheckLine("workspace", "ok", f"{name} in {self.region or 'an unknown region'}")

    def _cluster(self, client: Any) -> CheckLine:
        name = self.settings.compute
        wanted = self.spec.sweep.max_concurrent_trials or self.settings.compute_max_nodes
        try:
            cluster = client.compute.get(name)
        except ResourceNotFoundError:
            return CheckLine("cluster", "ok", f"{name} does not exist yet; the run creates it "
                             f"({self.settings.compute_size}, 0..{self.settings.compute_max_nodes} nodes)")
        except AzureError as exc:
            return CheckLine("cluster", "fail", f"{name} not readable ({_short(exc)})", _access_fix(exc))
        size = getattr(cluster, "max_instances", None) or 0
        if getattr(cluster, "type", "amlcompute") not in ("amlcompute", None):
            return CheckLine("cluster", "fail", f"{name} is a {cluster.type}, not a compute cluster",
                             "set HEARTFLOW_AZURE_COMPUTE to an AmlCompute cluster's name")
        if wanted > size:
            return CheckLine("cluster", "fail", f"{name}: {cluster.size}, at most {size} nodes, but the sweep wants "
                             f"{wanted} trials at once", f"lower sweep.max_concurrent_trials to {size} or run "
                             f"`az ml compute update -n {name} --max-instances {wanted}`")
        return CheckLine("cluster", "ok", f"{name}: {cluster.size}, {getattr(cluster, 'min_instances', 0)}..{size} nodes, "
                         f"room for {wanted} trials at once")

    def _vm_sizes(self, client: Any) -> dict[str, Any]:
        if self._sizes is None:
            self._sizes = {str(s.name).lower(): s for s in client.compute.list_sizes(location=self.region)}
        return self._sizes

    def _quota(self, client: Any) -> list[CheckLine]:
        try:
            sizes = self._vm_sizes(client)
            usages = list(client.compute.list_usage(location=self.region))
        except AzureError as exc:
            return [CheckLine("quota", "warn", f"usage not readable ({_short(exc)})",
                              "the Reader role on the subscription lets the check read quotas")]
        instance_type = self.settings.instance_type or self.spec.deploy.instance_type
        return [
            self._family_quota("cluster quota", sizes, usages, self.settings.compute_size, self.settings.compute_max_nodes),
            # Blue and green run at once during a rollout, and Azure reserves 20 % more for upgrades.
            self._family_quota("endpoint quota", sizes, usages, instance_type, self.spec.deploy.instance_count,
                               deployments=2, reserve=ENDPOINT_QUOTA_RESERVE),
        ]

    def _family_quota(self, label: str, sizes: dict[str, Any], usages: Iterable[Any], vm: str, count: int, *,
                      deployments: int = 1, reserve: float = 0.0) -> CheckLine:
        size = sizes.get(vm.lower())
        if size is None:
            return CheckLine(label, "fail", f"{vm} is not offered in {self.region}",
                             "pick a VM size from `az ml compute list-sizes` for this region")
        needed = int(size.v_cp_us or 0) * math.ceil(count * (1 + reserve) - 1e-9) * deployments
        usage = next((u for u in usages if _name_of(u)[0].lower() == str(size.family).lower()), None)
        if usage is None:
            return CheckLine(label, "warn", f"no quota listed for family {size.family} ({needed} vCPUs needed)",
                             "check Azure portal > Quotas > Machine learning")
        left = int(usage.limit or 0) - int(usage.current_value or 0)
        why = f" (x{deployments} deployments at once, +{reserve:.0%} Azure reserves)" if deployments > 1 or reserve else ""
        detail = f"{vm} x{count}{why} needs {needed} vCPUs of {size.family}; {left} of {usage.limit} left"
        if needed > left:
            return CheckLine(label, "fail", detail, f"request more {size.family} quota (Azure portal > Quotas > "
                             "Machine learning) or pick a smaller size / fewer nodes")
        return CheckLine(label, "ok", detail)

    def _endpoint(self, client: Any) -> CheckLine:
        # The name the run will use: the tutorial's default becomes the workspace's derived hf-<hash> name.
        name = naming.endpoint_name(self.settings, self.spec.deploy.endpoint_name)
        try:
            endpoint = client.online_endpoints.get(name)
        except ResourceNotFoundError:
            endpoint = None
        except AzureError as exc:
            return CheckLine("endpoint name", "fail", f"{name} not readable ({_short(exc)})", _access_fix(exc))
        if endpoint is not None:
            ours = all((endpoint.tags or {}).get(k) == v for k, v in CREATED_BY_TAG.items())
            if ours:
                return CheckLine("endpoint name", "ok", f"{name} exists and is heartflow's; the run rolls out to it")
            return CheckLine("endpoint name", "fail", f"{name} exists in this workspace but heartflow did not create it",
                             "pick another name (--endpoint-name) so heartflow never changes an endpoint it does not own")
        host = f"{name}.{self.region}.inference.ml.azure.com" if self.region else ""
        taken = self._name_taken(host) if host else None
        if taken:
            return CheckLine("endpoint name", "fail", f"{name} is taken in {self.region} (names are unique per region)",
                             "pick another name with --endpoint-name")
        if taken is None:
            return CheckLine("endpoint name", "warn", f"{name} is free in this workspace; its region could not be checked",
                             "if the deploy says the name is taken, pick another with --endpoint-name")
        return CheckLine("endpoint name", "ok", f"{name} is free in {self.region}")

    def _storage(self, client: Any) -> CheckLine:
        mode = self.settings.storage_mode
        try:
            store = self.backend.blob_store()
            exists = store.service.get_container_client(store.container).exists(timeout=int(self.settings.http_timeout_s))
        except (AzureError, HeartflowError) as exc:
            return CheckLine("storage", "fail", f"{mode} storage not reachable ({_short(exc)})",
                             "check the storage settings and the Storage Blob Data Contributor role on the account")
        where = f"container {store.container} of account {store.service.account_name}"
        if mode == "workspace":
            if not exists:
                return CheckLine("storage", "fail", f"{where} (the default datastore's) does not exist",
                                 "repair the workspace's default datastore, or set AZURE_STORAGE_ACCOUNT_URL")
            if datastore_secret(client, self.backend.call) is None:
                # No key or SAS to upload with: the upload signs in as the user, and a write needs a data role.
                return CheckLine("storage", "warn", f"{where} (workspace default datastore); the datastore holds no "
                                 "credential heartflow may use, so the upload signs in with your Azure AD identity",
                                 f"ask for Storage Blob Data Contributor on storage account {store.service.account_name} "
                                 "(AzureML Data Scientist and Owner do not grant it), or the first upload fails with 403")
            return CheckLine("storage", "ok", f"{where} (workspace default datastore; the upload uses the datastore's own key)")
        if exists:
            return CheckLine("storage", "ok", f"{where} ({mode})")
        return CheckLine("storage", "ok", f"{where} does not exist yet; the upload creates it (private)")


def _short(exc: BaseException) -> str:
    status = status_of(exc)
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
    return f"{type(exc).__name__}{f' {status}' if status else ''}: {text}"


def _access_fix(exc: BaseException) -> str:
    if isinstance(exc, ClientAuthenticationError) or status_of(exc) in (401, 403):
        return "ask for the AzureML Data Scientist role on the workspace (docs/azure.md)"
    return "try again; if it persists, check https://status.azure.com"


def check_readiness(backend: AzureBackend, spec: PipelineSpec,
                    name_taken: Callable[[str], bool | None] | None = None) -> ReadinessReport:
    """Run every readiness check against the workspace (read-only)."""
    return ReadinessCheck(backend, spec, name_taken).run()
