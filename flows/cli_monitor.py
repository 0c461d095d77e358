"""`heartflow monitor` and `heartflow feedback`: what the endpoint was asked and how its answers turned out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from backends.base import DEFAULT_ENDPOINT_NAME
from flows.cli_common import (
    BackendName, BackendOption, EndpointOption, HomeOption, TrackingOption, check, console, fail, resolve_home,
)


def feedback(
    file: Annotated[Path, typer.Argument(help="CSV (columns request_id, label) or JSON lines ({\"request_id\": ..., \"label\": ...})")],
    backend: BackendOption = BackendName.local,
    home: HomeOption = None,
    endpoint_name: EndpointOption = DEFAULT_ENDPOINT_NAME,
    tracking_uri: TrackingOption = None,
) -> None:
    """Labels that arrived later, joined to captured predictions by request id (the x-request-id each answer
    carried). Labels are the data's own (as the endpoint answers); unknown ids are kept and reported."""
    from backends.domain.outcomes import read_feedback_file

    items = check(read_feedback_file, file)
    watcher = _azure_monitor() if backend is BackendName.azure else _local_monitor(home, tracking_uri, endpoint_name)
    got = check(watcher.add_feedback, endpoint_name, items, str(file))
    console.print(f"stored {got.stored} label(s) for {endpoint_name}: {got.matched} match a captured prediction, "
                  f"{got.unknown} unknown" + (f" (e.g. {', '.join(got.unknown_ids[:5])}): kept, and joined if their "
                                              "predictions are captured later" if got.unknown else ""), highlight=False)


def monitor(
    backend: BackendOption = BackendName.local,
    home: HomeOption = None,
    endpoint_name: EndpointOption = DEFAULT_ENDPOINT_NAME,
    since: Annotated[str, typer.Option("--since", help="Window start: 30m, 6h, 7d or an ISO time")] = "24h",
    tracking_uri: TrackingOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object, for scripts and alerts")] = False,
) -> None:
    """Requests, errors, latency, input and prediction drift, data quality, realized and estimated performance
    of what serves, over a window of captured traffic."""
    from backends.domain.monitoring import parse_since

    start = check(parse_since, since)
    watcher = _azure_monitor() if backend is BackendName.azure else _local_monitor(home, tracking_uri, endpoint_name)
    report = check(watcher.monitor, endpoint_name, start)
    if as_json:
        typer.echo(json.dumps(report.to_json(), sort_keys=True))
        return
    console.print(render(report.to_json()), highlight=False, soft_wrap=True)


def _azure_monitor() -> Any:
    """The Azure endpoint's monitor: the data collector's records in the workspace's blob storage."""
    from backends.azure.monitoring import AzureMonitor
    from backends.factory import create_backend

    return AzureMonitor(check(create_backend, BackendName.azure.value))


def _local_monitor(home: Path | None, tracking_uri: str | None, endpoint_name: str) -> Any:
    """The endpoint's monitor; a missing endpoint is said before the MLflow store is opened (seconds)."""
    from backends.local.backend import LocalBackend
    from backends.local.endpoint.state import EndpointPaths
    from backends.local.monitoring import LocalMonitor

    if not EndpointPaths(resolve_home(home), endpoint_name).state.exists():
        fail(f"no local endpoint {endpoint_name} under {resolve_home(home)}: deploy one with `heartflow run`")
    local = check(LocalBackend, resolve_home(home), tracking_uri)
    return LocalMonitor(local.home, local.registry)


def render(figures: dict[str, Any]) -> str:
    """The monitor's figures as a few lines of text (also what `heartflow status` shows of the last one)."""
    latency = figures.get("latency_ms") or {}
    realized, estimated, prediction = figures.get("realized"), figures.get("estimated"), figures.get("prediction_drift") or {}
    lines = [
        f"monitor of {figures['endpoint']} ({figures['model']} v{figures['model_version']}) from {figures['since']} "
        f"to {figures['until']}: {figures['requests']} request(s), {figures['scored_rows']} row(s) scored, "
        f"errors {figures['errors'] or 'none'}, latency p50 {latency.get('p50')} ms p99 {latency.get('p99')} ms",
        f"  input drift: {', '.join(figures['drifted']) or 'no column drifted'}; prediction drift: "
        f"{'yes' if prediction.get('drifted') else 'no'} (positive rate {prediction.get('positive_rate')} vs "
        f"{prediction.get('reference_positive_rate')} on the holdout; score PSI {prediction.get('score_psi')})",
        "  realized: " + ("no labels yet" if not realized else
                          f"{realized['metric']} {realized['value']} on {realized['labelled']} labelled "
                          f"(95 % {realized['interval_95']})")
        + "; estimated: " + ("n/a" if not estimated else f"{estimated['metric']} {estimated['value']} on {estimated['rows']} "
                             "unlabelled (CBPE: calibrated probabilities assumed, blind to concept shift)"),
        f"  degraded: {'YES' if figures['degraded'] else 'no'} ({figures['degraded_reason']})",
    ]
    if figures.get("rejected"):
        lines.append(f"  refused: {figures['rejected']}")
    if figures.get("unknown_labels"):
        lines.append(f"  labels with no captured prediction: {figures['unknown_labels']}")
    lines.extend(f"  note: {n}" for n in figures.get("notes", []))
    return "\n".join(lines)
