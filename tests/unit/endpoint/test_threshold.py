"""The decision threshold stored with a model is applied by the Scorer on both predictor paths (the compiled
forest and the DataFrame path); the probabilities answered are the model's own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from src.features import HEART_SCHEMA
from src.metrics import THRESHOLD_ATTRIBUTE
from src.model_files import load_sklearn_model, read_features
from src.model_train import model_metadata, model_signature, pip_requirements, save_model, train_trial
from src.scoring import Scorer

PARAMS = {"n_estimators": 25, "max_depth": 6, "criterion": "gini", "max_features": "sqrt"}


def test_both_predictor_paths_label_at_the_stored_threshold(tmp_path: Path, heart_frame: pd.DataFrame) -> None:
    model = train_trial(heart_frame, HEART_SCHEMA, PARAMS, seed=3, method="kfold", folds=2).model
    setattr(model, THRESHOLD_ATTRIBUTE, 0.3)
    folder = tmp_path / "model"
    save_model(model, folder, model_signature(heart_frame, HEART_SCHEMA), pip_requirements(),
               model_metadata(heart_frame, HEART_SCHEMA))
    x = heart_frame.loc[:, list(HEART_SCHEMA.features)]
    body = json.dumps({"data": json.loads(x.to_json(orient="records")), "return_probabilities": True})
    loaded = load_sklearn_model(folder)
    proba = loaded.predict_proba(x)[:, 1]
    expected = (proba >= 0.3).astype(int).tolist()
    assert expected != loaded.predict(x).tolist()  # 0.3 moves some labels: the test can fail
    compiled = Scorer.from_model_dir(folder)
    frame_path = Scorer(loaded, read_features(folder), schema=HEART_SCHEMA, compiler=lambda *_: None)
    assert compiled.predictor.kind != frame_path.predictor.kind == "dataframe"
    for scorer in (compiled, frame_path):
        assert scorer.threshold == 0.3
        status, answer = scorer.score(body)
        assert status == 200 and answer["predictions"] == expected, scorer.predictor.kind
        assert np.allclose(np.asarray(answer["probabilities"])[:, 1], proba)
        status, labels = scorer.score(json.dumps({"data": json.loads(x.to_json(orient="records"))}))
        assert labels == expected  # without probabilities asked, the same labels
