"""The monitor flow's tasks: measure a window of an endpoint's traffic, publish the figures (artifacts with
inline plots), log them to MLflow on the serving model's run, and emit the events automations act on.

Events (resource: the endpoint ``heartflow.endpoint.<name>``; related: the serving model version):

- ``heartflow.endpoint.drifted``: an input column drifted (the retraining drift rules) or the predictions did
- ``heartflow.model.degraded``: realized or estimated performance significantly below the gate's figure
  (``backends.domain.monitoring``: the realized 95 % interval's upper end, or an estimate on at least 50
  unlabelled rows, below the gate's holdout figure minus 0.05)

Labels for ``match`` clauses: ``heartflow.endpoint``, ``heartflow.model``, ``heartflow.version``,
``heartflow.backend`` (local or azure: where the endpoint serves and a retrain runs), and
``heartflow.retrain``: "true" when the window has at least ``MIN_LABELLED`` labelled rows, exported as a
table (payload ``data_uri``) that a retrain can train on; "false" means notify only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.events import emit_event

from backends.base import EndpointMonitor
from backends.domain import drift as drift_rules
from backends.domain.monitoring import ASSUMPTIONS, MARGIN, MonitorReport
from backends.reporting import monitor_plots
from backends.reporting.plots import png_data_uri

DRIFTED = "heartflow.endpoint.drifted"
DEGRADED = "heartflow.model.degraded"
MIN_LABELLED = 30


@task(name="measure-endpoint", task_run_name="measure-{endpoint_name}")
def measure_endpoint(backend: EndpointMonitor, endpoint_name: str, since: datetime) -> MonitorReport:
    report = backend.monitor(endpoint_name, since)
    get_run_logger().info(
        "%s (%s v%s) since %s: %d requests, drifted %s, realized %s, estimated %s, degraded %s",
        endpoint_name, report.model_name, report.model_version, report.since, report.requests,
        ", ".join(report.drifted) or "none", report.realized, report.estimated, report.degraded,
    )
    return report


@task(name="publish-monitor", task_run_name="publish-monitor-{report.endpoint}")
def publish_monitor(report: MonitorReport, history: list[dict[str, Any]]) -> None:
    """``monitor-figures`` (table: one row per column) and ``monitor-summary`` (markdown, plots inline)."""
    figures = report.to_json()
    rows = [{**row, **figures["data_quality"].get(row["column"], {})} for row in figures["drift"]]
    create_table_artifact(rows or [{"column": "(no drift measured)"}], key="monitor-figures",
                          description=f"{report.endpoint}: drift and data quality per column, {report.since} to {report.until}")
    series = [*history[-47:], figures] if not history or history[-1].get("until") != report.until else history[-48:]
    plots = [
        ("input drift per column over time", monitor_plots.drift_over_time(series, drift_rules.MAJOR_PSI)),
        ("share of positive answers over time", monitor_plots.rate_over_time(series)),
        ("realized against estimated performance", monitor_plots.performance_over_time(series, report.gate_value)),
        ("latency over time", monitor_plots.latency_over_time(series)),
    ]
    realized = figures["realized"]
    estimated = figures["estimated"]
    lines = [
        f"# {report.endpoint}: {report.model_name} v{report.model_version}, {report.since} to {report.until}",
        "",
        f"- requests: **{report.requests}** ({report.scored_rows} rows scored); errors by status: {dict(report.errors) or 'none'}; "
        f"refused by reason: {dict(report.rejected) or 'none'}",
        f"- latency p50 {report.latency_p50_ms} ms, p99 {report.latency_p99_ms} ms",
        f"- input drift: **{', '.join(report.drifted) or 'no column drifted'}**; prediction drift: "
        f"{'**yes**' if report.prediction_drift.drifted else 'no'} (positive rate {report.prediction_drift.positive_rate} "
        f"vs {report.prediction_drift.reference_positive_rate} on the holdout, score PSI {report.prediction_drift.score_psi})",
        "- realized: " + ("no labels yet" if realized is None else
                          f"{realized['metric']} **{realized['value']}** on {realized['labelled']} labelled rows "
                          f"(95 % interval {realized['interval_95']})"),
        "- estimated: " + ("n/a" if estimated is None else f"{estimated['metric']} **{estimated['value']}** on "
                           f"{estimated['rows']} unlabelled rows; {ASSUMPTIONS}"),
        f"- degraded: **{'yes' if report.degraded else 'no'}**: {report.degraded_reason} (margin {MARGIN})",
        *[f"- note: {note}" for note in report.notes],
        "",
        *[f"![{title}]({png_data_uri(figure)})" for title, figure in plots],
    ]
    create_markdown_artifact("\n".join(lines), key="monitor-summary",
                             description=f"What {report.endpoint} was asked and how its answers turned out")


@task(name="log-monitor", task_run_name="log-monitor-{report.endpoint}")
def log_monitor(backend: EndpointMonitor, report: MonitorReport) -> None:
    backend.log_monitor(report)


def emit_monitor_events(report: MonitorReport, data_uri: str | None, backend: str = "local",
                        endpoint_name: str | None = None) -> list[str]:
    """The events this window calls for (none when nothing drifted or degraded). ``backend``: the endpoint's;
    ``endpoint_name``: the name runs use for it (``heartflow.endpoint``; on Azure the tutorial's name stands
    for the workspace's own, and a retrain must take the rollout slot a nightly run takes), by default the
    report's."""
    names = []
    if report.drifted or report.prediction_drift.drifted:
        names.append(DRIFTED)
    if report.degraded:
        names.append(DEGRADED)
    resource = {
        "prefect.resource.id": f"heartflow.endpoint.{report.endpoint}", "prefect.resource.name": report.endpoint,
        "heartflow.endpoint": endpoint_name or report.endpoint, "heartflow.model": report.model_name,
        "heartflow.version": str(report.model_version), "heartflow.retrain": "true" if data_uri else "false",
        "heartflow.backend": backend,
    }
    related = [{"prefect.resource.id": f"heartflow.model.{report.model_name}.{report.model_version}",
                "prefect.resource.role": "model", "prefect.resource.name": f"{report.model_name} v{report.model_version}"}]
    payload = {"endpoint": report.endpoint, "since": report.since, "until": report.until, "drifted": list(report.drifted),
               "prediction_drift": report.prediction_drift.drifted, "degraded_reason": report.degraded_reason,
               "labelled": report.realized.rows if report.realized else 0, "data_uri": data_uri or ""}
    logger = get_run_logger()
    for name in names:
        sent = emit_event(event=name, resource=resource, related=related, payload=payload)
        logger.info("event %s emitted for %s (%s; retrain %s)", name, report.endpoint,
                    "sent" if sent else "events disabled", resource["heartflow.retrain"])
    return names
