"""Names Azure gives meaning to: the endpoint (unique per Azure region, not per workspace) and the
deployments (the SDK lowercases traffic keys, so a deployment name must be lowercase to be found again).

Rule for endpoint names (azure.ai.ml's online endpoint schema and the service): 3 to 32 characters,
letters, digits and '-', starting with a letter. The tutorial's ``heart-classify-endpoint`` is almost
surely taken in a shared region, so when a run asks for it (the CLI's default) heartflow uses
``hf-<10 hex digits of sha256(subscription/resource group/workspace)>`` instead: stable for one
workspace (every run finds the same endpoint), different for two workspaces, 13 characters.
"""

from __future__ import annotations

import hashlib

from backends.azure.settings import AzureSettings
from backends.domain.spec import DeploySpec

TUTORIAL_ENDPOINT_NAME = str(DeploySpec.model_fields["endpoint_name"].default)
DERIVED_PREFIX = "hf-"


def workspace_endpoint_name(subscription_id: str | None, resource_group: str | None, workspace_name: str | None) -> str:
    """The default endpoint name of one workspace."""
    scope = "/".join((subscription_id or "", resource_group or "", workspace_name or "")).lower()
    return DERIVED_PREFIX + hashlib.sha256(scope.encode()).hexdigest()[:10]


def endpoint_name(settings: AzureSettings, requested: str | None = None) -> str:
    """The endpoint a run uses: the configured or requested name, except the tutorial's default, which is
    replaced by the workspace's own name (see the module docstring)."""
    name = settings.endpoint_name or requested
    if not name or name == TUTORIAL_ENDPOINT_NAME:
        return workspace_endpoint_name(settings.subscription_id, settings.resource_group, settings.workspace_name)
    return name


def deployment_names(settings: AzureSettings) -> tuple[str, str]:
    """The blue and green deployment names, lowercased: Azure ML lowercases traffic keys, so a mixed-case
    name would never be seen serving and the next rollout could overwrite it."""
    return settings.blue_deployment.lower(), settings.green_deployment.lower()
