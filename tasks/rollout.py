"""One rollout at a time per endpoint: a Prefect global concurrency limit of one slot.

The flow holds the slot from the deploy stage through evaluation, the promotion gate, the importance
measurement and (when asked) the endpoint's stop, because all of them read or change which deployment
serves. A second run that reaches deploy waits (the UI shows it Running, with the slot held by the first
run on the Concurrency page) until the first releases the slot, or fails after ``timeout_s``.

The limit ``heartflow-deploy-<backend>-<endpoint>`` is created with one slot if it does not exist;
operators may create it beforehand (``prefect gcl create NAME --limit 1``). A slot is leased: a run
killed while holding it frees it when the lease expires (``LEASE_S``) instead of blocking forever.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prefect import get_client, get_run_logger
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import MissingContextError, ObjectAlreadyExists, ObjectNotFound

from backends.errors import DeploymentError

logger = logging.getLogger(__name__)

LIMIT_PREFIX = "heartflow-deploy"
LEASE_S = 120.0
DEFAULT_TIMEOUT_S = 2 * 3600.0


def deploy_limit_name(backend: str, endpoint_name: str) -> str:
    return f"{LIMIT_PREFIX}-{backend}-{endpoint_name}"


def ensure_deploy_limit(name: str) -> None:
    """Get-or-create the limit with one slot. An existing limit is left as operators set it (a warning
    says so when it would allow two rollouts at once or is inactive)."""
    with get_client(sync_client=True) as client:
        try:
            existing = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
                logger.info("created global concurrency limit %s with 1 slot", name)
            except ObjectAlreadyExists:  # another run created it between our read and our create
                pass
            return
    if existing.limit != 1 or not existing.active:
        logger.warning(
            "global concurrency limit %s has limit %s and active=%s: rollouts to this endpoint are not "
            "serialised (set it to 1 slot, active, to restore that)", name, existing.limit, existing.active,
        )


def _run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The run's logger (its lines show in the UI) inside a flow or task run, else this module's."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logger


@contextmanager
def rollout_slot(name: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[None]:
    """Hold the one slot of limit ``name`` (created if missing) for the duration of the block."""
    ensure_deploy_limit(name)
    log = _run_logger()
    log.info("waiting for the rollout slot %s (another run may be deploying to this endpoint)", name)
    asked = time.monotonic()
    acquired = False
    try:
        with concurrency(name, occupy=1, timeout_seconds=timeout_s, lease_duration=LEASE_S, strict=True):
            acquired = True
            log.info("holding the rollout slot %s (waited %.1f s)", name, time.monotonic() - asked)
            yield
    except TimeoutError as exc:
        if acquired:  # raised by the block, not by the wait
            raise
        raise DeploymentError(
            f"the rollout slot {name} was not free within {timeout_s:.0f} s: another run is deploying to this "
            "endpoint (see Concurrency in the Prefect UI for who holds it); nothing was deployed"
        ) from exc
    log.info("released the rollout slot %s", name)
