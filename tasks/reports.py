"""The keyed artifacts operators read in the UI, and the plots behind them.

Every run creates: ``sweep-progress`` (progress), ``sweep-leaderboard`` (table), ``classification-report``,
``model-version`` (markdown), ``feature-importance`` (table) and ``endpoint`` (link: the scoring URI, never
the key). The plots are embedded in the markdown artifacts as PNG data URIs (the Prefect UI renders them
inline: nothing on the worker's disk has to be reachable from a browser); on the local backend they are
also logged to MLflow (``backends.reporting.plot_store``).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
)
from prefect.runtime import flow_run

from backends.reporting import plots, reports
from backends.base import Backend, Endpoint, EvalReport, ModelVersion, Provisioner, SweepResult
from backends.client.importance import ImportanceResult
from backends.reporting.plot_store import StoredPlot, plot_links, store_plots, store_sweep_plots
from backends.domain.calibration import calibration
from backends.domain.selection import GateDecision
from backends.domain.spec import PipelineSpec
from tasks.stages import SWEEP_PROGRESS_KEY

TOP_FEATURES = 3


@contextmanager
def _plot_folder(backend: Backend) -> Iterator[Path]:
    """A scratch folder when the backend stores the plots with their runs; otherwise a lasting folder under
    PREFECT_HOME named after the flow run, since the files themselves are what the links point to."""
    if backend.stores_files:
        with tempfile.TemporaryDirectory(prefix="heartflow-plots-") as scratch:
            yield Path(scratch)
        return
    from prefect.settings import PREFECT_HOME

    folder = Path(PREFECT_HOME.value()).expanduser() / "heartflow-plots" / str(flow_run.id or os.getpid())
    folder.mkdir(parents=True, exist_ok=True)
    yield folder


@task(name="report-sweep", task_run_name="report-sweep-{sweep.sweep_id:.12}")
def report_sweep(backend: Backend, sweep: SweepResult, from_cache: bool) -> list[StoredPlot]:
    """The leaderboard table and the metric-per-hyperparameter plot (logged to the sweep's run)."""
    if from_cache:  # the sweep task did not run, so nothing advanced the progress artifact in this run
        create_progress_artifact(100.0, key=SWEEP_PROGRESS_KEY,
                                 description=f"{len(sweep.trials)} trials reused from the cached sweep {sweep.sweep_id}")
    figure = plots.sweep_figure(sweep)
    inline = plots.png_data_uri(figure)
    with _plot_folder(backend) as folder:
        figure_file = plots.save_png(figure, folder / f"sweep-{sweep.primary_metric}.png")
        stored = [dataclasses.replace(plot, data_uri=inline) for plot in store_sweep_plots(backend, sweep, [figure_file])]
    create_markdown_artifact(
        f"# Sweep `{sweep.sweep_id}`: {sweep.primary_metric} per hyperparameter\n\n"
        f"![{sweep.primary_metric} per hyperparameter]({inline})",
        key="sweep-plot", description=f"{sweep.primary_metric} of every trial against each hyperparameter",
    )
    cached = " (reused from cache)" if from_cache else ""
    create_table_artifact(
        reports.leaderboard_rows(sweep), key="sweep-leaderboard",
        description=(
            f"All {len(sweep.trials)} trials of sweep `{sweep.sweep_id}`{cached}, best first, by {sweep.primary_metric}. "
            f"Plot: {stored[0].mlflow_path or stored[0].uri}"
        ),
    )
    get_run_logger().info("sweep leaderboard published; plot at %s", stored[0].uri)
    return stored


@task(name="report-model", task_run_name="report-model-{model.name}-v{model.version}")
def report_model(
    backend: Backend, sweep: SweepResult, model: ModelVersion, report: EvalReport, decision: GateDecision,
    endpoint: Endpoint, importance: ImportanceResult | None, champion: ModelVersion | None,
    sweep_plots: list[StoredPlot],
) -> None:
    """classification-report, model-version, feature-importance and endpoint artifacts, with their plots."""
    logger = get_run_logger()
    confusion_fig = plots.confusion_figure(report)
    # The sweep's plot as report-sweep rendered it (beside the deploy), else rendered here.
    sweep_uri = next((p.data_uri for p in sweep_plots if p.data_uri), "") or plots.png_data_uri(plots.sweep_figure(sweep))
    inline = {"sweep": sweep_uri, "confusion": plots.png_data_uri(confusion_fig)}
    with _plot_folder(backend) as folder:
        confusion_file = plots.save_png(confusion_fig, folder / "confusion-matrix.png")
        calibrated = calibration(report.labels, report.scores)
        report_files = [confusion_file]
        if calibrated is not None:
            reliability_fig = plots.reliability_figure(calibrated, f"v{model.version}: reliability on the holdout")
            inline["reliability"] = plots.png_data_uri(reliability_fig)
            report_files.append(plots.save_png(reliability_fig, folder / "reliability.png"))
        confusion = store_plots(backend, model, report_files)
        importance_plots: list[StoredPlot] = []
        if importance is not None and champion is not None:
            title = f"{champion.name} v{champion.version}: permutation importance ({importance.repeats} repeats)"
            importance_fig = plots.importance_figure(importance.features, title)
            inline["importance"] = plots.png_data_uri(importance_fig)
            importance_file = plots.save_png(importance_fig, folder / "feature-importance.png")
            importance_plots = store_plots(backend, champion, [importance_file])

    create_markdown_artifact(
        reports.classification_markdown(report, plot_uri=confusion[0].mlflow_path or confusion[0].uri,
                                        decision=decision)
        + f"\n\n![confusion matrix]({inline['confusion']})"
        + (f"\n\n![reliability]({inline['reliability']})" if "reliability" in inline else ""),
        key="classification-report", description=f"Holdout evaluation of v{model.version} through the endpoint",
    )

    top: tuple[str, ...] = ()
    links = ["## Plots", "", f"![sweep]({inline['sweep']})", f"![confusion matrix]({inline['confusion']})",
             *([f"![reliability]({inline['reliability']})"] if "reliability" in inline else []),
             *([f"![feature importance]({inline['importance']})"] if "importance" in inline else []),
             "", "Also stored:", *plot_links([*sweep_plots, *confusion, *importance_plots])]
    if importance is not None and champion is not None:
        create_table_artifact(
            importance.rows_for_table(), key="feature-importance",
            description=(
                f"Permutation importance of champion {champion.name} v{champion.version} per original column: "
                f"holdout accuracy drop when the column is shuffled ({importance.repeats} repeats, seed "
                f"{importance.seed}, {importance.rows} rows through deployment `{importance.deployment}`; baseline "
                f"accuracy {importance.baseline_accuracy:.4f})."
                + (f" The rows are a seeded sample of the {importance.holdout_rows}-row holdout: ci95_half_width is "
                   "each drop's 95 % interval over the whole holdout." if importance.sampled else "")
                + (f" Plot: {importance_plots[0].mlflow_path or importance_plots[0].uri}" if importance_plots else "")
            ),
        )
        if champion.version == model.version:
            top = importance.top(TOP_FEATURES)
        else:
            links.insert(0, f"Top features of the serving champion v{champion.version}: "
                            f"{', '.join(importance.top(TOP_FEATURES)) or 'none'}\n")
    create_markdown_artifact(
        reports.model_markdown(model, sweep, decision, top_features=top, extra_links=links),
        key="model-version", description=f"{model.name} v{model.version}: lineage and gate decision",
    )
    create_link_artifact(endpoint.scoring_uri, link_text=f"{endpoint.name} scoring URI", key="endpoint",
                         description=reports.endpoint_markdown(endpoint))
    logger.info("published classification-report, model-version, feature-importance and endpoint artifacts")


@task(name="dry-run-plan", task_run_name="dry-run-plan-{backend.name}")
def publish_plan(backend: Backend, spec: PipelineSpec, data_sha256: str) -> None:
    """A dry run's only output: the plan of every object the run would create (``dry-run-plan`` artifact).
    Nothing is uploaded, trained or deployed."""
    if isinstance(backend, Provisioner):
        text = backend.plan(spec, data_sha256=data_sha256).render()
    else:
        text = f"The {backend.name} backend has no dry run: nothing was done beyond validating the data."
    create_markdown_artifact(f"# Dry run ({backend.name})\n\n```\n{text}\n```", key="dry-run-plan",
                             description="What a real run would create; nothing was called")
    get_run_logger().info("dry run: plan published as the dry-run-plan artifact\n%s", text)
