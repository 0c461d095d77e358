"""A team's season on one local home, through the real CLI (`heartflow run` as a subprocess in its own process
group, Prefect's temporary server on one PREFECT_HOME, MLflow on SQLite, the endpoint host serving between
nights), with faults at stage boundaries and the invariants checked after every night.

The short season runs in `make test`; the long one (``soak``, deselected by default) in `make soak`. Both
print their summary and write it to test-output/lifecycle-<season>.json."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.local.backend import LocalBackend
from tests.lifecycle.runner import REPO
from tests.lifecycle.season import ENDPOINT, FAULTS, Night, Season, SeasonReport, long_season, short_season

OUTPUT = REPO / "test-output"


def _play(root: Path, label: str, nights: list[Night]) -> SeasonReport:
    season = Season(root, label)
    try:
        report = season.play(nights)
    finally:
        LocalBackend(season.home).teardown(ENDPOINT)
    print("\n" + report.summary() + "\n" + "\n".join(report.nights_log))
    report.write(OUTPUT)
    return report


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_short_season_keeps_every_invariant(tmp_path: Path) -> None:
    report = _play(tmp_path, "short", short_season())
    assert report.nights == 5, report.summary()
    # The slot-holder's kill always lands (the deploy comes before any decision); the promotion's kill lands
    # when the gate promotes, which the summary reports.
    assert report.faults_landed["kill@deploy"] == 1, report.summary()
    assert report.outcomes["promoted"] >= 1, report.summary()  # a season where nothing serves proves nothing
    assert report.outcomes["refused"] == 1 and report.outcomes["rejected"] >= 1, report.summary()
    assert not report.violations, report.summary()


@pytest.mark.soak
@pytest.mark.timeout(6 * 3600)
def test_a_long_season_keeps_every_invariant(tmp_path: Path) -> None:
    plan = long_season()
    assert len(plan) >= 30 and {n.fault for n in plan} >= set(FAULTS)
    report = _play(tmp_path, "soak", plan)
    assert report.nights == len(plan), report.summary()
    assert set(report.faults_injected) == set(FAULTS), report.summary()
    assert not report.violations, report.summary()
