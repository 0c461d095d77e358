"""Issue 17's decision functions, directly: the metrics and their direction, the no-skill baselines and the
floor's tests, the threshold, calibration, the corrected resampled t-test and the class balance."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import f1_score, log_loss, roc_auc_score

from backends.base import EvalReport
from backends.domain.baseline import check_floor, resampled_metric
from backends.domain.calibration import calibration
from backends.domain.cv_gate import compare, corrected_t, params_of
from backends.domain.metrics import class_balance, metric_value, no_skill_value
from backends.domain.selection import decide_gate
from backends.domain.spec import SweepSpec
from src.metrics import labels_at, parse_threshold, pick_threshold

METRICS = ("accuracy", "balanced_accuracy", "f1", "roc_auc", "average_precision", "log_loss")


def _answers(n: int = 60, share: float = 0.3, skill: float = 0.6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < share).astype(int)
    scores = np.clip(skill * y + (1 - skill) * rng.random(n), 0, 1)
    return y, np.round(scores, 2)  # rounded: ties, as a forest's probabilities have


def _report(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5, version: str = "1") -> EvalReport:
    predictions = (scores > threshold).astype(int)
    return EvalReport(endpoint="e", deployment="blue", model_version=version, rows=len(labels),
                      labels=tuple(int(v) for v in labels), predictions=tuple(int(v) for v in predictions),
                      accuracy=float(np.mean(predictions == labels)), report_text="", report={},
                      confusion_matrix=((0, 0), (0, 0)), requests=1, latency_ms_p50=1.0,
                      scores=tuple(float(s) for s in scores))


def test_the_spec_takes_the_metric_and_its_direction_and_refuses_a_contradiction() -> None:
    assert (SweepSpec().metric, SweepSpec().goal, SweepSpec().threshold) == ("accuracy", "maximize", None)
    assert SweepSpec(metric="log_loss").goal == "minimize" and SweepSpec(primary_metric="f1").metric == "f1"
    assert SweepSpec(threshold="0.5").threshold is None and SweepSpec(threshold="auto").threshold == "auto"
    with pytest.raises(ValueError, match="contradicts"):
        SweepSpec(metric="roc_auc", goal="minimize")
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        SweepSpec(threshold=1.0)


def test_no_skill_baselines_are_what_a_constant_scores() -> None:
    y = [1, 0, 0, 0, 1, 0, 0, 0, 0, 0]  # 20 % positive
    assert no_skill_value("accuracy", y) == 0.8
    assert no_skill_value("balanced_accuracy", y) == no_skill_value("roc_auc", y) == 0.5
    assert no_skill_value("average_precision", y) == pytest.approx(0.2)
    assert no_skill_value("f1", y) == pytest.approx(f1_score(y, [1] * 10))  # always answering positive
    assert no_skill_value("log_loss", y) == pytest.approx(log_loss(y, [0.2] * 10))  # the prior


def test_the_vectorised_bootstrap_scores_as_scikit_learn() -> None:
    y, scores = _answers(40)
    predictions = (scores > 0.5).astype(int)
    rows = np.random.default_rng(1).integers(0, 40, (6, 40))
    for metric in METRICS[1:]:
        expected = [metric_value(metric, y[r], predictions[r], scores[r]) for r in rows]
        assert resampled_metric(metric, y, predictions, scores, rows) == pytest.approx(expected), metric
    assert metric_value("roc_auc", y, predictions, scores) == pytest.approx(roc_auc_score(y, scores))


def test_the_floor_passes_skill_and_refuses_noise_for_every_metric() -> None:
    y, skilled = _answers(80, skill=0.7)
    noise = np.random.default_rng(5).random(80).round(2)
    for metric in METRICS:
        good = check_floor(metric, y, (skilled > 0.5).astype(int), skilled)
        bad = check_floor(metric, y, (noise > 0.5).astype(int), noise)
        assert good.beats and good.p_value < 0.05, good.summary()
        assert not bad.beats, bad.summary()
        assert bad.reason() == (f"no model beats the no-skill baseline: {metric} {bad.value:.4f} vs "
                                f"{bad.baseline:.4f} (80 rows, p={bad.p_value:.3g})")


def test_the_accuracy_floor_is_mcnemar_against_the_majority_class() -> None:
    y = np.array([0] * 27 + [1] * 5)  # 32 rows, majority 0.84
    predictions = y.copy()
    predictions[:2] = 1  # 2 rows only the constant gets right; 5 only the model
    floor = check_floor("accuracy", y, predictions)
    assert floor.value == pytest.approx(30 / 32) and floor.baseline == pytest.approx(27 / 32)
    assert floor.p_value == pytest.approx(binomtest(5, 7, 0.5, alternative="greater").pvalue)
    assert not floor.beats  # 3 rows better than "no" on 32: not evidence of skill at 0.05


def test_the_gate_refuses_a_first_model_below_its_floor_by_the_runs_metric() -> None:
    y, scores = _answers(60, share=0.1, skill=0.5, seed=3)
    report = _report(y, scores, threshold=0.9)  # almost always "no": accuracy near the majority's
    by_accuracy = decide_gate(report, None, metric="accuracy")
    by_auc = decide_gate(report, None, metric="roc_auc")
    assert not by_accuracy.promote and by_accuracy.reason.startswith("no model beats the no-skill baseline: accuracy")
    assert by_accuracy.floor_failed and by_accuracy.figures().baseline == pytest.approx(no_skill_value("accuracy", y))
    assert by_auc.promote and by_auc.candidate_value == pytest.approx(roc_auc_score(y, scores))


def test_the_gate_compares_by_the_metric_and_a_floor_failure_wins_over_the_champion() -> None:
    y, scores = _answers(80, skill=0.7)
    champion = _report(y, scores, version="1")
    worse = _report(y, np.clip(scores + np.random.default_rng(9).normal(0, 0.35, 80), 0, 1), version="2")
    decision = decide_gate(worse, champion, rule="paired", metric="roc_auc")
    assert decision.metric == "roc_auc" and decision.champion_value == pytest.approx(roc_auc_score(y, scores))
    assert "paired bootstrap" in decision.reason
    noise = _report(y, np.random.default_rng(2).random(80), version="3")
    refused = decide_gate(noise, champion, rule="tolerance", tolerance=1.0, metric="roc_auc")
    assert not refused.promote and refused.reason.startswith("no model beats the no-skill baseline")


def test_auto_threshold_maximises_balanced_accuracy_or_f1() -> None:
    y, scores = _answers(200, share=0.15, skill=0.4, seed=4)
    grid = np.unique(scores)

    def best(score_of) -> float:
        return max(score_of(labels_at(scores, t)) for t in grid)

    chosen = pick_threshold(y, scores, "roc_auc")
    balanced = lambda p: 0.5 * (np.mean(p[y == 1] == 1) + np.mean(p[y == 0] == 0))  # noqa: E731
    assert balanced(labels_at(scores, chosen)) == pytest.approx(best(balanced))
    f1_chosen = pick_threshold(y, scores, "f1")
    assert f1_score(y, labels_at(scores, f1_chosen)) == pytest.approx(best(lambda p: f1_score(y, p)))
    assert parse_threshold("0.5") is None and parse_threshold(0.3) == 0.3 and parse_threshold("AUTO") == "auto"
    # None is the model's own decision: a tie at exactly 0.5 goes negative, as scikit-learn's argmax.
    assert labels_at(np.array([0.5, 0.6]), None).tolist() == [0, 1] and labels_at(np.array([0.5]), 0.5).tolist() == [1]


def test_calibration_gives_the_brier_score_and_the_reliability_bins() -> None:
    y, scores = _answers(100)
    found = calibration(y, scores, bins=5)
    assert found is not None and found.brier == pytest.approx(np.mean((scores - y) ** 2))
    assert sum(b.rows for b in found.bins) == 100 and all(0 <= b.observed <= 1 for b in found.bins)
    assert calibration(y, ()) is None


def test_the_corrected_t_test_is_nadeau_and_bengios() -> None:
    differences = [-0.06, -0.04, -0.07, -0.05, -0.08]
    mean, se, p_worse, low, high, power = corrected_t(differences, test_rows=100, train_rows=400)
    sd = float(np.std(differences, ddof=1))
    assert se == pytest.approx(math.sqrt(1 / 5 + 100 / 400) * max(sd, math.sqrt(0.1 / 100)))
    from scipy.stats import t

    assert p_worse == pytest.approx(t.cdf(mean / se, 4)) and low < mean < high and 0 < power < 1
    result = compare("log_loss", [0.40, 0.41], [0.35, 0.36], test_rows=50, train_rows=50)
    assert result.difference == pytest.approx(-0.05)  # log loss: lower is better, so the candidate is worse
    assert params_of({"heartflow.params": '{"n_estimators": 10}'}) == {"n_estimators": 10}
    assert params_of({"heartflow.params": "n_estimators=10"}) == {"n_estimators": 10}  # an old record (lineage)
    assert params_of({"heartflow.params": "not a record"}) is None


def test_the_class_balance_recommends_a_metric_for_a_rare_positive_class() -> None:
    rare = class_balance(1000, 100, "Presence")
    assert rare.recommended == "average_precision" and "rare (10.0%)" in rare.why and "0.900" in rare.why
    assert class_balance(303, 165).recommended == "accuracy"
    assert class_balance(100, 95).recommended == "balanced_accuracy"
