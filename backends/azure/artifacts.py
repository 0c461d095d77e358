"""Files (plots, the feature-importance image) attached to a trial's run in the workspace's MLflow, so they
sit next to the trial's metrics in Azure ML Studio instead of staying on the machine that made them.

The workspace's MLflow tracking URI (``azureml://...``, from ``ml_client.workspaces.get(name)``) is the
documented way to reach its runs with MLflow; the ``azureml-mlflow`` plugin handles that scheme, signing
in with heartflow's credential (``mlflow_auth``), the one every other Azure call uses. MLflow bounds each HTTP request with its own timeout
(MLFLOW_HTTP_REQUEST_TIMEOUT, 120 s by default).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from azure.core.exceptions import AzureError, ClientAuthenticationError
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from backends.azure.mlflow_auth import authenticated_tracking_uri, tracking_uri_scope
from backends.azure.resilience import translate
from backends.errors import ConfigurationError, RegistrationError

logger = logging.getLogger(__name__)

_SIGN_IN = ("could not sign in to {what} in the workspace's MLflow ({error}): check `az login` or "
            "AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET (docs/azure.md)")
ARTIFACT_FOLDER = "plots"  # the folder under the run's artifacts (runs:/<run id>/plots/<name>, as the local backend)


def workspace_tracking_uri(ml_client: Any, workspace_name: str, call: Callable[..., Any], credential: Any) -> str:
    """The workspace's MLflow tracking URI, bound to ``credential`` for every MLflow call on it (``call``
    wraps the SDK call in the retry policy)."""
    try:
        workspace = call("read the workspace", ml_client.workspaces.get, workspace_name)
    except AzureError as exc:
        raise translate(exc, RegistrationError, f"reading the MLflow tracking URI of workspace {workspace_name}") from exc
    uri = getattr(workspace, "mlflow_tracking_uri", None)
    if not uri:
        raise RegistrationError(
            f"workspace {workspace_name} reports no MLflow tracking URI: check that it is an Azure ML workspace "
            "(not a hub) and that your identity may read it"
        )
    return authenticated_tracking_uri(str(uri), credential)


def attach_to_run(tracking_uri: str, run_id: str, files: Sequence[Path], folder: str = ARTIFACT_FOLDER) -> list[str]:
    """Log ``files`` as artifacts of run ``run_id`` under ``folder``; return their artifact paths. Every file
    is checked before the first upload, so a missing one leaves nothing half-attached."""
    paths = [Path(f) for f in files]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ConfigurationError(f"cannot attach {', '.join(missing)} to run {run_id}: no such file")
    if not run_id:
        raise RegistrationError("the model version names no source trial run, so its files have no run to go to")
    names = [p.name for p in paths]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigurationError(f"cannot attach two files named {duplicates} to one run folder: rename one")
    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        with tracking_uri_scope(tracking_uri):  # azureml-mlflow's artifact repository reads the default URI
            client.get_run(run_id)
            for path in paths:
                client.log_artifact(run_id, str(path), artifact_path=folder)
    except ClientAuthenticationError as exc:
        raise ConfigurationError(_SIGN_IN.format(what=f"attach files to run {run_id}", error=type(exc).__name__)) from exc
    except MlflowException as exc:
        raise RegistrationError(
            f"could not attach {len(paths)} file(s) to run {run_id} in the workspace's MLflow: {exc}. "
            "Check that the run exists and that your identity may write to the workspace (AzureML Data Scientist)"
        ) from exc
    logger.info("attached %s file(s) to run %s under %s/", len(paths), run_id, folder)
    return [f"{folder}/{name}" for name in names]


def attach_for(session: Any, run_id: str, files: Sequence[Path]) -> None:
    """Log ``files`` to run ``run_id`` in the MLflow of ``session``'s workspace (an AzureSession)."""
    client = session.client("attach files")
    uri = workspace_tracking_uri(client, session.settings.workspace_name, session.call, session.credential)
    attach_to_run(uri, run_id, files)


def record_gate_for(session: Any, run_id: str, numbers: Mapping[str, Any]) -> None:
    """The gate's numbers as ``gate_*`` metrics and tags of run ``run_id`` in the workspace's MLflow, as the
    local backend keeps them (one batch: all or nothing)."""
    from mlflow.entities import Metric, RunTag

    from backends.domain.gate_stats import gate_metrics_and_tags

    if not run_id:
        raise RegistrationError("the model version names no source trial run, so the gate's numbers have no run")
    metrics, tags = gate_metrics_and_tags(numbers)
    client = MlflowClient(tracking_uri=workspace_tracking_uri(
        session.client("record the gate"), session.settings.workspace_name, session.call, session.credential))
    now = int(time.time() * 1000)
    try:
        client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
                         tags=[RunTag(k, v) for k, v in tags.items()])
    except ClientAuthenticationError as exc:
        raise ConfigurationError(_SIGN_IN.format(what=f"record the gate on run {run_id}", error=type(exc).__name__)) from exc
    except MlflowException as exc:
        raise RegistrationError(f"could not record the gate's numbers on run {run_id} in the workspace's MLflow: {exc}") from exc


def log_metrics_for(session: Any, run_id: str, metrics: Mapping[str, float], step: int, what: str) -> None:
    """``metrics`` at ``step`` on run ``run_id`` in the workspace's MLflow (one batch: all or nothing)."""
    from mlflow.entities import Metric

    if not run_id:
        raise RegistrationError(f"the model version names no source trial run, so {what} has no run to go to")
    client = MlflowClient(tracking_uri=workspace_tracking_uri(
        session.client(what), session.settings.workspace_name, session.call, session.credential))
    now = int(time.time() * 1000)
    try:
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])
    except ClientAuthenticationError as exc:
        raise ConfigurationError(_SIGN_IN.format(what=f"log {what} on run {run_id}", error=type(exc).__name__)) from exc
    except MlflowException as exc:
        raise RegistrationError(f"could not log {what} on run {run_id} in the workspace's MLflow: {exc}") from exc
