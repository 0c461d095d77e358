"""Data loading, validation errors and the holdout split."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from backends.domain.dataset import MIN_ROWS_PER_CLASS, prepare_data, read_table, sha256_of
from backends.errors import ConfigurationError, DataValidationError
from src.features import HEART_SCHEMA

KAGGLE_COLUMNS = ["age", "sex", "cp", "trtbps", "chol", "fbs", "restecg", "thalachh", "exng", "oldpeak", "slp", "caa", "thall", "output"]


def _write(tmp_path: Path, frame: pd.DataFrame, name: str = "data.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


@pytest.fixture()
def raw() -> pd.DataFrame:
    frame, _ = read_table(None)
    return frame


def test_embedded_dataset_has_the_kaggle_schema_and_303_rows(raw: pd.DataFrame) -> None:
    assert list(raw.columns) == KAGGLE_COLUMNS
    assert len(raw) == 303


def test_holdout_is_near_the_fraction_balanced_and_disjoint() -> None:
    first = prepare_data(None, None, 0.1)
    again = prepare_data(None, None, 0.1)
    assert 20 <= len(first.holdout) <= 40 and len(first.train) + len(first.holdout) == 303
    assert first.train_sha256 == again.train_sha256 == sha256_of(first.train)
    share = first.holdout["output"].mean()
    assert abs(share - 165 / 303) < 0.15  # split by row hash: the class balance holds in expectation only
    merged = first.train.merge(first.holdout, how="inner")
    assert len(first.train) + len(first.holdout) == 303 and len(merged) <= 1  # the table has one duplicated row


def test_the_kaggle_file_a_user_brings_is_accepted(tmp_path: Path, raw: pd.DataFrame) -> None:
    prepared = prepare_data(_write(tmp_path, raw), None, 0.1)
    assert prepared.schema == HEART_SCHEMA
    assert prepared.train_sha256 == prepare_data(None, None, 0.1).train_sha256


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.drop(columns=["chol"]), "column 'chol': is in the schema but not in the file"),
        (lambda f: f.assign(extra="1"), "column 'extra': is in the file but in no group of the schema; add it to"),
        (lambda f: f.assign(chol=f["chol"].where(f.index != 4, "abc")), "column 'chol', row 5 (line 6): is not a number: 'abc'"),
        (lambda f: f.assign(age=f["age"].where(f.index != 9, "")), "column 'age', row 10 (line 11): is empty; fill the cell"),
        (lambda f: f.assign(output=f["output"].replace("1", "2")), "cannot tell which of ['0', '2'] is the positive class"),
        (lambda f: f[f["output"] == "1"], "exactly two values; found 1: ['1']"),
    ],
)
def test_invalid_data_names_the_problem(tmp_path: Path, raw: pd.DataFrame, mutate, message: str) -> None:
    path = _write(tmp_path, mutate(raw))
    with pytest.raises(DataValidationError) as caught:
        prepare_data(path, None, 0.1)
    assert message in str(caught.value)
    assert "1 problem(s) in the table" in str(caught.value)


def test_too_few_rows_of_a_class(tmp_path: Path, raw: pd.DataFrame) -> None:
    few = pd.concat([raw[raw["output"] == "1"], raw[raw["output"] == "0"].head(MIN_ROWS_PER_CLASS - 1)])
    with pytest.raises(DataValidationError, match=f"only {MIN_ROWS_PER_CLASS - 1} row\\(s\\) of class 0"):
        prepare_data(_write(tmp_path, few), None, 0.1)


def test_empty_and_header_only_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataValidationError, match="is empty"):
        prepare_data(empty, None, 0.1)
    header = tmp_path / "header.csv"
    header.write_text(",".join(KAGGLE_COLUMNS) + "\n")
    with pytest.raises(DataValidationError, match="no data rows"):
        prepare_data(header, None, 0.1)
    with pytest.raises(DataValidationError, match="does not exist"):
        prepare_data(tmp_path / "nope.csv", None, 0.1)


def test_schema_file_describes_another_dataset(tmp_path: Path, raw: pd.DataFrame) -> None:
    other = raw.rename(columns={"output": "disease", "chol": "cholesterol"}).drop(columns=["thall"])
    schema = tmp_path / "schema.yaml"
    schema.write_text("target: disease\nnumeric: [age, cholesterol]\ncategorical: [cp]\n")
    prepared = prepare_data(_write(tmp_path, other), schema, 0.1)
    assert prepared.schema.target == "disease"
    assert set(prepared.schema.passthrough) == set(other.columns) - {"disease", "age", "cholesterol", "cp"}
    as_json = tmp_path / "schema.json"
    as_json.write_text(json.dumps({"target": "disease", "numeric": ["age"], "categorical": [], "passthrough": ["cholesterol"]}))
    with pytest.raises(DataValidationError, match="in no group of the schema"):
        prepare_data(_write(tmp_path, other), as_json, 0.1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- b\n", "must be a mapping"),
        ("target: output\nnumeric: age\n", "numeric must be a list"),
        ("target: output\nnumeric: [age]\ncategorical: [age]\n", "more than one group"),
        ("target: output\nnumeric: [output]\n", "also listed as a feature"),
        ("target: output\nweights: [1]\n", "unknown keys"),
        ("target: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_schema_files(tmp_path: Path, text: str, message: str) -> None:
    schema = tmp_path / "schema.yaml"
    schema.write_text(text)
    with pytest.raises(ConfigurationError, match=message):
        prepare_data(None, schema, 0.1)
