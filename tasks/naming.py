"""Flow and task run names that say what ran: the backend, the data's hash prefix, the model version.

The flow run starts as ``<backend>-<data file>-<time>``; once the data is validated it becomes
``<backend>-data-<sha256[:8]>``, and once a model is registered ``<backend>-data-<sha>-<model>-v<version>``.
"""

from __future__ import annotations

import logging
from pathlib import PurePath
from typing import Any

from prefect import get_client
from prefect.exceptions import ObjectNotFound
from prefect.runtime import flow_run

logger = logging.getLogger(__name__)

HASH_CHARS = 8


def _spec_value(spec: Any, *path: str) -> Any:
    for part in path:
        if spec is None:
            return None
        spec = spec.get(part) if isinstance(spec, dict) else getattr(spec, part, None)
    return spec


def data_label(path: str | None) -> str:
    """The data file's stem, or "heart" for the embedded table."""
    return PurePath(path).stem if path else "heart"


def initial_flow_run_name() -> str:
    """Prefect's ``flow_run_name`` callable: what is known before the flow body runs."""
    spec = flow_run.parameters.get("spec")
    backend = _spec_value(spec, "backend") or "local"
    started = flow_run.scheduled_start_time
    stamp = f"-{started:%Y%m%d-%H%M%S}" if started is not None else ""
    return f"{backend}-{data_label(_spec_value(spec, 'data', 'path'))}{stamp}"


def data_run_name(backend: str, sha256: str) -> str:
    return f"{backend}-data-{sha256[:HASH_CHARS]}"


def model_run_name(backend: str, sha256: str, model_name: str, version: str) -> str:
    return f"{data_run_name(backend, sha256)}-{model_name}-v{version}"


def rename_flow_run(name: str) -> None:
    """Rename the current flow run (no-op outside one); the UI shows the new name at once."""
    run_id = flow_run.id
    if not run_id:
        return
    with get_client(sync_client=True) as client:
        try:
            client.update_flow_run(run_id, name=name)
        except ObjectNotFound:
            logger.warning("flow run %s not found; keeping its name", run_id)


def validate_task_run_name(parameters: dict[str, Any]) -> str:
    """``validate-data-<data file>`` (Prefect passes the task's parameters)."""
    return f"validate-data-{data_label(_spec_value(parameters.get('spec'), 'path'))}"
