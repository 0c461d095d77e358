"""A random forest trained on a user's table with text categories is served by the compiled forest (machine
code), text sent as codes: its answers equal the pipeline's predict / predict_proba bit for bit, and every
request (unseen categories, nulls, numbers sent for text columns, wrong types) gets the same HTTP answer, the
same unseen counts and the same log lines as the DataFrame path."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backends.domain.inference import infer_schema
from backends.domain.validation import check_table
from src.compiled_forest import CompiledForestPredictor, build_predictor
from src.request_validation import RowReader
from src.model_train import model_metadata, model_signature, pip_requirements, save_model, train_trial
from src.scoring import Scorer
from src.text_codes import UNSEEN, TextColumn
from tests.tables import LABELS, TARGET, user_table

MACHINE_CODE = "compiled-forest (machine code)"
TEXT = ("Chest.Pain Type", "Sex", "Exercise Angina", "Fasting BS", "Site Code 0")


def _train(folder: Path, *, missing_fraction: float, reject: tuple[str, ...] = (), seed: int = 0):
    raw = user_table(rows=300, seed=seed, extra_categorical=1, missing_fraction=missing_fraction)
    raw = raw.astype(str).replace("nan", "")
    schema = infer_schema(raw, TARGET).schema
    schema = dataclasses.replace(schema, missing=(*schema.missing, *((c, "reject") for c in reject)))
    checked = check_table(raw, schema, "t.csv")
    frame, schema = checked.frame, checked.schema
    fit = train_trial(frame, schema, {"n_estimators": 40}, seed=0)
    save_model(fit.model, folder, model_signature(frame, schema), pip_requirements(), model_metadata(frame, schema))
    return frame, schema, fit.model


@pytest.fixture(scope="module", params=["empty-cells", "no-empty-cells"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """(compiled scorer, DataFrame scorer, frame, schema, model). With empty cells the encoder learned a
    missing category for "Chest.Pain Type"; without, a null there is no category at all. "Sex" refuses nulls."""
    folder = tmp_path_factory.mktemp(request.param) / "model"
    frame, schema, model = _train(folder, missing_fraction=0.1 if request.param == "empty-cells" else 0.0, reject=("Sex",))
    compiled = Scorer.from_model_dir(folder, max_rows=100)
    general = Scorer(_load(folder), compiled.features, max_rows=100,
                     schema=compiled.schema, compiler=lambda model, features: None)
    return compiled, general, frame, schema, model


def _load(folder: Path) -> Any:
    from src.model_files import find_model_dir, load_sklearn_model

    return load_sklearn_model(find_model_dir(folder))


def _records(frame: pd.DataFrame, schema: Any, rows: slice) -> list[dict[str, Any]]:
    out = []
    for record in frame.loc[rows, list(schema.features)].to_dict("records"):
        out.append({k: None if isinstance(v, float) and math.isnan(v) else (v.item() if hasattr(v, "item") else v)
                    for k, v in record.items()})
    return out


def _frame_of(records: list[dict[str, Any]], schema: Any) -> pd.DataFrame:
    """The DataFrame the pipeline was trained on, for these records: text as text, null as NaN."""
    frame = pd.DataFrame(records)[list(schema.features)]
    for column in schema.categorical:
        frame[column] = np.array([np.nan if v is None else v if isinstance(v, str) else str(v) for v in frame[column]],
                                 dtype=object)
    return frame


def test_the_forest_on_text_categories_is_served_as_machine_code(served) -> None:
    compiled, general, _frame, schema, _model = served
    assert compiled.predictor.kind == MACHINE_CODE and general.predictor.kind == "dataframe"
    coded = {compiled.names[j] for j in compiled.predictor.text_codes}
    assert coded == {c for c in schema.categorical if c in TEXT} and len(coded) == 5


def test_answers_equal_the_pipeline_exactly_with_unseen_null_and_numbers_for_text(served) -> None:
    compiled, general, frame, schema, model = served
    records = _records(frame, schema, slice(0, 59))
    for i, record in enumerate(records):
        if i % 5 == 0:
            record["Chest.Pain Type"] = None
        if i % 7 == 0:
            record["Site Code 0"] = ["S9", "", "s1", 3, 2.5, "S1 "][i % 6]
        if i % 11 == 0:
            record["Exercise Angina"] = 1
    status, answer = compiled.score(json.dumps({"data": records, "return_probabilities": True}))
    assert status == 200 and set(answer["predictions"]) <= set(LABELS) and answer["classes"] == list(LABELS)
    x = _frame_of(records, schema)
    assert np.array_equal(np.asarray(answer["probabilities"]), model.predict_proba(x))
    assert answer["predictions"] == [LABELS[i] for i in model.predict(x)]
    assert (status, answer) == general.score(json.dumps({"data": records, "return_probabilities": True}))
    numpy_walk = CompiledForestPredictor.build(model, compiled.features, use_kernel=False)
    assert numpy_walk is not None and numpy_walk.kind == "compiled-forest (numpy)"
    codes = RowReader(compiled.features, 100, numpy_walk.text_codes).read(records)
    assert isinstance(codes, np.ndarray) and np.array_equal(numpy_walk.predict(codes, True)[1], model.predict_proba(x))
    one = json.dumps({"data": records[:1]})
    assert compiled.score(one) == general.score(one) == (200, [LABELS[int(model.predict(x[:1])[0])]])


def test_unseen_counts_and_their_log_lines_equal_the_dataframe_paths(served, caplog: pytest.LogCaptureFixture) -> None:
    compiled, general, frame, schema, _model = served
    records = _records(frame, schema, slice(0, 9))
    records[1]["Sex"] = "X"
    records[2]["Site Code 0"] = 7
    records[3].update({"Sex": "unknown", "Fasting BS": "true", "Chest.Pain Type": None})
    logs = []
    for scorer in (compiled, general):
        scorer.unseen.clear()
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="src.scoring"):
            assert scorer.score(json.dumps({"data": records}))[0] == 200
        logs.append([r.getMessage() for r in caplog.records])
    assert compiled.unseen == general.unseen == {"Sex": 2, "Site Code 0": 1, "Fasting BS": 1}
    assert logs[0] == logs[1] and any("(X, unknown)" in line for line in logs[0])


BAD = [
    {"Sex": None},  # a text column that refuses nulls
    {"Sex": True},
    {"Chest.Pain Type": [1]},
    {"Exercise Angina": {"a": 1}},
    {"Age": "old"},
    {"Age": 1.5},
    {"Cholesterol mg/dl": "high"},
]


@pytest.mark.parametrize("change", BAD, ids=[next(iter(c)) + "=" + json.dumps(next(iter(c.values()))) for c in BAD])
def test_refused_requests_get_the_same_answer_as_the_dataframe_path(served, change: dict) -> None:
    compiled, general, frame, schema, _model = served
    records = _records(frame, schema, slice(0, 3))
    records[2].update(change)
    body = json.dumps({"data": records})
    status, answer = compiled.score(body)
    assert status == 400 and answer["error"].startswith("data[2].")
    assert (status, answer) == general.score(body)


def test_a_missing_column_and_too_many_rows_read_alike(served) -> None:
    compiled, general, frame, schema, _model = served
    records = _records(frame, schema, slice(0, 2))
    del records[1]["Sex"]
    for body in (json.dumps({"data": records}), json.dumps({"data": _records(frame, schema, slice(0, 200))})):
        assert compiled.score(body) == general.score(body) and compiled.score(body)[0] in (400, 413)


class _ShiftedCodes(CompiledForestPredictor):
    """Every text value one category off: the probe check must catch it."""

    @classmethod
    def build(cls, model, features, *, use_kernel: bool = True):
        compiled = super().build(model, features, use_kernel=use_kernel)
        assert compiled is not None and compiled.text_codes
        for j, column in compiled.text_codes.items():
            compiled.text_codes[j] = dataclasses.replace(column, codes={k: v + 1.0 for k, v in column.codes.items()})
        return compiled


@pytest.mark.parametrize("use_kernel", [True, False], ids=["machine-code", "numpy"])
def test_text_codes_shifted_by_one_are_caught_by_the_probe_check(served, use_kernel: bool) -> None:
    compiled, _general, _frame, _schema, model = served
    assert build_predictor(model, compiled.features).kind == MACHINE_CODE
    broken = build_predictor(model, compiled.features,
                             compiler=lambda m, f: _ShiftedCodes.build(m, f, use_kernel=use_kernel))
    assert broken.kind == "dataframe"


def test_a_text_column_outside_the_one_hot_encoder_takes_the_dataframe_path(served) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    compiled, _general, frame, schema, _model = served
    text = [c for c in schema.categorical if c in TEXT]
    numbers = [c for c in schema.features if c not in text]
    pre = ColumnTransformer([("ordinal", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), text)],
                            remainder="passthrough")
    model = Pipeline([("pre", pre), ("forest", RandomForestClassifier(n_estimators=5, random_state=0))])
    model.fit(frame[text + numbers], frame[TARGET])
    assert CompiledForestPredictor.build(model, compiled.features) is None
    assert build_predictor(model, compiled.features).kind == "dataframe"


def test_text_columns_codes_follow_the_encoders_categories() -> None:
    column = TextColumn.from_categories(["ASY", "ATA", float("nan")])
    assert column is not None and column.size == 3
    assert [column.code(v) for v in ("ATA", "ASY", None, float("nan"), "TA", 3)] == [1.0, 0.0, 2.0, 2.0, UNSEEN, UNSEEN]
    plain = TextColumn.from_categories(["3", "4.5", "M"])
    assert plain is not None and math.isnan(plain.code(None)) and plain.size == 3
    assert [plain.code(v) for v in (3, 3.0, 4.5, "M")] == [0.0, 0.0, 1.0, 2.0]
    assert TextColumn.from_categories(["a", None]) is None  # None as a category: the DataFrame path
    assert TextColumn.from_categories([1, 2]) is None


_ANY_TEXT = st.one_of(
    st.sampled_from(["ASY", "ATA", "NAP", "TA", "M", "F", "Yes", "No", "TRUE", "FALSE", "S0", "S5", "", "asy", "X"]),
    st.text(max_size=4), st.none(), st.integers(-3, 10), st.floats(-5, 5, allow_nan=False), st.booleans(),
)
_ANY_NUMBER = st.one_of(st.integers(0, 90), st.floats(0, 400, allow_nan=False), st.none(), st.sampled_from(["1", True]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_request_gets_the_same_answer_from_both_paths(served, data: st.DataObject) -> None:
    compiled, general, frame, schema, _model = served
    records = _records(frame, schema, slice(0, data.draw(st.integers(1, 6)) - 1))
    for record in records:
        for column in data.draw(st.sets(st.sampled_from(list(schema.features)), max_size=3)):
            record[column] = data.draw(_ANY_TEXT if column in TEXT else _ANY_NUMBER)
    body = json.dumps({"data": records, "return_probabilities": True})
    compiled.unseen.clear()
    general.unseen.clear()
    assert compiled.score(body) == general.score(body)
    assert compiled.unseen == general.unseen
