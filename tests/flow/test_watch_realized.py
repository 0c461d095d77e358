"""The watch reads labels that arrive during its window (in-memory backend): live requests to the endpoint,
labelled by request id as they are answered; labels that contradict the new champion's answers make the watch
roll back, naming realized performance; labels that agree let the watch pass."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pandas as pd
import pytest

from backends.errors import EvaluationError
from tests.flow.bed import ENDPOINT, MODEL, FlowBed, artifacts_of, first_run
from tests.tables import TARGET

pytestmark = pytest.mark.slow


@contextmanager
def labelled_traffic(bed: FlowBed, path: str, label_for: Callable[[int], int]) -> Iterator[None]:
    """Live one-row requests (rows of the table at ``path``, as a client would send them) every 20 ms while the
    block runs, each labelled at once with ``label_for(answer)``."""
    rows = pd.read_csv(path).drop(columns=[TARGET])
    stop = threading.Event()

    def send() -> None:
        key = bed.backend.endpoints.key(ENDPOINT)
        n = 0
        while not stop.wait(0.02):
            n += 1
            rid = f"live-{n}"
            try:
                labels, _ = bed.backend.endpoints.answer(ENDPOINT, None, key, rows.iloc[[n % len(rows)]], request_id=rid)
            except EvaluationError:  # traffic moving between deployments: the next request goes on
                continue
            bed.backend.add_feedback([(rid, label_for(labels[0]))])

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def _second(bed: FlowBed, path: str):
    return bed.spec(path, seed=7, data={"force": True}, deploy={"promotion_tolerance": 1.0, "watch_seconds": 5})


def test_labels_contradicting_the_new_champion_roll_it_back(bed: FlowBed, first_table: pd.DataFrame) -> None:
    path, first = first_run(bed, first_table)
    with labelled_traffic(bed, path, lambda answer: 1 - answer):  # a concept shift: every answer is wrong
        state = bed.run(_second(bed, path))
    assert state.is_failed() and "rolled back by the watch" in state.message, state.message
    assert "realized accuracy 0.0000 on" in state.message and "significantly below the gate's" in state.message
    history = bed.backend.history(ENDPOINT)
    assert [(e.event, e.model_version) for e in history] == [("promoted", "1"), ("promoted", "2"), ("rollback", "1")]
    watch = history[-1].watch
    assert history[-1].triggered_by == "watch" and watch is not None and watch.outcome == "rolled_back"
    assert (watch.check, watch.realized_metric, watch.realized_value) == ("realized", "accuracy", 0.0)
    assert watch.realized_labelled >= 30 and watch.gate_value is not None and watch.realized_p_value < 0.01
    assert bed.backend.champion(MODEL).version == "1" and bed.backend.endpoints.read_traffic(ENDPOINT) == {"blue": 100}
    table = artifacts_of(state)["watch-result"].data
    assert "realized accuracy" in table and '"crossed": true' in table.replace("True", "true")


def test_labels_agreeing_with_the_new_champion_let_the_watch_pass(bed: FlowBed, first_table: pd.DataFrame) -> None:
    path, _ = first_run(bed, first_table)
    with labelled_traffic(bed, path, lambda answer: answer):
        state = bed.run(_second(bed, path))
    assert state.is_completed(), state.message
    history = bed.backend.history(ENDPOINT)
    assert [e.event for e in history] == ["promoted", "promoted", "watch-passed"]
    watch = history[-1].watch
    assert watch is not None and watch.outcome == "passed" and watch.realized_value == 1.0
    assert watch.realized_labelled >= 30 and "not significantly below" in watch.reason
    assert bed.backend.champion(MODEL).version == "2" and bed.backend.endpoints.read_traffic(ENDPOINT) == {"green": 100}
