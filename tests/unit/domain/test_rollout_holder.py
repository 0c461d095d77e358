"""The rule that decides whether a rollout slot's holder is gone (its hold reclaimed) or alive (waited for)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from backends.domain.rollout_holder import STALE_S, HolderRecord, slot_name, why_gone

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def record(host: str = "here", beat_age_s: float = 0, run: str | None = "run-id") -> HolderRecord:
    beat = (NOW - timedelta(seconds=beat_age_s)).isoformat()
    return HolderRecord(endpoint="ep", holder="flow run quick-fox", host=host, pid=7, pid_started=1.0,
                        acquired=beat, heartbeat=beat, flow_run_id=run)


def test_on_this_host_the_process_decides() -> None:
    assert why_gone(record(), now=NOW, this_host="here", process_alive=True, run_state="CRASHED") is None
    gone = why_gone(record(), now=NOW, this_host="here", process_alive=False, run_state="RUNNING")
    assert gone is not None and gone.startswith("crashed 2026-12-03 09:00:00") and "process 7 on here is gone" in gone
    # a live process with a heartbeat that stalled (a long pause) is still a live holder
    assert why_gone(record(beat_age_s=STALE_S * 3), now=NOW, this_host="here", process_alive=True,
                    run_state="RUNNING") is None


def test_on_another_host_the_run_state_and_the_heartbeat_decide() -> None:
    other = record(host="there")
    assert why_gone(other, now=NOW, this_host="here", process_alive=None, run_state="RUNNING") is None
    for state in ("CRASHED", "CANCELLED", "FAILED", "COMPLETED"):
        assert why_gone(other, now=NOW, this_host="here", process_alive=None, run_state=state).startswith(state.lower())
    assert "unknown to the Prefect API" in why_gone(other, now=NOW, this_host="here", process_alive=None,
                                                     run_state="UNKNOWN")
    stale = record(host="there", beat_age_s=STALE_S + 1, run=None)
    assert "no heartbeat since" in why_gone(stale, now=NOW, this_host="here", process_alive=None, run_state=None)
    fresh = record(host="there", beat_age_s=STALE_S - 1, run=None)
    assert why_gone(fresh, now=NOW, this_host="here", process_alive=None, run_state=None) is None


def test_records_round_trip_and_foreign_values_are_refused() -> None:
    assert HolderRecord.from_json(record().to_json()) == record()
    assert HolderRecord.from_json("not json") is None
    assert HolderRecord.from_json({"endpoint": "ep"}) is None


def test_slot_names_are_valid_variable_names_and_tell_apart_names_that_differ_in_case() -> None:
    name = slot_name("azure", "Heart_Classify.Endpoint")
    assert name.startswith("heartflow-rollout-azure-heart-classify-endpoint-")
    assert set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
    assert slot_name("azure", "Heart") != slot_name("azure", "heart") != slot_name("local", "heart")
