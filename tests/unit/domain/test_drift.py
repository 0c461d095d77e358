"""Drift: PSI on numeric columns binned by the reference's quantiles, PSI and chi-square on categories."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backends.domain.drift import MAJOR_PSI, categorical_drift, compare, decay_sample, numeric_psi


def _frame(rows: int, seed: int, shift: float = 0.0, cp_weights: tuple[float, ...] = (0.5, 0.2, 0.2, 0.1)) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "chol": rng.normal(240 + shift, 50, rows).round(),
        "age": rng.integers(29, 78, rows),
        "cp": rng.choice([0, 1, 2, 3], size=rows, p=cp_weights),
    })


def test_a_shifted_column_is_flagged_and_the_others_are_not() -> None:
    report = compare(_frame(2000, 1), _frame(1500, 2, shift=60), ["chol", "age"], ["cp"])
    by_name = {c.column: c for c in report.columns}
    assert report.drifted == ("chol",)
    assert by_name["chol"].psi >= MAJOR_PSI and by_name["chol"].level == "major"
    assert by_name["age"].psi < 0.1 and by_name["cp"].psi < 0.1 and by_name["cp"].p_value > 0.001
    assert by_name["chol"].current_mean - by_name["chol"].reference_mean == pytest.approx(60, abs=6)
    rows = report.rows_for_table()
    assert rows[0]["column"] == "chol" and rows[0]["drifted"] is True
    assert "**chol**" in report.summary_markdown() and "1 of 3 columns drifted" in report.summary_markdown()


def test_identical_data_has_zero_psi_and_values_beyond_the_old_range_count() -> None:
    frame = _frame(500, 3)
    assert numeric_psi(frame["chol"], frame["chol"]) == pytest.approx(0.0)
    beyond = pd.Series(np.full(500, 10_000.0))
    assert numeric_psi(frame["chol"], beyond) > 5


def test_a_changed_category_mix_is_flagged_with_its_chi_square() -> None:
    before = _frame(3000, 4)["cp"]
    after = _frame(3000, 5, cp_weights=(0.1, 0.2, 0.2, 0.5))["cp"]
    psi, p_value = categorical_drift(before, after)
    assert psi >= MAJOR_PSI and p_value is not None and p_value < 1e-6
    report = compare(before.to_frame(), after.to_frame(), [], ["cp"])
    assert report.drifted == ("cp",) and report.columns[0].kind == "categorical"


def test_a_new_category_counts_and_a_constant_column_has_no_test() -> None:
    psi, p_value = categorical_drift(pd.Series([0] * 100), pd.Series([0] * 50 + [7] * 50))
    assert psi > MAJOR_PSI and p_value is not None
    assert categorical_drift(pd.Series([1] * 10), pd.Series([1] * 10)) == (pytest.approx(0.0), None)


def test_unseen_rows_of_a_users_table_with_text_columns() -> None:
    """The retraining night of a users' table: text categories, text labels, empty cells, numbers read as
    text on one side and as numbers on the other. The comparison used to cast every column to float."""
    from backends.domain.drift import unseen_rows
    from tests.tables import user_table

    table = user_table(300, seed=5)
    reference = table.iloc[:200].copy()
    reference["Age"] = pd.to_numeric(reference["Age"])  # the champion's stored copy read the ages as numbers
    new = unseen_rows(table, reference)
    assert len(new) == 100
    assert set(new["Patient ID"]) == set(table.iloc[200:]["Patient ID"])
    assert unseen_rows(table.iloc[:200], reference).empty  # every row was trained on
    assert len(unseen_rows(table, None)) == 300


def test_the_decay_sample_is_bounded_seeded_and_whole_when_small() -> None:
    rows = pd.DataFrame({"x": range(50_000), "y": ["a", "b"] * 25_000})
    sample = decay_sample(rows, seed=3, max_rows=1_000)
    assert len(sample) == 1_000 and sample["x"].is_monotonic_increasing and sample["x"].is_unique
    assert sample.equals(decay_sample(rows, seed=3, max_rows=1_000))
    assert not sample.equals(decay_sample(rows, seed=4, max_rows=1_000))
    assert decay_sample(rows.head(999), seed=3, max_rows=1_000).equals(rows.head(999))  # small: every row
