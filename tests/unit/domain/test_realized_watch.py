"""The watch's realized-performance rule: labelled live rows of the new champion against the gate's figure,
a one-sided exact binomial test (bootstrap for f1 and roc_auc), judged from a minimum number of rows; and the
watch rolling back on it, naming the check."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from backends.domain.realized import (
    WATCH_MIN_LABELLED, WATCH_REALIZED_MARGIN, LabelledAnswer, realized_check,
)
from backends.domain.shadow import WatchSample, run_watch, watch_verdict
from tests.unit.domain.shadow_fakes import ENDPOINT, FakeLive

POS, NEG = "Presence", "Absence"


def rows(right: int, wrong: int, *, predicted: str = POS) -> list[LabelledAnswer]:
    """``right`` rows whose label is the answer, ``wrong`` whose label is the other class."""
    other = NEG if predicted == POS else POS
    return ([LabelledAnswer(f"r{i}", predicted, predicted, POS, 0.8) for i in range(right)]
            + [LabelledAnswer(f"w{i}", predicted, other, POS, 0.8) for i in range(wrong)])


def test_a_clear_drop_is_significant_and_named() -> None:
    check = realized_check(rows(12, 28), "accuracy", 0.85)
    assert check.below and (check.value, check.labelled, check.trials) == (0.3, 40, 40)
    assert check.p_value is not None and check.p_value < 0.01
    assert "realized accuracy 0.3000 on 40 labelled live row(s) is significantly below the gate's 0.8500" in check.reason
    assert "exact binomial, 12/40" in check.reason


def test_agreeing_labels_small_samples_and_no_gate_are_not_a_rollback() -> None:
    assert not realized_check(rows(84, 16), "accuracy", 0.85).below  # 0.84: within the noise of the gate's figure
    few = realized_check(rows(0, WATCH_MIN_LABELLED - 1), "accuracy", 0.85)
    assert not few.below and few.p_value is None and "not judged" in few.reason
    assert not realized_check(rows(0, 60), "accuracy", None).below


def test_precision_and_recall_count_their_own_trials_and_f1_is_bootstrapped() -> None:
    # 40 rows answered negative and right, 40 answered positive of which 10 right: precision 0.25 on 40 trials.
    answers = rows(40, 0, predicted=NEG) + rows(10, 30, predicted=POS)
    precision = realized_check(answers, "precision", 0.8)
    assert precision.below and (precision.trials, precision.value) == (40, 0.25)
    recall = realized_check(answers, "recall", 0.8)  # every labelled positive was answered positive
    assert not recall.below and recall.value == 1.0 and recall.trials == 10
    f1 = realized_check(answers, "f1", 0.9)
    assert f1.below and "bootstrap" in f1.reason


@settings(max_examples=60, deadline=None)
@given(n=st.integers(WATCH_MIN_LABELLED, 400), gate=st.floats(0.55, 0.99), share=st.floats(0.0, 1.0))
def test_a_realized_accuracy_at_or_above_the_floor_never_rolls_back(n: int, gate: float, share: float) -> None:
    right = round(share * n)
    check = realized_check(rows(right, n - right), "accuracy", gate)
    if right / n >= gate - WATCH_REALIZED_MARGIN:
        assert not check.below
    worse = realized_check(rows(max(right - 5, 0), n - max(right - 5, 0)), "accuracy", gate)
    assert worse.p_value is None or check.p_value is None or worse.p_value <= check.p_value  # fewer right: never less evidence


def test_the_watch_rolls_back_on_realized_performance_after_errors_and_latency_pass() -> None:
    bad = realized_check(rows(5, 35), "accuracy", 0.85)
    verdict = watch_verdict(WatchSample(400, 0, (1.0,) * 400), 1.0, bad)
    assert verdict.rollback and verdict.check == "realized" and verdict.reason == bad.reason
    errors = watch_verdict(WatchSample(50, 5), None, bad)
    assert errors.check == "errors"  # a failing model is named by its errors first

    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    looks: list[float] = []
    answers = [rows(3, 2), rows(5, 35)]  # too few labels first, then a clear drop

    def realized():
        looks.append(now[0])
        return realized_check(answers.pop(0) if len(answers) > 1 else answers[0], "accuracy", 0.85)

    live = FakeLive(samples=[WatchSample(100, 0)])
    got = run_watch(live, ENDPOINT, "w1", 60, None, clock=lambda: now[0], sleep=sleep, realized=realized, labels_every_s=5)
    assert got.outcome == "rolled_back" and got.check == "realized" and looks == [1.0, 6.0]
    assert (got.realized_metric, got.realized_value, got.realized_labelled, got.gate_value) == ("accuracy", 0.125, 40, 0.85)
    assert live.calls == []  # left on for the caller's rollback

    now[0] = 0.0
    live = FakeLive(samples=[WatchSample(100, 0)])
    got = run_watch(live, ENDPOINT, "w1", 10, None, clock=lambda: now[0], sleep=sleep,
                    realized=lambda: realized_check(rows(90, 10), "accuracy", 0.85))
    assert got.outcome == "passed" and got.realized_value == 0.9 and "not significantly below" in got.reason
