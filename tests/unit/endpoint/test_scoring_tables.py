"""The Scorer on a model trained from a user's table: answers in the data's labels, probabilities naming
their classes, text categories, nulls where a column imputes, unseen categories answered and counted, a
wrong type refused naming the column; the compiled path exact where it serves and the fallback elsewhere."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest

from backends.domain.inference import infer_schema
from backends.domain.validation import check_table
from src.model_train import model_metadata, model_signature, pip_requirements, save_model, train_trial
from src import forest_kernel
from src.compiled_forest import CompiledForestPredictor, build_predictor
from src.model_files import find_model_dir, load_sklearn_model, read_features
from src.scoring import Scorer
from tests.tables import LABELS, TARGET, user_table


def _train(tmp: Path, params: dict, numeric_only: bool = False) -> tuple[Path, object]:
    raw = user_table(rows=300).astype(str).replace("nan", "")
    if numeric_only:
        raw = raw[["Age", "Cholesterol mg/dl", TARGET]]
    checked = check_table(raw, infer_schema(raw, TARGET).schema, "t.csv")
    frame, schema = checked.frame, checked.schema
    fit = train_trial(frame, schema, params, seed=0)
    folder = tmp / "model"
    save_model(fit.model, folder, model_signature(frame, schema), pip_requirements(), model_metadata(frame, schema))
    return folder, (frame, schema, fit.model)


@pytest.fixture(scope="module", params=["rf", "hgb", "logreg"])
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    folder, (frame, schema, model) = _train(tmp_path_factory.mktemp(request.param), {"model": request.param, "n_estimators": 20})
    return Scorer.from_model_dir(folder, max_rows=50), frame, schema, model


def _records(frame, schema, n: int = 20) -> list[dict]:
    rows = frame.loc[: n - 1, list(schema.features)].to_dict("records")
    return [{k: (None if isinstance(v, float) and v != v else (v.item() if hasattr(v, "item") else v)) for k, v in r.items()} for r in rows]


def test_answers_are_the_datas_labels_and_match_the_model(trained) -> None:
    scorer, frame, schema, model = trained
    status, answer = scorer.score(json.dumps({"data": _records(frame, schema)}))
    assert status == 200 and set(answer) <= set(LABELS)
    expected = [LABELS[i] for i in model.predict(frame.loc[:19, list(schema.features)])]
    assert answer == expected
    status, both = scorer.score(json.dumps({"data": _records(frame, schema, 3), "return_probabilities": True}))
    assert status == 200 and both["classes"] == list(LABELS)
    assert np.allclose(both["probabilities"], model.predict_proba(frame.loc[:2, list(schema.features)]))


def test_nulls_and_unseen_categories_are_answered_and_counted(trained) -> None:
    scorer, frame, schema, _model = trained
    record = dict(_records(frame, schema, 1)[0], **{"Cholesterol mg/dl": None, "Chest.Pain Type": None, "Sex": "X"})
    status, answer = scorer.score(json.dumps({"data": [record, dict(record, Sex="Y")]}))
    assert status == 200 and len(answer) == 2 and set(answer) <= set(LABELS)
    assert scorer.unseen["Sex"] >= 2


@pytest.mark.parametrize(("change", "message"), [
    ({"Age": "old"}, 'data[0].Age must be a number or null, got a string ("old")'),
    ({"Sex": [1]}, "data[0].Sex must be text or a number or null, got a nested array"),
    ({"Age": True}, "data[0].Age must be a number or null, got a boolean"),
])
def test_a_wrong_type_is_a_400_naming_the_column(trained, change: dict, message: str) -> None:
    scorer, frame, schema, _model = trained
    status, answer = scorer.score(json.dumps({"data": [dict(_records(frame, schema, 1)[0], **change)]}))
    assert status == 400 and message in answer["error"]


def test_the_compiled_forest_serves_an_imputing_numeric_model_exactly(tmp_path: Path) -> None:
    folder, (frame, schema, model) = _train(tmp_path, {"n_estimators": 30}, numeric_only=True)
    scorer = Scorer.from_model_dir(folder)
    assert scorer.predictor.kind == "compiled-forest (machine code)"
    records = _records(frame, schema, 40)
    records[0]["Cholesterol mg/dl"] = None
    status, both = scorer.score(json.dumps({"data": records, "return_probabilities": True}))
    x = frame.loc[:39, list(schema.features)].copy()
    x.loc[0, "Cholesterol mg/dl"] = np.nan
    assert status == 200 and np.array_equal(np.asarray(both["probabilities"]), model.predict_proba(x))


def test_the_forest_with_text_categories_is_compiled_and_other_families_use_the_dataframe_path(trained) -> None:
    scorer, _frame, _schema, model = trained
    family = type(model.steps[-1][1]).__name__
    expected = "compiled-forest (machine code)" if family == "RandomForestClassifier" else "dataframe"
    assert scorer.predictor.kind == expected


class _OffByOne(CompiledForestPredictor):
    """A compiled forest that shifts every scaled input, in numpy and in machine code: the probe check must
    catch it."""

    def transform(self, x: np.ndarray) -> np.ndarray:
        return super().transform(x) + 1.0

    def _program(self) -> tuple[np.ndarray]:
        (program,) = super()._program()
        program[forest_kernel.CENTRE, program[forest_kernel.KIND] == forest_kernel.AFFINE] -= 1.0
        return (program,)


def test_the_compiled_path_falls_back_when_it_disagrees(tmp_path: Path) -> None:
    folder, _ = _train(tmp_path, {"n_estimators": 10}, numeric_only=True)
    model_dir = find_model_dir(folder)
    model, features = load_sklearn_model(model_dir), read_features(model_dir)
    assert build_predictor(model, features).kind == "compiled-forest (machine code)"
    assert build_predictor(model, features, compiler=_OffByOne.build).kind == "dataframe"
    numpy_only = functools.partial(_OffByOne.build, use_kernel=False)
    assert build_predictor(model, features, compiler=numpy_only).kind == "dataframe"


def test_the_openapi_document_shows_the_schema(trained) -> None:
    from backends.local.endpoint.openapi import openapi_document

    scorer, *_ = trained
    document = openapi_document("e", scorer)
    request = document["paths"]["/score"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    record = request["properties"]["data"]["items"]
    assert record["properties"]["Sex"]["type"] == "string" and "Known: F, M" in record["properties"]["Sex"]["description"]
    assert record["properties"]["Cholesterol mg/dl"] == {"type": "number", "nullable": True, "description": "Null: imputed inside the model"}
    assert record["properties"]["Age"]["type"] == "integer" and set(record["required"]) == set(scorer.names)
    answers = json.dumps(document["paths"]["/score"]["post"]["responses"])
    assert '"enum": ["Absence", "Presence"]' in answers
