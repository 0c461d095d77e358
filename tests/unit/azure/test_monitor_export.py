"""Which training-split column a labelled window's labels go to (the Azure registry keeps no schema beside a
model version): the one the collected rows lack, an ID column the model never saw left aside."""

from __future__ import annotations

import pandas as pd

from backends.azure.monitoring import target_column
from tests.tables import LABELS, TARGET, user_table


def test_the_labels_go_to_the_column_the_model_learned_not_to_an_id_column() -> None:
    table = user_table(200, seed=4)  # text labels, an ID column, empty cells
    features = [c for c in table.columns if c not in (TARGET, "Patient ID")]  # the model's signature
    assert target_column(table, features, [LABELS[1], LABELS[0], LABELS[1]]) == TARGET
    coded = table.assign(Visit=["Presence", "Absence"] * 100)  # two values, the labels' own: ambiguous
    assert target_column(coded, features, [LABELS[1]]) == "output"  # said in a warning, not guessed between them
    assert target_column(table.drop(columns=["Patient ID"]), features, []) == TARGET  # the one column left


def test_an_unreadable_split_falls_back_to_the_heart_tables_target() -> None:
    assert target_column(None, ["age", "chol"], [0, 1]) == "output"
    assert target_column(pd.DataFrame({"age": ["1"], "a": ["x"], "b": ["y"]}), ["age"], ["z"]) == "output"
