"""One credential for every Azure call, MLflow's included.

Reading trials, attaching plots and recording the gate go through MLflow, whose ``azureml://`` scheme is
handled by azureml-mlflow. Left alone, azureml-mlflow signs in with a chain of its own
(DefaultAzureCredential, then an interactive browser, then a device code), blind to a service principal
given in ``.env`` or a Prefect Secret block: on a headless worker each read would wait for a device-code
login. azureml-mlflow's hook for SDK v2 (``azureml.mlflow.get_mlflow_tracking_uri_v2``) registers a
service context for a tracking URI, holding the credential it is given; every MLflow store and artifact
repository built for that URI then asks that credential for its tokens. heartflow registers its own.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import entry_points
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlparse

from backends.errors import ConfigurationError

_WORKSPACE_PATH = re.compile(
    r"/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.MachineLearningServices/workspaces/([^/?]+)",
    re.IGNORECASE,
)


class _CredentialSlot:
    """What azureml-mlflow's service context holds for one URI: it forwards to the latest credential
    registered for that URI. MLflow caches a store per URI for the life of the process, and the store keeps
    the service context it was built with, so a later registration updates the slot, not the context."""

    def __init__(self, credential: Any) -> None:
        self.credential = credential

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        return self.credential.get_token(*scopes, **kwargs)


# One slot per registered tracking URI, as azureml-mlflow keeps one service context per URI (process-wide).
_SLOTS: dict[str, _CredentialSlot] = {}


def azureml_mlflow_installed() -> bool:
    """True when MLflow can open ``azureml://`` tracking URIs (the azureml-mlflow plugin's entry point)."""
    return any(ep.name == "azureml" for ep in entry_points(group="mlflow.tracking_store"))


def authenticated_tracking_uri(tracking_uri: str, credential: Any, *, host_url: str | None = None) -> str:
    """``tracking_uri`` (the workspace's, as ``workspaces.get`` reports it) bound to ``credential`` for every
    MLflow call on it; the URI to hand MLflow (azureml-mlflow's v2.0 form under MLflow 3). ``host_url``: the
    service's https root, by default that of the URI's host. Without azureml-mlflow the URI comes back as it
    is (the REST reader then signs its requests with ``credential`` itself)."""
    if not tracking_uri.startswith("azureml://") or not azureml_mlflow_installed():
        return tracking_uri
    match = _WORKSPACE_PATH.search(urlparse(tracking_uri).path)
    if match is None:
        raise ConfigurationError(f"the workspace's MLflow tracking URI {tracking_uri!r} names no workspace: "
                                 "check that AZUREML_WORKSPACE_NAME is an Azure ML workspace (not a hub)")
    from azureml.mlflow import get_mlflow_tracking_uri_v2

    subscription_id, resource_group, workspace_name = match.groups()
    host = host_url or f"https://{urlparse(tracking_uri).netloc}"
    key = f"{tracking_uri.split('?')[0]} {host}"
    slot = _SLOTS.get(key)
    if slot is None:
        slot = _SLOTS[key] = _CredentialSlot(credential)
    slot.credential = credential
    return str(get_mlflow_tracking_uri_v2(SimpleNamespace(ml_flow_tracking_uri=tracking_uri), {
        "subscription_id": subscription_id, "resource_group_name": resource_group, "workspace_name": workspace_name,
        "auth": slot, "host_url": host,
    }))


@contextmanager
def tracking_uri_scope(tracking_uri: str) -> Iterator[None]:
    """MLflow's default tracking URI set to ``tracking_uri`` for the block. azureml-mlflow's artifact
    repository finds its service context through the default URI's store, not the client's, so attaching
    files to a workspace run needs this."""
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    exported = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        with _use_tracking_uri(tracking_uri):
            yield
    finally:  # MLflow unsets the variable when no URI was set in code; the user's own setting stays
        if exported is not None:
            os.environ["MLFLOW_TRACKING_URI"] = exported
