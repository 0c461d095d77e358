"""The pure rollback-target decision over an endpoint's history."""

from __future__ import annotations

import pytest

from backends.domain.rollback import checked_rollback_target, served_versions
from backends.errors import DeploymentError
from backends.results import HistoryEntry


def _entry(event: str, version: str, model: str = "m") -> HistoryEntry:
    return HistoryEntry(time="2026-11-28T00:00:00+00:00", event=event, endpoint="ep", deployment="blue",
                        model_name=model, model_version=version, accuracy=None, champion_accuracy=None,
                        reason="", triggered_by="t")


HISTORY = (_entry("promoted", "1"), _entry("rejected", "2"), _entry("promoted", "3"), _entry("rollback", "1"),
           _entry("promoted", "7", model="other"), _entry("promoted", "4"))


def test_served_versions_are_the_promotions_and_rollbacks_of_that_model_once_each() -> None:
    assert served_versions(HISTORY, "m") == ["1", "3", "4"]
    assert served_versions(HISTORY, "other") == ["7"]
    assert served_versions((), "m") == []


@pytest.mark.parametrize("target", ["1", "3"])
def test_an_earlier_champion_is_a_target(target: str) -> None:
    assert checked_rollback_target(HISTORY, "m", "ep", target, current="4") == target


def test_a_rejected_version_or_another_models_version_never_served() -> None:
    for target in ("2", "7"):
        with pytest.raises(DeploymentError, match=f"m v{target} never served on ep as champion.*v1, v3 "):
            checked_rollback_target(HISTORY, "m", "ep", target, current="4")


def test_the_current_champion_is_not_a_target() -> None:
    with pytest.raises(DeploymentError, match="m v4 is the champion serving on ep already"):
        checked_rollback_target(HISTORY, "m", "ep", "4", current="4")


def test_with_no_earlier_champion_the_error_says_so() -> None:
    with pytest.raises(DeploymentError, match="none besides the current champion"):
        checked_rollback_target((_entry("promoted", "1"),), "m", "ep", "5", current="1")
