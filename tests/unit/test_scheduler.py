"""Which trials write their model: only those at least as good as the best the sweep has seen."""

from __future__ import annotations

import math
import multiprocessing

import pytest

from backends.local.scheduler import prestart_workers, take_prestarted
from backends.local.trial_worker import claims_lead


def _leader(value: float = math.nan):
    return multiprocessing.get_context("spawn").Value("d", value)


def test_the_first_value_leads_and_a_worse_one_does_not() -> None:
    leader = _leader()
    assert claims_lead(leader, 0.80, "maximize")
    assert not claims_lead(leader, 0.79, "maximize")
    assert leader.value == 0.80


def test_a_tie_leads_so_the_tie_break_winner_has_its_model() -> None:
    leader = _leader(0.80)
    assert claims_lead(leader, 0.80, "maximize")


def test_minimize_leads_downwards() -> None:
    leader = _leader(0.5)
    assert not claims_lead(leader, 0.6, "minimize")
    assert claims_lead(leader, 0.4, "minimize") and leader.value == 0.4


def test_nan_or_missing_never_leads() -> None:
    leader = _leader()
    assert not claims_lead(leader, math.nan, "maximize")
    assert not claims_lead(leader, None, "maximize")
    assert math.isnan(leader.value)


@pytest.mark.full  # spawns a worker interpreter: `make test`, not `make test-fast`
def test_prestarted_workers_go_to_a_sweep_of_their_size_only() -> None:
    from backends.local.scheduler import stop_prestarted

    stop_prestarted()  # nothing left by an earlier test of this process
    prestart_workers(1)
    prestart_workers(1)  # one set of workers a process: the second call starts nothing
    assert take_prestarted(2) is None  # another size: stopped, and the sweep starts its own
    assert take_prestarted(1) is None  # gone with it
    prestart_workers(1)
    taken = take_prestarted(1)
    assert taken is not None and taken.workers == 1 and math.isnan(taken.leader.value)
    assert taken.executor.submit(math.sqrt, 4.0).result(timeout=120) == 2.0  # live workers
    taken.executor.shutdown(cancel_futures=True)


@pytest.mark.parametrize(
    ("fields", "queues", "starts"),
    [
        ({}, True, True),
        ({"sampling": "grid", "search_space": {"n_estimators": {"type": "choice", "values": [10, 20]}}}, True, True),
        ({"timeout_s": 60}, True, False),  # the sweep's clock decides which trials run: none before it starts
        ({"trial_timeout_s": 60}, False, False),  # a queued trial's clock would run while it waits
        ({"sampling": "bayesian"}, False, False),  # each trial is chosen from the finished ones
    ],
)
def test_when_trials_may_queue_or_start_before_the_sweep(fields: dict, queues: bool, starts: bool) -> None:
    from backends.domain.spec import SweepSpec

    spec = SweepSpec.model_validate(fields)
    assert (spec.queues_ahead, spec.starts_ahead) == (queues, starts)
    assert spec.learns_from_results == (spec.sampling == "bayesian")
