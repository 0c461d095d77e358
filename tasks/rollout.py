"""One rollout at a time per endpoint, with a hold that cannot outlive its holder.

The flow (and `heartflow rollback`) holds the endpoint's rollout slot from the deploy stage through evaluation,
the promotion gate, the importance measurement and (when asked) the endpoint's stop, because all of them read
or change which deployment serves.

The slot is a Prefect Variable named ``heartflow-rollout-<backend>-<endpoint>-<hash>`` (Variables page of the
UI), created atomically by its holder (the API refuses a second variable of the same name), deleted by id when
the holder is done, and renewed (a heartbeat) while held. Its value says who holds it: the flow run, host, pid
and since when. Why not Prefect's global concurrency limit, which heartflow used before: its slot count lives
in the database while its lease lives in the server's memory, and the temporary server runs no lease
repossessor, so a run killed while holding it left the slot taken for every later run. A waiting run here
reads the holder and reclaims the slot when that holder is certainly gone (``backends.domain.rollout_holder``:
its process is dead on this host, its flow run is final or unknown, or its heartbeat stopped), says so in its
log and marks a still-"Running" holder's flow run Crashed; a live holder is waited for (at most ``timeout_s``).
Every run that shares one Prefect API (the temporary server of one home, a team's server, several workers)
shares the slot, on both backends.
"""

from __future__ import annotations

import contextvars
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from uuid import UUID

import httpx
import psutil
from prefect import get_client, get_run_logger
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import VariableCreate
from prefect.exceptions import MissingContextError, ObjectAlreadyExists, ObjectNotFound
from prefect.runtime import flow_run
from prefect.states import Crashed

from backends.domain.rollout_holder import HEARTBEAT_S, HolderRecord, slot_name, why_gone
from backends.errors import DeploymentError

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 2 * 3600.0
POLL_S = 1.0
PID_START_SLACK_S = 1.0


def _run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The run's logger (its lines show in the UI) inside a flow or task run, else this module's."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logger


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _my_record(endpoint_name: str, holder: str | None) -> HolderRecord:
    run_id = flow_run.id
    name = holder or (f"flow run {flow_run.name}" if run_id else f"heartflow (pid {os.getpid()})")
    return HolderRecord(
        endpoint=endpoint_name, holder=name, host=socket.gethostname(), pid=os.getpid(),
        pid_started=psutil.Process().create_time(), acquired=_now(), heartbeat=_now(),
        flow_run_id=str(run_id) if run_id else None,
    )


def _process_alive(record: HolderRecord) -> bool | None:
    """Whether the holder's process still runs (None when it ran on another host)."""
    if record.host != socket.gethostname():
        return None
    try:
        process = psutil.Process(record.pid)
        alive = process.status() != psutil.STATUS_ZOMBIE
        return alive and abs(process.create_time() - record.pid_started) < PID_START_SLACK_S
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:  # someone else's live process
        return True


def _run_state(client: SyncPrefectClient, record: HolderRecord) -> str | None:
    if not record.flow_run_id:
        return None
    try:
        run = client.read_flow_run(UUID(record.flow_run_id))
    except ObjectNotFound:
        return "UNKNOWN"
    return run.state.type.value if run.state else None


def _delete_exact(client: SyncPrefectClient, variable_id: UUID) -> bool:
    """Delete the slot record with this id (not whatever holds the name now); False if it was already gone."""
    response = client.request("DELETE", "/variables/{id}", path_params={"id": variable_id})
    if response.status_code == 404:
        return False
    response.raise_for_status()
    return True


def _mark_crashed(client: SyncPrefectClient, record: HolderRecord, why: str) -> None:
    """A holder's run still marked Running is put in the Crashed state, so the UI tells the truth."""
    if not record.flow_run_id:
        return
    try:
        run = client.read_flow_run(UUID(record.flow_run_id))
        if run.state is not None and not run.state.is_final():
            client.set_flow_run_state(UUID(record.flow_run_id),
                                      Crashed(message=f"rollout slot reclaimed: {record.holder} {why}"), force=True)
    except (ObjectNotFound, httpx.HTTPError) as exc:
        logger.warning("could not mark %s crashed: %s", record.holder, exc)


