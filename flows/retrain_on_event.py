"""The ``retrain-on-event`` flow: what prefect.yaml's automations run on ``heartflow.endpoint.drifted`` and
``heartflow.model.degraded``. With a labelled window (the event says ``heartflow.retrain`` true and names
its table), it runs ``train-and-deploy`` on that window on the endpoint's backend (the event's
``heartflow.backend``: local, or azure where the window is a blob URL), at most once per event id and once per endpoint
within the cool-down (``backends.domain.retrain_guard``); the retrain's flow run name (and so its history
entry's "triggered by") names the event. Without labels it notifies: a log line, and a Prefect
notification block when one is named."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from backends.errors import PromotionRejected
from prefect import flow, get_run_logger, tags

from backends.domain.retrain_guard import decide
from backends.domain.spec import DataSpec, DeploySpec, PipelineSpec, SweepSpec
from backends.fileio import write_atomic
from backends.local.backend import default_home
from backends.local.locks import file_lock

LEDGER = "retrain-ledger.json"


@flow(name="retrain-on-event", flow_run_name="{event}-{endpoint_name}")
def retrain_on_event(
    event: str, event_id: str, endpoint_name: str, retrain: bool = False, data_uri: str = "",
    home: str | None = None, cooldown_hours: float = 6.0, trials: int = 6, notification_block: str | None = None,
    backend: Literal["local", "azure"] = "local",
) -> str:
    """Retrain on the event's labelled window, or notify; returns what was done, in one sentence."""
    logger = get_run_logger()
    what = f"{event} on {endpoint_name} (event {event_id})"
    if not retrain or not data_uri:
        message = f"{what}: no labelled window to retrain on; look at the monitor-endpoint artifacts"
        logger.warning("%s", message)
        if notification_block:
            from prefect.blocks.core import Block

            block: Any = Block.load(notification_block)  # a NotificationBlock (slack-webhook/ops...)
            block.notify(body=message, subject=f"heartflow: {event}")
        return f"notified: {message}"
    root = Path(home).resolve() if home else default_home()
    ledger_path = root / LEDGER
    with file_lock(root / f"{LEDGER}.lock", 60):
        ledger = json.loads(ledger_path.read_text(encoding="utf-8")) if ledger_path.exists() else {}
        decision = decide(ledger, event_id, endpoint_name, datetime.now(UTC), timedelta(hours=cooldown_hours))
        if decision.allowed:
            write_atomic(ledger_path, json.dumps(decision.ledger, indent=2).encode("utf-8"))
    if not decision.allowed:
        logger.info("not retraining: %s", decision.reason)
        return f"skipped: {decision.reason}"
    schema = f"{data_uri}.schema.json"
    spec = PipelineSpec(
        backend=backend, home=str(root),
        data=DataSpec(path=data_uri, schema_path=schema if Path(schema).exists() else None, force=True),
        sweep=SweepSpec(max_total_trials=trials), deploy=DeploySpec(endpoint_name=endpoint_name),
    )
    from flows.train_and_deploy import train_and_deploy

    logger.info("%s: retraining on the labelled window %s", what, data_uri)
    run_name = f"retrain-{endpoint_name}-on-{event.rsplit('.', 1)[-1]}-{event_id[:8]}"
    # The run keeps the event in its tags (the flow renames itself after its data and model); its history
    # entry's "triggered by" is this first name (the run's context keeps it).
    try:
        with tags(f"event:{event}", f"event-id:{event_id}"):
            train_and_deploy.with_options(flow_run_name=run_name)(spec=spec)
    except PromotionRejected as exc:  # the retrain ran; its gate kept the champion (a decision, recorded in history)
        return f"retrained: {what} on {data_uri} (flow run {run_name}); the gate kept the champion: {exc}"
    return f"retrained: {what} on {data_uri} (flow run {run_name})"
