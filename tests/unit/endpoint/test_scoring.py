"""Scorer and score.py: every refused request gets a 4xx naming the problem; predictions match the model."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from src.scoring import CompiledForestPredictor, FramePredictor, ModelLoadError, Scorer, find_model_dir

RECORD = {"age": 63, "sex": 1, "cp": 3, "trtbps": 145, "chol": 233, "fbs": 1, "restecg": 0,
          "thalachh": 150, "exng": 0, "oldpeak": 2.3, "slp": 0, "caa": 0, "thall": 1}


@pytest.fixture(scope="module")
def scorer(trained_model_dir: Path) -> Scorer:
    return Scorer.from_model_dir(trained_model_dir, max_rows=5)


def body(**changes: object) -> str:
    return json.dumps({"data": [dict(RECORD, **changes)]})


REFUSED = [
    ("", 400, "body is empty"),
    ('{"data": [{"age": 63', 400, "not valid JSON"),
    ("not json", 400, "not valid JSON"),
    ("[1, 2]", 400, "must be a JSON object"),
    ('"text"', 400, "got a string"),
    ('{"rows": []}', 400, 'no "data" field (fields: rows)'),
    ('{"data": {"age": 63}}', 400, '"data" must be a non-empty array of objects, got an object'),
    ('{"data": []}', 400, '"data" is empty'),
    ('{"data": [5]}', 400, "data[0] must be an object"),
    ('{"data": [[63, 1]]}', 400, "data[0] must be an object"),
    (json.dumps({"data": [{"age": 63, "sex": 1}]}), 400, "data[0] is missing 11 column(s): trtbps, chol"),
    (body(age="63"), 400, 'data[0].age must be a number, got a string ("63")'),
    (body(sex=True), 400, "data[0].sex must be a number, got a boolean"),
    (body(chol=None), 400, "data[0].chol must be a number, got null"),
    (body(cp={"v": 3}), 400, "data[0].cp must be a number, got a nested object"),
    (body(cp=[3]), 400, "data[0].cp must be a number, got a nested array"),
    (body(sex=0.5), 400, "data[0].sex must be an integer, got 0.5"),
    (body().replace("2.3", "NaN"), 400, "NaN and Infinity are not JSON numbers"),
    (body().replace("2.3", "Infinity"), 400, "NaN and Infinity are not JSON numbers"),
    (body().replace("2.3", "1e999"), 400, "not valid JSON"),
    (json.dumps({"data": [RECORD] * 6}), 413, "6 records, more than this endpoint accepts (5)"),
    (json.dumps({"data": [RECORD], "return_probabilities": "yes"}), 400, "return_probabilities must be true or false"),
    (b"\xff\xfe{}", 400, "not valid JSON"),
]


@pytest.mark.parametrize(("raw", "status", "message"), REFUSED, ids=[str(i) for i in range(len(REFUSED))])
def test_refused_requests_name_the_problem(scorer: Scorer, raw: str | bytes, status: int, message: str) -> None:
    got_status, payload = scorer.score(raw)
    assert got_status == status
    assert set(payload) == {"error"}
    assert message in payload["error"]


def test_second_record_is_named(scorer: Scorer) -> None:
    status, payload = scorer.score(json.dumps({"data": [RECORD, dict(RECORD, age=None)]}))
    assert status == 400 and payload["error"].startswith("data[1].age")


def test_tutorial_body_returns_labels(scorer: Scorer) -> None:
    status, payload = scorer.score(json.dumps({"data": [RECORD, RECORD]}))
    assert status == 200
    assert payload in ([0, 0], [1, 1])
    assert all(type(v) is int for v in payload)


def test_integral_float_accepted_for_integer_column(scorer: Scorer) -> None:
    assert scorer.score(body(sex=1.0)) == scorer.score(body())


def test_probabilities_on_request(scorer: Scorer) -> None:
    status, payload = scorer.score(json.dumps({"data": [RECORD], "return_probabilities": True}))
    assert status == 200
    assert payload["classes"] == [0, 1]
    assert len(payload["predictions"]) == 1
    assert sum(payload["probabilities"][0]) == pytest.approx(1.0)


def test_extra_columns_ignored_and_logged(scorer: Scorer, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="src.scoring"):
        status, payload = scorer.score(body(patient_id=7, note="x"))
    assert status == 200 and len(payload) == 1
    assert "note, patient_id" in caplog.text


def test_compiled_predictor_matches_model(trained_model_dir: Path, heart_frame: pd.DataFrame) -> None:
    import mlflow.sklearn

    scorer = Scorer.from_model_dir(trained_model_dir, max_rows=1000)
    assert isinstance(scorer.predictor, CompiledForestPredictor)
    model = mlflow.sklearn.load_model(str(trained_model_dir))
    features = heart_frame.loc[:, list(scorer.names)]
    status, payload = scorer.score(json.dumps({"data": features.to_dict("records"), "return_probabilities": True}))
    assert status == 200
    assert payload["predictions"] == model.predict(features).tolist()
    np.testing.assert_allclose(payload["probabilities"], model.predict_proba(features), rtol=0, atol=1e-12)


def test_unknown_category_is_ignored_like_sklearn(scorer: Scorer, trained_model_dir: Path) -> None:
    import mlflow.sklearn

    model = mlflow.sklearn.load_model(str(trained_model_dir))
    record = dict(RECORD, restecg=7, cp=9)
    expected = model.predict_proba(pd.DataFrame([record])[list(scorer.names)])
    status, payload = scorer.score(json.dumps({"data": [record], "return_probabilities": True}))
    assert status == 200
    np.testing.assert_allclose(payload["probabilities"], expected, rtol=0, atol=1e-12)


def test_other_models_use_the_dataframe_path(heart_frame: pd.DataFrame) -> None:
    from sklearn.linear_model import LogisticRegression

    from src.scoring import Feature

    names = ["age", "chol", "oldpeak"]
    model = LogisticRegression(max_iter=500).fit(heart_frame[names], heart_frame["output"])
    scorer = Scorer(model, [Feature("age", True), Feature("chol", True), Feature("oldpeak", False)])
    assert isinstance(scorer.predictor, FramePredictor)
    status, payload = scorer.score(json.dumps({"data": heart_frame[names].head(4).to_dict("records")}))
    assert status == 200 and payload == model.predict(heart_frame[names].head(4)).tolist()


def test_model_found_one_level_below(trained_model_dir: Path, tmp_path: Path) -> None:
    assert find_model_dir(trained_model_dir.parent) == trained_model_dir
    assert find_model_dir(trained_model_dir) == trained_model_dir
    with pytest.raises(ModelLoadError, match="no MLflow model"):
        find_model_dir(tmp_path)


def test_score_py_init_and_run(trained_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from azureml_inference_server_http.api.aml_response import AMLResponse

    from src import score

    monkeypatch.setenv("AZUREML_MODEL_DIR", str(trained_model_dir.parent))
    monkeypatch.setenv("HEARTFLOW_MAX_ROWS", "2")
    score.init()
    assert score.run(json.dumps({"data": [RECORD]})) in ([0], [1])
    refused = score.run(json.dumps({"data": [RECORD] * 3}))
    assert isinstance(refused, AMLResponse) and refused.status_code == 413
    assert "more than this endpoint accepts (2)" in json.loads(refused.get_data())["error"]
    refused = score.run('{"data": [{"age": 1}]')
    assert refused.status_code == 400 and "not valid JSON" in json.loads(refused.get_data())["error"]
