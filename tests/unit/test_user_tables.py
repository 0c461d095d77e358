"""Users' tables as they come: inference of a schema, validation reporting every problem at once, and the
validated table round-tripping through the stored CSV with the types training uses."""

from __future__ import annotations

import io

import pandas as pd
import pytest
import yaml

from backends.domain.dataset import canonical_csv, check_schema_mapping, prepare_data
from backends.domain.inference import infer_schema
from backends.domain.validation import MAX_PROBLEMS_SHOWN, check_table
from backends.errors import ConfigurationError, DataValidationError
from src.features import DatasetSchema, build_pipeline, read_training_csv
from tests.tables import LABELS, TARGET, user_table, write_table


def as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """As read_table gives a file: every cell text, empty cells as ''."""
    return frame.astype(str).replace("nan", "")


def test_inference_puts_each_column_where_a_person_would() -> None:
    inferred = infer_schema(as_text(user_table()), TARGET)
    schema = inferred.schema
    assert schema.drop == ("Patient ID",)
    assert set(schema.numeric) == {"Age", "Cholesterol mg/dl"}
    assert set(schema.categorical) == {"Chest.Pain Type", "Sex", "Exercise Angina", "Fasting BS"}
    assert schema.positive_class == "Presence"
    reasons = {d.column: d.reason for d in inferred.decisions}
    assert "ID-like" in reasons["Patient ID"] and "text boolean" in reasons["Fasting BS"]
    assert "missing cell" in reasons["Cholesterol mg/dl"]
    # The YAML is what a user reviews and keeps: it loads back to the same schema, comments and all.
    loaded = yaml.safe_load(inferred.to_yaml())
    check_schema_mapping(loaded, "inferred")
    assert DatasetSchema.from_mapping(loaded) == schema
    assert "# ID-like" in inferred.to_yaml()


def test_constant_and_code_columns() -> None:
    frame = as_text(user_table()).assign(Unit="mg", Grade=lambda f: (f["Age"].astype(int) % 4).astype(str))
    schema = infer_schema(frame, TARGET).schema
    assert "Unit" in schema.drop and "Grade" in schema.categorical


def test_validated_table_learns_text_labels_and_keeps_missing_cells_for_the_pipeline() -> None:
    raw = as_text(user_table())
    schema = infer_schema(raw, TARGET).schema
    checked = check_table(raw, schema, "t.csv")
    frame = checked.frame
    assert checked.schema.labels == LABELS
    assert frame[TARGET].tolist() == (raw[TARGET] == "Presence").astype(int).tolist()
    assert checked.missing_cells == {"Cholesterol mg/dl": (raw["Cholesterol mg/dl"] == "").sum(),
                                     "Chest.Pain Type": (raw["Chest.Pain Type"] == "").sum()}
    assert "Patient ID" not in frame.columns
    # The stored CSV reads back exactly as validation typed it (what a trial trains on).
    back = read_training_csv(io.BytesIO(canonical_csv(frame)), schema)
    pd.testing.assert_frame_equal(back, frame, check_dtype=True)
    # Small models: the question is whether the typed table is learnable by each family, not how well.
    small = {"rf": {"n_estimators": 20}, "hgb": {"hgb__max_iter": 20}, "logreg": {}}
    for family in ("rf", "hgb", "logreg"):
        params = {"model": family, **small[family]}
        model = build_pipeline(checked.schema, params, seed=0).fit(frame[list(schema.features)], frame[TARGET])
        assert (model.predict(frame[list(schema.features)]) == frame[TARGET]).mean() > 0.7


def test_text_booleans_in_a_number_column_are_zero_and_one() -> None:
    raw = as_text(user_table())
    schema = DatasetSchema.from_mapping({"target": TARGET, "numeric": ["Age"], "categorical": ["Sex"],
                                         "passthrough": ["Fasting BS"], "drop": ["Patient ID", "Chest.Pain Type",
                                         "Cholesterol mg/dl", "Exercise Angina"]})
    frame = check_table(raw, schema, "t.csv").frame
    assert frame["Fasting BS"].tolist() == (raw["Fasting BS"] == "TRUE").astype(int).tolist()


