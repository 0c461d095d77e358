"""Permutation importance costs the same whatever the holdout's size: at most MAX rows are permuted, and
what the sample costs in precision is stated per column as a 95 % interval over the whole holdout."""

from __future__ import annotations

import numpy as np
import pandas as pd

from backends.client.importance import measure_importance


class CountingPredictor:
    """The label is column "a" (so shuffling "a" costs accuracy and "b" costs none); counts rows asked."""

    def __init__(self) -> None:
        self.requests, self.latencies_ms, self.classes, self.rows = 0, [], None, 0

    def __call__(self, frame: pd.DataFrame) -> list[int]:
        self.requests += 1
        self.rows += len(frame)
        return frame["a"].astype(int).tolist()


def _holdout(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, rows)
    return pd.DataFrame({"a": a, "b": rng.normal(size=rows), "y": a})


def test_a_large_holdout_is_sampled_and_each_drop_states_its_interval() -> None:
    predictor = CountingPredictor()
    result = measure_importance(predictor, _holdout(20_000), "y", model_name="m", model_version="1",
                                deployment="blue", repeats=3, seed=1, max_rows=500)
    assert predictor.rows == 500 * (1 + 2 * 3)  # bounded by the sample, not by the 20,000 rows
    assert (result.rows, result.holdout_rows, result.sampled) == (500, 20_000, True)
    a, b = result.features
    assert a.column == "a" and 0.4 < a.mean_drop < 0.6 and 0 < a.interval < 0.1  # shuffling half the labels away
    assert b.column == "b" and b.mean_drop == 0 and b.interval == 0  # no row changed: no uncertainty
    assert result.rows_for_table()[0]["ci95_half_width"] == round(a.interval, 4)


def test_a_small_holdout_is_used_whole_with_no_sampling_interval() -> None:
    predictor = CountingPredictor()
    result = measure_importance(predictor, _holdout(300), "y", model_name="m", model_version="1",
                                deployment="blue", repeats=2, seed=1, max_rows=500)
    assert predictor.rows == 300 * (1 + 2 * 2) and not result.sampled
    assert all(f.interval == 0 for f in result.features)
