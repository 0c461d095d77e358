"""The ``monitor-endpoint`` flow: what an endpoint was asked over the last window and how its answers turned
out, published as artifacts, logged on the serving model's MLflow run, and turned into the events that close
the loop (``tasks.monitoring``). Scheduled hourly in prefect.yaml, for the local endpoint and for the Azure
one (its data collector's records in the workspace's blob storage)."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from backends.base import DEFAULT_ENDPOINT_NAME, EndpointMonitor
from backends.domain.monitoring import parse_since
from backends.errors import ConfigurationError
from backends.factory import create_backend
from tasks.monitoring import MIN_LABELLED, emit_monitor_events, log_monitor, measure_endpoint, publish_monitor


@flow(name="monitor-endpoint", flow_run_name="monitor-{endpoint_name}", log_prints=False)
def monitor_endpoint(
    endpoint_name: str = DEFAULT_ENDPOINT_NAME, since: str = "1h", backend: str = "local",
    home: str | None = None, tracking_uri: str | None = None, min_labelled: int = MIN_LABELLED,
    azure_secret_blocks: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Measure the window ``since`` (30m, 6h, 7d or an ISO time) up to now; returns the figures (``--json``'s).
    ``azure_secret_blocks``: Azure setting -> the Prefect Secret block holding it (as train-and-deploy's)."""
    overrides: dict[str, Any] = {}
    if azure_secret_blocks:
        from flows.secret_blocks import secrets_from_blocks

        overrides = dict(secrets_from_blocks(azure_secret_blocks))
    store = create_backend(backend, home=home, tracking_uri=tracking_uri, overrides=overrides)
    if not isinstance(store, EndpointMonitor):
        raise ConfigurationError(f"the {backend} backend does not capture its endpoint's traffic: monitor a local "
                                 "or an Azure endpoint")
    history = store.monitor_history(endpoint_name)
    report = measure_endpoint(store, endpoint_name, parse_since(since))
    publish_monitor(report, history)
    log_monitor(store, report)
    data_uri = None
    if report.drifted or report.prediction_drift.drifted or report.degraded:
        data_uri = store.export_labelled(endpoint_name, report, min_labelled)
        if data_uri is None:
            get_run_logger().info("fewer than %d labelled rows in the window: the events say notify, not retrain", min_labelled)
    emit_monitor_events(report, data_uri, backend, endpoint_name)
    return report.to_json()