def test_every_problem_is_reported_at_once_with_row_value_and_fix() -> None:
    raw = as_text(user_table(rows=60, missing_fraction=0.0))
    schema = DatasetSchema.from_mapping({**infer_schema(raw, TARGET).schema.to_mapping(), "missing": "reject"})
    raw.loc[4, "Age"] = "forty"
    raw.loc[9, "Cholesterol mg/dl"] = ""
    raw.loc[11, TARGET] = ""
    with pytest.raises(DataValidationError) as caught:
        check_table(raw, schema, "t.csv")
    message = str(caught.value)
    assert "3 problem(s)" in message
    assert "column 'Age', row 5 (line 6): is not a number: 'forty'; fix the value" in message
    assert "column 'Cholesterol mg/dl', row 10 (line 11): is empty" in message and "missing: impute" in message
    assert "column 'Heart Disease', row 12 (line 13): the label is empty" in message


def test_many_bad_cells_are_capped_and_counted() -> None:
    raw = as_text(user_table(rows=100, missing_fraction=0.0))
    raw["Age"] = "x"
    with pytest.raises(DataValidationError) as caught:
        check_table(raw, infer_schema(as_text(user_table(rows=100)), TARGET).schema, "t.csv")
    problems = caught.value.problems
    assert len([p for p in problems if p.row]) == MAX_PROBLEMS_SHOWN
    assert problems[-1].message == f"{100 - MAX_PROBLEMS_SHOWN} more such cell(s)"


@pytest.mark.parametrize(("labels", "positive", "message"), [
    (["a", "b", "c"], None, "exactly two values; found 3"),
    (["Red", "Blue"], None, "cannot tell which of ['Blue', 'Red'] is the positive class"),
    (["Red", "Blue"], "Green", "positive_class is not one of the target's values"),
])
def test_target_problems_say_what_to_do(labels: list[str], positive: str | None, message: str) -> None:
    raw = as_text(user_table(rows=60))
    raw[TARGET] = [labels[i % len(labels)] for i in range(len(raw))]
    with pytest.raises(ConfigurationError, match="positive|two"):
        infer_schema(raw, TARGET, positive)
    schema = DatasetSchema.from_mapping({"target": TARGET, "numeric": ["Age"], "drop": [c for c in raw.columns if c not in {"Age", TARGET}],
                                         "positive_class": positive})
    with pytest.raises(DataValidationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        check_table(raw, schema, "t.csv")


def test_prepare_data_infers_when_only_the_target_is_given(tmp_path) -> None:
    path = write_table(user_table(), tmp_path / "my table.csv")
    prepared = prepare_data(path, None, 0.1, target=TARGET)
    assert prepared.inferred and prepared.schema.labels == LABELS
    assert set(prepared.missing_cells) == {"Cholesterol mg/dl", "Chest.Pain Type"}
    with pytest.raises(ConfigurationError, match="did you mean 'Heart Disease'"):
        prepare_data(path, None, 0.1, target="heart disease")


def test_a_schema_file_with_a_bad_policy_is_refused(tmp_path) -> None:
    schema = tmp_path / "s.yaml"
    schema.write_text(f"target: {TARGET}\nnumeric: [Age]\nmissing: sometimes\n")
    with pytest.raises(ConfigurationError, match="missing must be impute or reject"):
        prepare_data(write_table(user_table(), tmp_path / "t.csv"), schema, 0.1)


def test_skops_trusts_exactly_the_types_every_family_needs(tmp_path) -> None:
    import skops.io

    from src.features import SKOPS_TRUSTED_TYPES

    raw = as_text(user_table(rows=120))
    checked = check_table(raw, infer_schema(raw, TARGET).schema, "t.csv")
    needed: set[str] = set()
    for family in ("rf", "hgb", "logreg"):
        model = build_pipeline(checked.schema, {"model": family}, seed=0)
        model.fit(checked.frame[list(checked.schema.features)], checked.frame[TARGET])
        skops.io.dump(model, tmp_path / f"{family}.skops")
        needed |= set(skops.io.get_untrusted_types(file=tmp_path / f"{family}.skops"))
    assert needed == set(SKOPS_TRUSTED_TYPES)


def test_evaluation_maps_the_endpoints_labels_back_to_zero_and_one() -> None:
    from backends.base import Endpoint
    from backends.errors import EvaluationError
    from backends.client.evaluation import predictions_of

    endpoint = Endpoint.__new__(Endpoint)
    object.__setattr__(endpoint, "name", "e")
    answer = {"predictions": ["Presence", "Absence"], "probabilities": [[0.2, 0.8], [0.9, 0.1]], "classes": list(LABELS)}
    assert predictions_of(answer, 2, endpoint) == [1, 0]
    assert predictions_of({"predictions": [1, 0], "classes": [0, 1]}, 2, endpoint) == [1, 0]
    with pytest.raises(EvaluationError, match="outside its classes"):
        predictions_of(dict(answer, predictions=["Maybe", "Absence"]), 2, endpoint)
