"""Where the plots go: into the MLflow run they describe (local backend), else a local folder.

On the local backend a plot is logged with ``MlflowClient.log_artifact`` under ``plots/`` of the run
(the sweep's parent run, or the model version's source trial run), so it sits beside the model in the
MLflow UI. The Azure backend reads its workspace's MLflow through a small REST reader and has no
artifact upload path, so its plots stay as files in ``folder`` (and the markdown links point there).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mlflow.exceptions import MlflowException

from backends.base import Backend

logger = logging.getLogger(__name__)

PLOTS_DIR = "plots"


@dataclass(frozen=True)
class StoredPlot:
    name: str  # the file name, e.g. sweep-accuracy.png
    uri: str  # where it is now: an MLflow artifact URI, or a file:// URI
    mlflow_path: str | None = None  # runs:/<run id>/plots/<name> when logged to MLflow


def store_plots(backend: Backend, run_id: str | None, files: Sequence[Path]) -> list[StoredPlot]:
    """Log ``files`` to MLflow run ``run_id`` when the backend is local; otherwise keep them where they are."""
    from backends.local.backend import LocalBackend

    if isinstance(backend, LocalBackend) and run_id:
        client = backend.mlflow_client
        try:
            artifact_uri = client.get_run(run_id).info.artifact_uri
            stored = []
            for file in files:
                client.log_artifact(run_id, str(file), artifact_path=PLOTS_DIR)
                stored.append(
                    StoredPlot(file.name, f"{artifact_uri}/{PLOTS_DIR}/{file.name}", f"runs:/{run_id}/{PLOTS_DIR}/{file.name}")
                )
            return stored
        except (MlflowException, OSError) as exc:
            # A plot is a convenience: losing it must not fail a run whose model is already deployed.
            logger.warning("could not log plots to MLflow run %s (%s); keeping them as files", run_id, exc)
    return [StoredPlot(file.name, file.resolve().as_uri()) for file in files]


def plot_links(plots: Sequence[StoredPlot]) -> list[str]:
    """Markdown lines that link each plot (MLflow path first, the file location as the link target)."""
    lines = []
    for plot in plots:
        where = f" (MLflow: `{plot.mlflow_path}`)" if plot.mlflow_path else ""
        lines.append(f"- [{plot.name}]({plot.uri}){where}")
    return lines
