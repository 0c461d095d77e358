"""A season on the Azure backend in process, on the SDK-spec'd control-plane fakes: crashes at every SDK call
that is a stage boundary, quota errors and throttling, the invariants after every night
(tests/lifecycle/azure_season.py). The short season runs in `make test`, the long one in `make soak`."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from backends.azure.settings import AzureSettings
from tests.lifecycle.azure_season import AZURE_BOUNDARIES, AzureSeason, long_azure_season, short_azure_season
from tests.lifecycle.runner import REPO
from tests.lifecycle.season import SeasonReport


def _play(root: Path, azure: AzureSettings, label: str, plan: list[tuple[str, str | None, str | None]]) -> SeasonReport:
    season = AzureSeason(root, azure, label)
    started = time.monotonic()
    for data, crash, fault in plan:
        season.play_night(data, crash, fault)
    season.report.seconds = time.monotonic() - started
    print("\n" + season.report.summary() + "\n" + "\n".join(season.report.nights_log))
    season.report.write(REPO / "test-output")
    return season.report


@pytest.mark.slow
def test_a_short_azure_season_keeps_every_invariant(tmp_path: Path, settings: AzureSettings) -> None:
    report = _play(tmp_path, settings, "azure-short", short_azure_season())
    # The crashes before the gate always land; those inside a promotion land when the gate promotes.
    assert report.faults_landed["crash@deploy"] == 1 and report.faults_landed["crash@evaluate"] == 1, report.summary()
    assert report.outcomes["promoted"] >= 1 and report.outcomes["rejected"] >= 1, report.summary()
    assert not report.violations, report.summary()


@pytest.mark.soak
@pytest.mark.timeout(3600)
def test_a_long_azure_season_keeps_every_invariant(tmp_path: Path, settings: AzureSettings) -> None:
    plan = long_azure_season()
    assert len(plan) >= 30 and {crash for _, crash, _ in plan} >= set(AZURE_BOUNDARIES)
    report = _play(tmp_path, settings, "azure-soak", plan)
    assert sum(report.faults_landed.values()) >= len(AZURE_BOUNDARIES), report.summary()
    assert not report.violations, report.summary()
