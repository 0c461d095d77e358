"""What `heartflow run` does before its flow needs it, while a core is otherwise idle: work the run does
anyway, done early.

- ``open_store`` (while Prefect's temporary server starts, ``EarlyServer.serving``'s wait): the home's MLflow store opened as the flow's backend opens it (its schema checked against
  MLflow's migration scripts, the experiment ensured: about a second of a core). MLflow keeps one store per
  URI and process, so the flow finds it open.
- ``start_first_trials`` (once the server answers, while Prefect starts the flow and its first stages: one
  core waits on the other there): on a first run (no champion yet: the run cannot end before its sweep), the training
  rows stored where the flow's upload puts them (content-addressed: the upload finds them) and the sweep's
  first trials handed to the prestarted workers (``backends.local.scheduler.start_early_trials``), which the
  sweep adopts when it starts. Only for tables of up to ``EARLY_TRIALS_MAX_ROWS`` rows: beyond, a trial's
  minutes dwarf the start-up it would overlap.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

EARLY_TRIALS_MAX_ROWS = 50_000


def open_store(spec: Any) -> None:
    from backends.factory import backend_for_spec

    backend_for_spec(spec)


def start_first_trials(spec: Any, loaded: Any) -> int:
    """The number of trials handed out early (0 when the run is not a first run of a small table). A failure
    is left to the run: its upload and sweep stages do the same work, in context, and report it there."""
    prepared = loaded.prepared
    if spec.backend != "local" or spec.dry_run or len(prepared.train) > EARLY_TRIALS_MAX_ROWS:
        return 0
    try:
        return _start_first_trials(spec, prepared)
    except Exception:  # repeated by the run's own stages, which report it
        logger.debug("no early trials: the run's stages do the same work and report what failed", exc_info=True)
        return 0


def _start_first_trials(spec: Any, prepared: Any) -> int:
    from backends.factory import backend_for_spec
    from backends.local import tracking
    from backends.local.scheduler import start_early_trials

    backend: Any = backend_for_spec(spec)
    if backend.registry.champion(spec.model_name) is not None:
        return 0
    data = backend.upload(prepared.train)
    handed_out = start_early_trials(spec.sweep, str(tracking.local_path(data.uri)), prepared.schema.to_json())
    logger.debug("%d trials handed to the workers before the flow started", handed_out)
    return handed_out