def _acquire(client: SyncPrefectClient, name: str, me: HolderRecord, timeout_s: float,
             log: logging.Logger | logging.LoggerAdapter[logging.Logger]) -> UUID:
    deadline = time.monotonic() + timeout_s
    announced: UUID | None = None
    while True:
        try:
            created = client.create_variable(VariableCreate(name=name, value=me.to_json(),
                                                            tags=["heartflow", "rollout-slot"]))
            return created.id
        except ObjectAlreadyExists:
            pass
        current = client.read_variable_by_name(name)
        if current is None:  # released between our create and our read
            continue
        record = HolderRecord.from_json(current.value)
        if record is None:
            raise DeploymentError(
                f"the Prefect variable {name} exists but is not a heartflow rollout slot record; delete it "
                f"(`prefect variable unset {name}`) and run again; nothing was deployed"
            )
        gone = why_gone(record, now=datetime.now(UTC), this_host=socket.gethostname(),
                        process_alive=_process_alive(record), run_state=_run_state(client, record))
        if gone is not None:
            if _delete_exact(client, current.id):
                log.warning("rollout slot of %s was held by %s (%s): reclaimed", me.endpoint, record.holder, gone)
                _mark_crashed(client, record, gone)
            continue
        if announced != current.id:
            announced = current.id
            log.info("waiting for the rollout slot of %s: held by %s on %s (pid %d) since %s", me.endpoint,
                     record.holder, record.host, record.pid, record.acquired)
        if time.monotonic() >= deadline:
            raise DeploymentError(
                f"the rollout slot of {me.endpoint} was not free within {timeout_s:.0f} s: {record.holder} on "
                f"{record.host} (pid {record.pid}) has held it since {record.acquired} and is alive (heartbeat "
                f"{record.heartbeat}); nothing was deployed. See the variable {name} in the Prefect UI"
            )
        time.sleep(POLL_S)


class _Heartbeat:
    """Renews the holder's heartbeat in a thread of its own while the slot is held. The thread runs in a copy
    of the holder's context, so it talks to the same Prefect API (a run's API is set in a context variable)."""

    def __init__(self, variable_id: UUID, record: HolderRecord, every_s: float) -> None:
        self._id, self._record, self._every_s = variable_id, record, every_s
        self._stop = threading.Event()
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._run,), name="heartflow-rollout-heartbeat",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            value = {**self._record.to_json(), "heartbeat": _now()}
            try:
                with get_client(sync_client=True) as client:
                    response = client.request("PATCH", "/variables/{id}", path_params={"id": self._id},
                                              json={"value": value})
            except httpx.HTTPError as exc:  # a blip: the next beat tries again, well inside STALE_S
                logger.warning("rollout slot heartbeat of %s failed: %s", self._record.endpoint, exc)
                continue
            if response.status_code == 404:
                logger.error("the rollout slot of %s was reclaimed from this run (no heartbeat reached the API "
                             "in time); another run may now deploy to it", self._record.endpoint)
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


# The slots this context holds: holding one again inside (a rollback the watch starts in a task of the run,
# which inherits the context) is not a second rollout. Another thread or run does not inherit it.
_HELD_HERE: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar("heartflow_rollout_slots_held", default=frozenset())


@contextmanager
def _held_here(name: str) -> Iterator[None]:
    token = _HELD_HERE.set(_HELD_HERE.get() | {name})
    try:
        yield
    finally:
        _HELD_HERE.reset(token)


@contextmanager
def rollout_slot(backend: str, endpoint_name: str, timeout_s: float = DEFAULT_TIMEOUT_S,
                 holder: str | None = None, heartbeat_s: float = HEARTBEAT_S) -> Iterator[None]:
    """Hold the rollout slot of ``endpoint_name`` on ``backend`` for the duration of the block. ``holder``
    names a holder that is not a flow run (``heartflow rollback``). Raises DeploymentError when a live holder
    keeps it past ``timeout_s``."""
    name = slot_name(backend, endpoint_name)
    log = _run_logger()
    if name in _HELD_HERE.get():  # this process holds it already (a rollback the watch starts inside the run)
        yield
        return
    me = _my_record(endpoint_name, holder)
    asked = time.monotonic()
    with get_client(sync_client=True) as client, _held_here(name):
        variable_id = _acquire(client, name, me, timeout_s, log)
        log.info("holding the rollout slot of %s (waited %.1f s)", endpoint_name, time.monotonic() - asked)
        heartbeat = _Heartbeat(variable_id, me, heartbeat_s)
        try:
            yield
        finally:
            heartbeat.stop()
            try:
                _delete_exact(client, variable_id)
            except httpx.HTTPError as exc:  # the next run sees this process gone and reclaims the slot
                log.warning("the rollout slot of %s was not released (%s); the next run reclaims it", endpoint_name, exc)
    log.info("released the rollout slot of %s", endpoint_name)


def slot_holder(backend: str, endpoint_name: str) -> HolderRecord | None:
    """Who holds the endpoint's rollout slot now (None when it is free), for `heartflow status`."""
    with get_client(sync_client=True) as client:
        current = client.read_variable_by_name(slot_name(backend, endpoint_name))
    return HolderRecord.from_json(current.value) if current is not None else None
