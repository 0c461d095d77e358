"""The paired promotion gate: McNemar's exact test, the power at the holdout size, rows the champion saw."""

from __future__ import annotations

import pytest
from scipy.stats import binomtest

from backends.base import EvalReport
from backends.domain.gate_stats import mcnemar_power, paired_comparison, rows_for_power
from backends.domain.split import TAG_SPLIT, is_holdout, split_tag
from backends.domain.selection import decide_gate


def _report(labels: list[int], predictions: list[int], ids: list[str], version: str) -> EvalReport:
    right = sum(p == y for p, y in zip(predictions, labels, strict=True))
    return EvalReport(
        endpoint="e", deployment="blue", model_version=version, rows=len(labels), labels=tuple(labels),
        predictions=tuple(predictions), accuracy=right / len(labels), report_text="", report={},
        confusion_matrix=((0, 0), (0, 0)), requests=1, latency_ms_p50=1.0, row_ids=tuple(ids),
    )


def _keys(n: int, fraction: float = 1.0) -> list[str]:
    """Row keys (64 hex digits) that are all on the holdout side of ``fraction``."""
    keys, i = [], 0
    while len(keys) < n:
        key = format(i * 0x9E3779B97F4A7C15 % 2**64, "016x") + "0" * 48
        if is_holdout(key, fraction):
            keys.append(key)
        i += 1
    return keys


def _pair(n: int, cand_only: int, champ_only: int, both_wrong: int = 0) -> tuple[list[int], list[int], list[int]]:
    # Both classes, so that the models beat the no-skill floor (a constant scores 0.5 here).
    labels = [i % 2 for i in range(n)]
    cand = list(labels)
    champ = list(labels)
    i = 0
    for _ in range(cand_only):
        champ[i] = 1 - labels[i]
        i += 1
    for _ in range(champ_only):
        cand[i] = 1 - labels[i]
        i += 1
    for _ in range(both_wrong):
        cand[i] = champ[i] = 1 - labels[i]
        i += 1
    return labels, cand, champ


def test_mcnemar_is_the_exact_binomial_test_on_discordant_rows() -> None:
    labels, cand, champ = _pair(200, cand_only=4, champ_only=14, both_wrong=10)
    stats = paired_comparison(labels, cand, champ)
    assert (stats.n, stats.candidate_only_right, stats.champion_only_right) == (200, 4, 14)
    assert stats.difference == pytest.approx((4 - 14) / 200)
    assert stats.p_value == pytest.approx(binomtest(4, 18, 0.5).pvalue)
    assert stats.p_worse == pytest.approx(binomtest(4, 18, 0.5, alternative="less").pvalue)
    assert stats.p_worse < stats.p_value


def test_power_grows_with_rows_and_is_poor_at_the_default_holdout() -> None:
    small, large = mcnemar_power(30), mcnemar_power(1000)
    assert small < 0.2 < 0.8 < large
    needed = rows_for_power()
    assert needed is not None and mcnemar_power(needed) >= 0.8 > mcnemar_power(needed - 10)


def test_paired_gate_promotes_a_candidate_one_row_worse_and_rejects_a_significant_drop() -> None:
    keys = _keys(300)
    labels, cand, champ = _pair(300, cand_only=2, champ_only=3)
    noise = decide_gate(_report(labels, cand, keys, "2"), _report(labels, champ, keys, "1"), rule="paired")
    assert noise.promote and noise.rows == 300 and noise.tolerance == 0.05
    assert noise.difference == pytest.approx(-1 / 300) and noise.p_value == pytest.approx(1.0)
    # The tolerance rule rejects the same one-row drop.
    strict = decide_gate(_report(labels, cand, keys, "2"), _report(labels, champ, keys, "1"))
    assert not strict.promote and "< champion" in strict.reason and "McNemar exact p=" in strict.reason
    labels, cand, champ = _pair(300, cand_only=1, champ_only=12)
    worse = decide_gate(_report(labels, cand, keys, "2"), _report(labels, champ, keys, "1"), rule="paired")
    assert not worse.promote and "significantly worse" in worse.reason and worse.p_worse < 0.05
    # A drop beyond the tolerance is rejected even when the test cannot see it.
    labels, cand, champ = _pair(300, cand_only=0, champ_only=4)
    capped = decide_gate(_report(labels, cand, keys, "2"), _report(labels, champ, keys, "1"), rule="paired",
                         tolerance=0.01)
    assert not capped.promote and "more than the tolerance" in capped.reason


def test_a_small_holdout_says_it_cannot_tell_a_five_point_difference() -> None:
    keys = _keys(31)
    labels, cand, champ = _pair(31, cand_only=1, champ_only=2)
    decision = decide_gate(_report(labels, cand, keys, "2"), _report(labels, champ, keys, "1"), rule="paired")
    assert decision.power is not None and decision.power < 0.8
    assert any("too few to detect a 5% difference" in w for w in decision.warnings)
    record = decision.record()
    assert {"rows", "candidate", "champion", "difference", "p_value", "power"} <= set(record)


def test_rows_the_champion_trained_on_are_left_out_of_the_comparison() -> None:
    keys = _keys(200, fraction=0.3)
    labels, cand, champ = _pair(200, cand_only=10, champ_only=10)
    # The champion cheats on the rows it trained on: it is right on all of them.
    seen = [i for i, k in enumerate(keys) if not is_holdout(k, 0.1)]
    for i in seen:
        champ[i] = labels[i]
    decision = decide_gate(_report(labels, cand, keys, "2"), _report(labels, champ, keys, "1"),
                           champion_tags={TAG_SPLIT: split_tag(0.1)})
    assert decision.rows_excluded == len(seen) > 0 and decision.rows == 200 - len(seen)
    assert decision.champion_rows_known and "left out" in decision.reason
    unknown = decide_gate(_report(labels, cand, keys, "2"), _report(labels, champ, keys, "1"), champion_tags={})
    assert unknown.rows == 200 and not unknown.champion_rows_known
    assert any("training rows are unknown" in w for w in unknown.warnings)


def test_reports_on_different_rows_are_a_bug_not_a_decision() -> None:
    labels, cand, champ = _pair(10, 0, 0)
    with pytest.raises(ValueError, match="same rows"):
        decide_gate(_report(labels, cand, _keys(10), "2"), _report(labels, champ, _keys(11)[1:], "1"))


def test_no_champion_promotes_with_the_row_count() -> None:
    labels, cand, _ = _pair(40, 0, 0)
    decision = decide_gate(_report(labels, cand, _keys(40), "1"), None, rule="paired")
    assert decision.promote and decision.rows == 40 and decision.champion is None
