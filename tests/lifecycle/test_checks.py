"""The season's checks themselves, on states built by hand: each names the broken state it exists for, and a
sound state passes (a check that cannot fail proves nothing)."""

from __future__ import annotations

import pytest

from backends.results import HistoryEntry
from tests.lifecycle.azure_season import CrashingAzure, CrashPoint, ProcessDied
from tests.lifecycle.invariants import decision_problems
from tests.lifecycle.runner import classify_output


def entry(event: str, version: str, by: str = "flow run a") -> HistoryEntry:
    return HistoryEntry(time="2026-12-03T00:00:00+00:00", event=event, endpoint="e", deployment="blue",
                        model_name="m", model_version=version, accuracy=0.8, champion_accuracy=None, reason="",
                        triggered_by=by)


def test_history_check_passes_a_sound_season_and_names_each_broken_one() -> None:
    sound = [entry("promoted", "1"), entry("rejected", "2", "flow run b"), entry("abandoned", "3", "flow run c"),
             entry("rejected", "2", "flow run d")]  # a rejected version gated again by a later run
    assert decision_problems(sound, {"1": "champion", "2": "rejected", "3": "rejected"}) == []
    assert decision_problems([entry("promoted", "1")], {"1": "champion", "2": "candidate"}) == [
        "v2 (status candidate) has no decision in history: neither promoted nor rejected"]
    both = decision_problems([entry("abandoned", "4"), entry("promoted", "4")], {"4": "champion"})
    assert both == ["v4 has {'abandoned': 1, 'promoted': 1} in history", "v4: flow run a recorded its decision 2 times"]
    assert decision_problems([entry("rejected", "5")], {"5": "champion"}) == [
        "v5: history says rejected, its status tag says champion"]


def test_run_outcomes_are_told_apart_from_the_cli_output() -> None:
    assert classify_output(0, "no new data since m v1 (sha256 abc); no deployment change") == ("unchanged", "")
    assert classify_output(0, "promoted m v2")[0] == "promoted"
    assert classify_output(1, "error: m v3 was rejected by the promotion gate: worse")[0] == "rejected"
    assert classify_output(1, "error: stage evaluate-e-green failed: EvaluationError: 400")[0] == "failed"
    assert classify_output(1, "error: http://127.0.0.1:1/x.csv answered HTTP 500: check the URL")[0] == "refused"
    assert classify_output(-9, "")[0] == "failed"


def test_a_crash_point_kills_its_call_before_or_after_the_service_did_it_then_is_disarmed() -> None:
    fake = CrashingAzure(crash=CrashPoint("online_endpoints.get_keys", call=2, after=False))
    fake.endpoints["e"] = object()
    assert fake.online_endpoints.get_keys("e").primary_key == "k-e"  # the first call goes through
    with pytest.raises(ProcessDied, match="get_keys#2-"):
        fake.online_endpoints.get_keys("e")
    fake.arm(None)
    assert fake.online_endpoints.get_keys("e").primary_key == "k-e"
    fake.arm(CrashPoint("online_endpoints.begin_delete", after=True))
    with pytest.raises(ProcessDied):
        fake.online_endpoints.begin_delete(name="e")
    assert "e" not in fake.endpoints  # the service deleted it before the process died
