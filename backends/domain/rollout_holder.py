"""Who holds an endpoint's rollout slot, and whether that holder is gone (so its hold can be reclaimed).

The slot is a record (``HolderRecord``) created atomically under one name per endpoint; its holder renews
``heartbeat`` every ``HEARTBEAT_S`` seconds while it holds the slot. A hold is reclaimed only when its holder
is certainly gone:

- it ran on this host and its process is not alive (or the pid now belongs to a later process); on this host
  a live process is never reclaimed from, whatever its run's state says;
- it ran on another host and its flow run is in a final state (crashed, cancelled, failed, completed) or
  unknown to the API;
- it ran on another host and its heartbeat is older than ``STALE_S`` (a worker that died: no process to look at
  and nobody to mark its run crashed).

A live holder is waited for, however long it holds the slot. Nothing here talks to Prefect or the OS: the
caller passes what it observed, so the rule is tested directly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from hashlib import sha256
from typing import Any

HEARTBEAT_S = 20.0
STALE_S = 300.0  # 15 missed heartbeats: longer than any pause a live process takes, short beside a night
FINAL_RUN_STATES = frozenset({"CRASHED", "CANCELLED", "FAILED", "COMPLETED"})
PREFIX = "heartflow-rollout"


def slot_name(backend: str, endpoint_name: str) -> str:
    """The record's name: lowercase letters, digits and dashes (Prefect's rule for variable names), with a
    hash of the exact endpoint name so that names differing only in case or punctuation never share a slot."""
    readable = re.sub(r"[^a-z0-9-]+", "-", endpoint_name.lower()).strip("-")[:60]
    digest = sha256(f"{backend}/{endpoint_name}".encode()).hexdigest()[:8]
    return f"{PREFIX}-{backend}-{readable}-{digest}"


@dataclass(frozen=True)
class HolderRecord:
    """Who holds the slot: enough for an operator to find it, and for the next run to tell it is gone."""

    endpoint: str
    holder: str            # "flow run <name>" or "heartflow rollback (pid N)"
    host: str
    pid: int
    pid_started: float     # the process's start time (seconds since the epoch): a reused pid is another process
    acquired: str          # ISO time
    heartbeat: str         # ISO time, renewed while held
    flow_run_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: Any) -> HolderRecord | None:
        """The record, or None when the stored value is not one (an operator's own variable, a corrupt one)."""
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                return None
        if not isinstance(value, Mapping):
            return None
        try:
            return cls(
                endpoint=str(value["endpoint"]), holder=str(value["holder"]), host=str(value["host"]),
                pid=int(value["pid"]), pid_started=float(value["pid_started"]), acquired=str(value["acquired"]),
                heartbeat=str(value["heartbeat"]),
                flow_run_id=str(value["flow_run_id"]) if value.get("flow_run_id") else None,
            )
        except (KeyError, TypeError, ValueError):
            return None


def why_gone(
    record: HolderRecord, *, now: datetime, this_host: str, process_alive: bool | None, run_state: str | None,
) -> str | None:
    """Why the holder is certainly gone (the words after "held by <holder> (...)"), or None if it may be alive.

    ``process_alive``: whether ``record.pid`` started at ``record.pid_started`` runs on this host (None when the
    holder ran on another host). ``run_state``: the holder's flow run state type ("RUNNING", "CRASHED", ...),
    "UNKNOWN" when the API does not know the run, None when the holder is not a flow run.
    """
    beat = datetime.fromisoformat(record.heartbeat)
    last_seen = beat.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    if record.host == this_host and process_alive is not None:
        # On this host the process is the truth: a live process may still be changing the endpoint even if its
        # run was marked cancelled (a local run keeps running when cancelled from the UI).
        return None if process_alive else f"crashed {last_seen}: process {record.pid} on {record.host} is gone"
    if run_state == "UNKNOWN":
        return f"unknown to the Prefect API, last heartbeat {last_seen}"
    if run_state in FINAL_RUN_STATES:
        return f"{run_state.lower()}, last heartbeat {last_seen}"
    if now - beat > timedelta(seconds=STALE_S):
        return f"no heartbeat since {last_seen} ({(now - beat).total_seconds():.0f} s; presumed crashed)"
    return None
