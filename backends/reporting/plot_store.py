"""Where the plots go: stored with the run they describe when the backend stores files
(``Backend.attach_files``: the model's run; ``Backend.attach_sweep_files``: the sweep's run), else kept as
files in the folder they were written to (and the markdown links point there).

On the local backend a plot is an MLflow artifact under ``plots/`` of the run, beside the model in the
MLflow UI.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from backends.base import Backend, ModelVersion, SweepResult
from backends.errors import HeartflowError

logger = logging.getLogger(__name__)

PLOTS_DIR = "plots"


@dataclass(frozen=True)
class StoredPlot:
    name: str  # the file name, e.g. sweep-accuracy.png
    uri: str  # where it is now: an MLflow runs:/ URI, or a file:// URI
    mlflow_path: str | None = None  # runs:/<run id>/plots/<name> when stored with a run
    data_uri: str = field(default="", repr=False)  # the PNG inline, so a later report need not render it again


def _store(backend: Backend, run_id: str, files: Sequence[Path], attach: Callable[[], None]) -> list[StoredPlot]:
    if backend.stores_files and run_id:
        try:
            attach()
        except HeartflowError as exc:
            # A plot is a convenience: losing it must not fail a run whose model is already deployed.
            logger.warning("could not store plots with run %s (%s); keeping them as files", run_id, exc)
        else:
            return [StoredPlot(f.name, f"runs:/{run_id}/{PLOTS_DIR}/{f.name}", f"runs:/{run_id}/{PLOTS_DIR}/{f.name}")
                    for f in files]
    return [StoredPlot(file.name, file.resolve().as_uri()) for file in files]


def store_plots(backend: Backend, model: ModelVersion, files: Sequence[Path]) -> list[StoredPlot]:
    """Store ``files`` with the run that trained ``model`` when the backend stores files."""
    return _store(backend, model.source_run_id, files, lambda: backend.attach_files(model, files))


def store_sweep_plots(backend: Backend, sweep: SweepResult, files: Sequence[Path]) -> list[StoredPlot]:
    """Store ``files`` with the sweep's run when the backend stores files."""
    return _store(backend, sweep.sweep_id, files, lambda: backend.attach_sweep_files(sweep, files))


def plot_links(plots: Sequence[StoredPlot]) -> list[str]:
    """Markdown lines that link each plot (MLflow path first, the file location as the link target)."""
    lines = []
    for plot in plots:
        where = f" (MLflow: `{plot.mlflow_path}`)" if plot.mlflow_path else ""
        lines.append(f"- [{plot.name}]({plot.uri}){where}")
    return lines
