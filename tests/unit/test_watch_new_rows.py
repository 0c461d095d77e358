"""The champion's decay is measured on rows it never trained on, also for a table with text categories."""

from __future__ import annotations

import pandas as pd

from tasks.watch import _new_rows


def test_new_rows_of_a_table_with_text_categories() -> None:
    reference = pd.DataFrame({"chol": [200.0, 250.0], "Chest Pain": ["ASY", "NAP"], "age": [50, 60]})
    current = pd.DataFrame({"chol": [200, 300, 250], "Chest Pain": ["ASY", "ASY", "NAP"], "age": [50, 60, 60]})
    assert _new_rows(current, reference).to_dict("records") == [{"chol": 300, "Chest Pain": "ASY", "age": 60}]
