"""The holdout split by row hash: stable under growth, seeds, row and column order; close to the fraction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backends.domain.dataset import prepare_data, read_table, validate_table
from backends.domain.split import (
    ROW_KEY,
    TAG_SPLIT,
    is_holdout,
    parse_split_tag,
    row_keys,
    split_by_row_hash,
    split_tag,
    unseen_rows,
)
from backends.errors import DataValidationError
from src.features import HEART_SCHEMA


@pytest.fixture(scope="module")
def heart() -> pd.DataFrame:
    raw, source = read_table(None)
    return validate_table(raw, HEART_SCHEMA, source)


def _grown(heart: pd.DataFrame, extra: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    new = heart.sample(extra, random_state=seed, replace=True).reset_index(drop=True)
    new["chol"] = new["chol"] + rng.integers(1, 50, size=extra)  # new patients, new values
    return pd.concat([heart, new], ignore_index=True)


def test_the_holdout_is_the_same_on_every_call() -> None:  # no seed: the row hash alone decides
    first, other = prepare_data(None, None, 0.1), prepare_data(None, None, 0.1)
    assert list(first.holdout.index) == list(other.holdout.index)
    assert first.train_sha256 == other.train_sha256
    assert first.holdout.index.name == ROW_KEY


def test_a_row_keeps_its_side_as_the_data_grows_and_is_shuffled(heart: pd.DataFrame) -> None:
    _, holdout, _ = split_by_row_hash(heart, "output", 0.1)
    grown = _grown(heart, 500, 3)
    shuffled = grown.sample(frac=1.0, random_state=1)[list(reversed(grown.columns))]
    train2, holdout2, _ = split_by_row_hash(shuffled, "output", 0.1)
    assert set(holdout.index) <= set(holdout2.index)
    assert not set(row_keys(train2)) & set(holdout.index)
    assert len(train2) + len(holdout2) == len(grown)


def test_a_value_written_as_float_or_int_is_one_row(heart: pd.DataFrame) -> None:
    as_float = heart.astype(float)
    assert row_keys(heart.head(20)) == row_keys(as_float.head(20))


def test_the_fraction_and_the_class_balance_hold_on_thousands_of_rows(heart: pd.DataFrame) -> None:
    big = _grown(heart, 5000, 11)
    train, holdout, info = split_by_row_hash(big, "output", 0.2)
    assert abs(len(holdout) / len(big) - 0.2) < 0.02
    for share in info.holdout_share_by_class.values():
        assert abs(share - 0.2) < 0.03
    assert info.train_rows == len(train) and "held out" in info.describe()


def test_identical_rows_never_sit_on_both_sides(heart: pd.DataFrame) -> None:
    doubled = pd.concat([heart, heart], ignore_index=True)
    train, holdout, _ = split_by_row_hash(doubled, "output", 0.1)
    assert not set(row_keys(train)) & set(holdout.index)


def test_a_table_too_small_for_the_fraction_is_refused(heart: pd.DataFrame) -> None:
    tiny = pd.concat([heart[heart.output == 0].head(3), heart[heart.output == 1].head(3)], ignore_index=True)
    with pytest.raises(DataValidationError, match="too small for this holdout fraction"):
        split_by_row_hash(tiny, "output", 0.05)


def test_a_champion_is_scored_only_on_rows_it_never_trained_on(heart: pd.DataFrame) -> None:
    _, holdout_now, _ = split_by_row_hash(heart, "output", 0.3)
    keys = list(holdout_now.index)
    # The champion held out 10 %: the rows between 10 % and 30 % were in its training data.
    unseen, known = unseen_rows(keys, {TAG_SPLIT: split_tag(0.1)})
    assert known and unseen == {k for k in keys if is_holdout(k, 0.1)} and 0 < len(unseen) < len(keys)
    # A champion that held out more never trained on any of today's holdout rows.
    assert unseen_rows(keys, {TAG_SPLIT: split_tag(0.3)})[0] == set(keys)
    # One without the tag predates the rule: nothing is known.
    assert unseen_rows(keys, {}) == (frozenset(keys), False)
    assert parse_split_tag(split_tag(0.25)) == 0.25 and parse_split_tag("random;holdout_fraction=0.1") is None


def test_a_column_added_to_the_users_table_moves_no_row_between_training_and_holdout(tmp_path) -> None:
    """#16 finding 7: the holdout keys hash the columns the champion was trained on (its split tag names
    them), so a new column in the table (a new feature of the inferred schema) redraws nothing."""
    from backends.domain.split import RULE_COLUMNS, parse_split
    from tests.tables import TARGET, user_table, write_table

    table = user_table(rows=400, seed=11, positive_share=0.2)
    before = prepare_data(write_table(table, tmp_path / "before.csv"), None, 0.2, target=TARGET)
    record = parse_split(before.split)
    assert before.split.startswith(RULE_COLUMNS) and record is not None and TARGET in (record.columns or ())
    grown = table.assign(**{"Smoker": np.random.default_rng(5).choice(["yes", "no", ""], len(table))})
    path = write_table(grown, tmp_path / "grown.csv")
    after = prepare_data(path, None, 0.2, target=TARGET, champion_split=before.split)
    assert "Smoker" in after.schema.features  # the new column is trained on ...
    assert set(after.holdout.index) == set(before.holdout.index) and len(after.train) == len(before.train)  # ... and moved nothing
    assert after.split == before.split  # the next champion keeps the same key columns
    redrawn = prepare_data(path, None, 0.2, target=TARGET)  # keyed by every trained column, the new one included
    assert set(redrawn.holdout.index) != set(before.holdout.index)
    assert "Smoker" in (parse_split(redrawn.split).columns or ())  # type: ignore[union-attr]


def test_keys_made_by_other_columns_than_the_champions_are_not_trusted(heart: pd.DataFrame) -> None:
    from backends.domain.split import key_columns_for

    keys = row_keys(heart)
    champion = {TAG_SPLIT: split_tag(0.1, ["age", "output"])}
    assert unseen_rows(keys, champion, split_tag(0.1, ["age", "output"]))[1] is True
    assert unseen_rows(keys, champion, split_tag(0.1, ["age", "sex", "output"])) == (frozenset(keys), False)
    # a champion of the first rule (every column of its table): this run keys by every column, named from now on
    assert key_columns_for(split_tag(0.1), ["age", "output"], ["age", "id", "output"]) == ("age", "id", "output")
    assert key_columns_for(split_tag(0.1, ["age", "chol", "output"]), ["age", "output"], ["age", "output"]) == ("age", "output")
    assert parse_split_tag(split_tag(0.25, ["a;b", "c=d"])) == 0.25  # names with the separators read back


def test_rows_read_before_the_champion_was_known_are_reused_only_when_keyed_by_its_columns() -> None:
    from backends.domain.split import split_agrees, split_tag

    made = split_tag(0.1, ["age", "chol", "target"])
    assert split_agrees(made, None)  # no champion: nothing to agree with
    assert split_agrees(made, split_tag(0.1, ["target", "chol", "age"]))  # same columns, any order
    assert not split_agrees(made, split_tag(0.1, ["age", "target"]))  # a column added since the champion
    assert not split_agrees(made, split_tag(0.1))  # the first rule keyed by every column of the table
