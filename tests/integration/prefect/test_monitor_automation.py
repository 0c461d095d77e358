"""The loop closed, on the session's real Prefect server: `prefect deploy --all` created the monitor's hourly
deployment and the live automation of on-monitor-event; a `heartflow.endpoint.drifted` event fires it, the
deployment's flow run appears with the event's id, endpoint and retrain flag, and the worker runs it (no
labelled window: it notifies)."""

from __future__ import annotations

import time
import uuid

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, LogFilter, LogFilterFlowRunId
from prefect.events import emit_event
from prefect.settings import PREFECT_API_URL, temporary_settings

from tests.integration.prefect.server import PrefectServer, drain_to_server, wait_for_flow_run


def test_monitor_deployment_is_scheduled_hourly(api: SyncPrefectClient) -> None:
    hourly = api.read_deployment_by_name("monitor-endpoint/hourly")
    assert hourly.parameters["since"] == "1h"
    assert [s.schedule.cron for s in hourly.schedules] == ["0 * * * *"]


def test_a_drift_event_runs_the_retrain_deployment(api: SyncPrefectClient, prefect_server: PrefectServer) -> None:
    deployment = api.read_deployment_by_name("retrain-on-event/on-monitor-event")
    endpoint = f"auto-{uuid.uuid4().hex[:6]}"
    with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}):
        time.sleep(2)  # the automation's trigger is loaded by the server's triggers service
        sent = emit_event(
            event="heartflow.endpoint.drifted",
            resource={"prefect.resource.id": f"heartflow.endpoint.{endpoint}", "heartflow.endpoint": endpoint,
                      "heartflow.model": "heart-classifier", "heartflow.version": "1", "heartflow.retrain": "false",
                      "heartflow.backend": "azure"},  # an Azure endpoint's event: no labels, so it notifies
            payload={"drifted": ["chol"], "data_uri": ""},
        )
        drain_to_server(30.0)
    assert sent is not None
    deadline = time.monotonic() + 180
    runs = []
    while time.monotonic() < deadline and not runs:
        runs = [r for r in api.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))
                if r.parameters.get("endpoint_name") == endpoint]
        time.sleep(1)
    assert runs, f"the automation did not run the deployment:\n{prefect_server.log_tail('server.log')}"
    run = runs[0]
    assert run.parameters["event"] == "heartflow.endpoint.drifted"
    assert run.parameters["event_id"] == str(sent.id)
    assert run.parameters["retrain"] is False and run.parameters["backend"] == "azure"
    finished = wait_for_flow_run(api, run.id, 300, logs=[prefect_server.log_tail("worker.log")])
    assert finished.state.type.value == "COMPLETED", f"{finished.state}\n{prefect_server.log_tail('worker.log')}"
    messages: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any("no labelled window" in m for m in messages):
        messages = [log.message for log in api.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))]
        time.sleep(1)
    assert any("no labelled window to retrain on" in m for m in messages), messages  # it notified
