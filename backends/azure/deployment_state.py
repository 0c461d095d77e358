"""A deployment's provisioning state, read from the service rather than from one poller.

A deployment takes minutes to create. A network blip while its operation is polled ends that poller (it
re-raises the same error on every later wait), yet Azure goes on creating the deployment; a second PUT
meanwhile is refused (409, "an operation is in progress"). So heartflow waits on the deployment itself:
it reads ``online_deployments.get`` under the retry policy until the state is final, and on a retried
stage it first reads the deployment the earlier attempt left, waits on it, and reuses it when it already
serves this model on this size and environment.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError

from backends.azure.resilience import translate
from backends.azure.session import AzureSession
from backends.errors import DeploymentError

logger = logging.getLogger(__name__)

# azure.ai.ml's DeploymentProvisioningState: Creating, Deleting, Scaling, Updating are under way.
IN_PROGRESS = frozenset({"creating", "updating", "scaling", "deleting"})
FINAL = frozenset({"succeeded", "failed", "canceled"})
_ARM_ASSET = re.compile(r"/(?:models|environments)/([^/]+)/versions/([^/]+)$", re.IGNORECASE)


def state_of(deployment: Any) -> str:
    """The provisioning state, lowercased (the SDK answers a str Enum whose str() is the member's name)."""
    raw = getattr(deployment, "provisioning_state", None) or ""
    return str(getattr(raw, "value", raw)).lower()


def asset_ref(value: Any) -> tuple[str, str] | None:
    """(name, version) of a model or environment as a deployment names it: ``azureml:name:version`` as
    heartflow sends it, or the ARM id ``.../models/<name>/versions/<version>`` the service answers."""
    text = str(getattr(value, "id", None) or value or "")
    match = _ARM_ASSET.search(text)
    if match:
        return match.group(1), match.group(2)
    parts = text.removeprefix("azureml:").split(":")
    return (parts[0], parts[1]) if len(parts) == 2 and all(parts) else None


@dataclass(frozen=True)
class DeploymentWanted:
    """What a deployment must be for heartflow to reuse it instead of writing it again."""

    model: tuple[str, str] | None
    environment: tuple[str, str] | None
    instance_type: str
    instance_count: int

    @classmethod
    def of(cls, deployment: Any) -> DeploymentWanted:
        return cls(asset_ref(deployment.model), asset_ref(deployment.environment),
                   str(deployment.instance_type or "").lower(), int(deployment.instance_count or 0))

    def matches(self, existing: Any) -> bool:
        return DeploymentWanted.of(existing) == self


def read_deployment(session: AzureSession, client: Any, endpoint: str, name: str) -> Any | None:
    """The deployment as the service holds it, or None when there is none."""
    try:
        return session.call(f"read deployment {name}", client.online_deployments.get, name=name, endpoint_name=endpoint)
    except ResourceNotFoundError:
        return None
    except AzureError as exc:
        raise translate(exc, DeploymentError, f"reading deployment {name} of endpoint {endpoint}") from exc


def wait_for_deployment(session: AzureSession, client: Any, endpoint: str, name: str, timeout_s: float) -> Any:
    """Read the deployment until its state is final; it, or DeploymentError after ``timeout_s`` (Azure may
    still be working on it: nothing is deleted), or TransientBackendError when reads keep failing."""
    deadline = session.now() + timeout_s
    while True:
        current = read_deployment(session, client, endpoint, name)
        if current is None:
            raise DeploymentError(f"deployment {name} of endpoint {endpoint} disappeared while heartflow waited on it; "
                                  "deploy again")
        state = state_of(current)
        if state not in IN_PROGRESS:
            return current
        if session.now() >= deadline:
            raise DeploymentError(f"deployment {name} of endpoint {endpoint} was still {state} after {timeout_s:.0f} s; "
                                  "it may still finish on Azure. Check it in Azure ML Studio, then run again")
        logger.info("deployment %s of %s is %s; waiting", name, endpoint, state)
        session.pause(session.settings.poll_interval_s)
