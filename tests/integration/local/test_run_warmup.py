"""What `heartflow run` does before its flow needs it (flows/run_warmup.py): the first trials handed to the
prestarted workers only on a first local run of a small table, never on a dry run or beside a champion."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.domain.spec import PipelineSpec
from backends.local import scheduler
from backends.local.registry import LocalRegistry
from flows import run_warmup
from flows.cli_spec import load_data_of


@pytest.fixture
def workers():
    scheduler.stop_prestarted()
    scheduler.prestart_workers(2)
    yield
    scheduler.stop_prestarted()


def _spec(home: Path, **changes) -> PipelineSpec:
    return PipelineSpec(home=str(home), **changes)


def test_a_first_run_hands_out_its_trials_and_stores_the_rows_where_the_upload_finds_them(tmp_path: Path, workers) -> None:
    spec = _spec(tmp_path / "home")
    loaded = load_data_of(spec)
    assert run_warmup.start_first_trials(spec, loaded) == spec.sweep.max_total_trials
    assert scheduler.early_trials_since() is not None
    assert (tmp_path / "home" / "data" / loaded.prepared.train_sha256 / "train.csv").exists()


@pytest.mark.parametrize("why", ["dry run", "large table", "champion"])
def test_no_early_trials_where_the_run_may_not_sweep_or_start_up_does_not_matter(
    tmp_path: Path, workers, monkeypatch: pytest.MonkeyPatch, why: str,
) -> None:
    spec = _spec(tmp_path / "home", dry_run=why == "dry run")
    loaded = load_data_of(spec)
    if why == "large table":
        monkeypatch.setattr(run_warmup, "EARLY_TRIALS_MAX_ROWS", len(loaded.prepared.train) - 1)
    if why == "champion":  # a champion in the registry: the run may end before its sweep (unchanged data)
        monkeypatch.setattr(LocalRegistry, "champion", lambda self, name: object())
    assert run_warmup.start_first_trials(spec, loaded) == 0
    assert scheduler.early_trials_since() is None
    assert not (tmp_path / "home" / "data").exists()
