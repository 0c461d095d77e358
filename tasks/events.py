"""Prefect events for automations: what happened to a model, and to the data, after each run.

Events (resource: the model version; related: the endpoint and the data, by sha256):

- ``heartflow.model.promoted`` / ``heartflow.model.rejected`` / ``heartflow.model.rolled-back``
- ``heartflow.data.unchanged``: the data is the serving champion's; nothing was trained
- ``heartflow.data.drifted``: at least one column drifted from the champion's training data

Resource ids: ``heartflow.model.<name>.<version>``, ``heartflow.endpoint.<name>``, ``heartflow.data.<sha256>``;
labels carry the same values (``heartflow.model``, ``heartflow.version``, ``heartflow.endpoint``,
``heartflow.data.sha256``) for automations' ``match`` clauses. A deployment can be triggered by an event
(prefect.yaml has a commented example on ``heartflow.data.arrived``).
"""

from __future__ import annotations

from typing import Any

import logging

from prefect import get_run_logger
from prefect.events import emit_event
from prefect.exceptions import MissingContextError

logger = logging.getLogger(__name__)

PROMOTED = "heartflow.model.promoted"
REJECTED = "heartflow.model.rejected"
ROLLED_BACK = "heartflow.model.rolled-back"
DATA_UNCHANGED = "heartflow.data.unchanged"
DATA_DRIFTED = "heartflow.data.drifted"


def emit(event: str, *, model: str, version: str, endpoint: str, data_sha256: str,
         payload: dict[str, Any] | None = None) -> None:
    """Emit one heartflow event (sent in the background by Prefect's events worker)."""
    labels = {"heartflow.model": model, "heartflow.version": str(version), "heartflow.endpoint": endpoint,
              "heartflow.data.sha256": data_sha256}
    resource = {"prefect.resource.id": f"heartflow.model.{model}.{version or 'none'}",
                "prefect.resource.name": f"{model} v{version}" if version else model, **labels}
    related = [
        {"prefect.resource.id": f"heartflow.endpoint.{endpoint}", "prefect.resource.role": "endpoint",
         "prefect.resource.name": endpoint},
        {"prefect.resource.id": f"heartflow.data.{data_sha256}", "prefect.resource.role": "data",
         "prefect.resource.name": data_sha256[:12]},
    ]
    sent = emit_event(event=event, resource=resource, related=related, payload=payload or {})
    try:
        log: logging.Logger | logging.LoggerAdapter[logging.Logger] = get_run_logger()
    except MissingContextError:  # outside a run (`heartflow rollback`)
        log = logger
    log.info("event %s emitted for %s v%s (%s)", event, model, version, "sent" if sent else "events disabled")
