"""One sweep per sweep key, whatever retries happen.

A sweep job's name is derived from the sweep's identity (``Backend.sweep_identity``, the one Prefect's cache
key uses: the training split's sha256, the search spec, the dataset schema, the training code, the
Environment and the model name), so a retried stage finds the job its first attempt submitted instead of
starting a second one that bills in parallel:

- no job of that name: submit it;
- running (queued, starting, preparing, running, finalizing): follow it;
- completed: read it;
- failed or canceled: submit a new attempt, ``<name>-a2``, ``<name>-a3`` ... (and attach to the newest).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError

from backends.azure.resilience import status_of, translate
from backends.errors import SweepError

logger = logging.getLogger(__name__)

# An attempt in one of these states is over without a usable result: the next attempt gets a new name.
RETRY_STATES = frozenset({"Failed", "Canceled", "CancelRequested", "NotResponding"})
COMPLETED = "Completed"
MAX_ATTEMPTS = 20
NAME_PREFIX = "heartflow-sweep"
KEY_CHARS = 24  # hex digits of the sweep key in the job name (job names: letters, digits, '-', '_')

Action = Literal["submitted", "following", "completed"]


def job_exists(exc: BaseException) -> bool:
    """The service's answer to a job name that is taken: a 409 (ResourceExistsError), or, as it answers a PUT
    of an existing job, a 400 UserError "A job with this name already exists"."""
    if isinstance(exc, ResourceExistsError) or status_of(exc) == 409:
        return True
    return status_of(exc) == 400 and "already exists" in str(exc).lower()


def sweep_job_name(key: str, attempt: int = 1) -> str:
    """``heartflow-sweep-<key>`` for the first attempt, ``...-a<n>`` for the n-th."""
    base = f"{NAME_PREFIX}-{key[:KEY_CHARS]}"
    return base if attempt <= 1 else f"{base}-a{attempt}"


@dataclass(frozen=True)
class AttachedSweep:
    """The sweep job this run follows, and how it was found."""

    name: str
    job: Any
    action: Action
    attempt: int


def submit_or_attach(
    client: Any, job: Any, key: str, *, call: Callable[..., Any], experiment_name: str, check: str = "",
) -> AttachedSweep:
    """Find the sweep job of ``key`` or submit ``job`` under the next free attempt name."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        name = sweep_job_name(key, attempt)
        try:
            existing = call(f"look for sweep {name}", client.jobs.get, name)
        except ResourceNotFoundError:
            existing = None
        except AzureError as exc:
            raise translate(exc, SweepError, f"looking for sweep {name}") from exc
        if existing is None:
            job.name = name
            try:
                submitted = call("submit the sweep", client.jobs.create_or_update, job, experiment_name=experiment_name)
            except AzureError as exc:
                if not job_exists(exc):
                    raise translate(exc, SweepError, "submitting the sweep", check=check) from exc
                # a submit whose answer was lost created the job after all: attach to it
                logger.info("sweep %s exists already (an earlier submit went through); following it", name)
                try:
                    return AttachedSweep(name, call(f"read sweep {name}", client.jobs.get, name), "following", attempt)
                except AzureError as again:
                    raise translate(again, SweepError, f"reading sweep {name}") from again
            return AttachedSweep(submitted.name or name, submitted, "submitted", attempt)
        status = str(existing.status)
        if status in RETRY_STATES:
            logger.info("sweep %s ended %s earlier; starting attempt %s", name, status, attempt + 1)
            continue
        if status == COMPLETED:
            logger.info("sweep %s already completed for this data, spec and code; reading it", name)
            return AttachedSweep(name, existing, "completed", attempt)
        logger.info("sweep %s is already %s (an earlier attempt of this stage); following it", name, status)
        return AttachedSweep(name, existing, "following", attempt)
    raise SweepError(
        f"sweep {sweep_job_name(key)} failed or was canceled {MAX_ATTEMPTS} times; read the attempts' logs in "
        "Azure ML Studio and fix the cause before running again")


def check_best_trial(reported: str | None, best: Any, trials: tuple[Any, ...], metric: str, goal: str, name: str) -> None:
    """Cross-check heartflow's pick with Azure's ``best_child_run_id``. A tie broken differently is a
    warning; Azure's pick scoring strictly better, or not readable at all, is a SweepError (heartflow
    would otherwise register a worse model)."""
    if not reported or reported == best.run_id:
        return
    theirs = next((t for t in trials if t.run_id == reported), None)
    if theirs is None or theirs.status.value != "completed" or metric not in theirs.metrics:
        raise SweepError(
            f"Azure reports trial {reported} as the best of sweep {name}, but heartflow could not read its "
            f"{metric}; heartflow's pick {best.run_id} may be worse. Run again (the completed sweep is re-read, "
            "not re-run), or check the trial in Azure ML Studio")
    ours, azure = float(best.metrics[metric]), float(theirs.metrics[metric])
    better = azure > ours if goal == "maximize" else azure < ours
    if better:
        raise SweepError(
            f"Azure reports trial {reported} ({metric}={azure}) as the best of sweep {name}, better than "
            f"heartflow's pick {best.run_id} ({metric}={ours}): the trials read back disagree with Azure. "
            "Run again, or check the trials in Azure ML Studio")
    logger.warning("Azure reports %s as the best trial (%s=%s); heartflow's rule (ties -> lower trial number) "
                   "picked %s with the same %s", reported, metric, azure, best.run_id, metric)
