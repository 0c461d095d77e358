"""The champion's stored training split is read back as it was validated: the watch compares it with the new
data row by row (unseen rows, decay) and column by column (drift)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from backends.domain.dataset import canonical_csv, prepare_data
from backends.domain.drift import compare, unseen_rows
from backends.domain.sources import read_stored_table
from tests.tables import TARGET, user_table


def test_text_booleans_and_empty_cells_come_back_as_they_were_validated(tmp_path: Path) -> None:
    table = user_table(300, 4, positive_share=0.2)
    first = prepare_data(_write(tmp_path / "first.csv", table), None, 0.1, target=TARGET, positive_class="Presence")
    stored = tmp_path / "train.csv"
    stored.write_bytes(canonical_csv(first.train))
    reference = read_stored_table(stored.as_uri(), schema=first.schema)
    assert reference["Fasting BS"].tolist() == first.train["Fasting BS"].tolist()  # "TRUE", not True
    assert reference["Age"].dtype.kind in "if" and reference["Chest.Pain Type"].isna().sum() > 0

    grown = pd.concat([table, user_table(60, 5, positive_share=0.2, first_id=300)], ignore_index=True)
    second = prepare_data(_write(tmp_path / "grown.csv", grown), None, 0.1, target=TARGET, positive_class="Presence")
    frame = pd.concat([second.train, second.holdout], ignore_index=True)
    # New to the champion: the 60 appended rows and the holdout it never trained on, not the 300 it did.
    assert len(unseen_rows(frame, reference)) == len(frame) - len(first.train)
    schema = second.schema
    drift = compare(reference, frame, [*schema.numeric, *schema.passthrough], list(schema.categorical))
    assert drift.drifted == ()  # rows from the same population: no column drifted


def _write(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False)
    return path
