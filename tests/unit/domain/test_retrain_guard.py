"""The loop's brake: one retrain per event id, one per endpoint within the cool-down."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from backends.domain.retrain_guard import decide

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


def test_first_event_is_allowed_and_recorded() -> None:
    decision = decide({}, "ev-1", "ep", NOW)
    assert decision.allowed and decision.ledger == {"events": ["ev-1"], "last_retrain": {"ep": NOW.isoformat()}}


def test_the_same_event_never_retrains_twice() -> None:
    ledger = decide({}, "ev-1", "ep", NOW).ledger
    again = decide(ledger, "ev-1", "ep", NOW + timedelta(days=2))
    assert not again.allowed and "already triggered" in again.reason and again.ledger == ledger


def test_cool_down_per_endpoint() -> None:
    ledger = decide({}, "ev-1", "ep", NOW).ledger
    soon = decide(ledger, "ev-2", "ep", NOW + timedelta(hours=1), timedelta(hours=6))
    assert not soon.allowed and "cool-down" in soon.reason
    other = decide(ledger, "ev-3", "other-ep", NOW + timedelta(hours=1), timedelta(hours=6))
    assert other.allowed
    later = decide(ledger, "ev-4", "ep", NOW + timedelta(hours=7), timedelta(hours=6))
    assert later.allowed and later.ledger["events"] == ["ev-1", "ev-4"]
