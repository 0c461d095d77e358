"""The loop's brake: a retrain triggered by a monitoring event runs at most once per event id, and at most
once per endpoint within a cool-down. A pure decision over a small ledger (the flow keeps it in a file)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

DEFAULT_COOLDOWN = timedelta(hours=6)
KEEP_EVENTS = 500


@dataclass(frozen=True)
class GuardDecision:
    allowed: bool
    reason: str
    ledger: dict[str, Any]  # the ledger to write back (unchanged when not allowed)


def decide(ledger: Mapping[str, Any], event_id: str, endpoint: str, now: datetime,
           cooldown: timedelta = DEFAULT_COOLDOWN) -> GuardDecision:
    """Allowed unless ``event_id`` already triggered a retrain, or ``endpoint`` was retrained by an event
    less than ``cooldown`` ago. An allowed decision records both in the returned ledger."""
    seen = list(ledger.get("events", []))
    last = dict(ledger.get("last_retrain", {}))
    if event_id in seen:
        return GuardDecision(False, f"event {event_id} already triggered a retrain: nothing to do", dict(ledger))
    previous = last.get(endpoint)
    if previous:
        since = now - datetime.fromisoformat(previous)
        if since < cooldown:
            return GuardDecision(False, f"{endpoint} was retrained by an event {since.total_seconds() / 60:.0f} min ago, "
                                        f"within the {cooldown.total_seconds() / 3600:g} h cool-down", dict(ledger))
    last[endpoint] = now.isoformat()
    return GuardDecision(True, f"retrain {endpoint} for event {event_id}",
                         {"events": [*seen, event_id][-KEEP_EVENTS:], "last_retrain": last})
