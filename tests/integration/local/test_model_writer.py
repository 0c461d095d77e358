"""The sweep's fast model writer produces folders MLflow reads exactly like its own."""

from __future__ import annotations

from pathlib import Path

import mlflow.sklearn
import numpy as np
import yaml

from backends.domain.dataset import prepare_data
from backends.local.model_writer import TrialModelWriter
from src.features import HEART_SCHEMA
from src.model_train import model_signature, pip_requirements, train_trial


def test_every_written_model_loads_in_mlflow_and_predicts_like_the_original(tmp_path: Path) -> None:
    train = prepare_data(None, None, 0.1).train
    x = train[list(HEART_SCHEMA.features)]
    writer = TrialModelWriter(model_signature(train, HEART_SCHEMA), pip_requirements())
    fits = [train_trial(train, HEART_SCHEMA, {"n_estimators": n, "max_depth": d}, seed=n, method="split")
            for n, d in ((5, 3), (20, -1), (40, 6))]
    for i, fit in enumerate(fits):
        writer.save(fit.model, tmp_path / f"m{i}")
    reference = yaml.safe_load((tmp_path / "m0" / "MLmodel").read_text())
    uuids = set()
    for i, fit in enumerate(fits):
        folder = tmp_path / f"m{i}"
        assert sorted(p.name for p in folder.iterdir()) == ["MLmodel", "conda.yaml", "model.skops", "python_env.yaml", "requirements.txt"]
        mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
        assert mlmodel["flavors"] == reference["flavors"] and mlmodel["signature"] == reference["signature"]
        assert mlmodel["model_size_bytes"] == (folder / "model.skops").stat().st_size  # MLflow's own rule
        uuids.add(mlmodel["model_uuid"])
        loaded = mlflow.sklearn.load_model(str(folder))
        assert np.array_equal(loaded.predict_proba(x), fit.model.predict_proba(x))
        pyfunc = mlflow.pyfunc.load_model(str(folder))
        assert np.array_equal(np.asarray(pyfunc.predict(x)), fit.model.predict(x))
    assert len(uuids) == 3
