"""Serving loads a skops-format MLflow model with skops directly: the trusted types recorded in MLmodel, and
no MLflow import in the worker (it cost each worker ~1.2 s of start-up)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from src.model_files import MLMODEL, ModelLoadError, load_sklearn_model, read_features

pytestmark = pytest.mark.full  # a fresh interpreter proves what loading imports: `make test`, not `make test-fast`


def test_the_loaded_model_is_the_saved_one_and_mlflow_stays_unimported(trained_model_dir: Path, heart_frame) -> None:
    code = (
        "import sys; from pathlib import Path\n"
        "from src.scoring import Scorer\n"
        f"s = Scorer.from_model_dir(Path({str(trained_model_dir)!r}))\n"
        "print('mlflow imported:', 'mlflow' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "mlflow imported: False" in done.stdout

    import mlflow.sklearn

    ours, theirs = load_sklearn_model(trained_model_dir), mlflow.sklearn.load_model(str(trained_model_dir))
    frame = heart_frame[[f.name for f in read_features(trained_model_dir)]]
    assert np.array_equal(ours.predict_proba(frame), theirs.predict_proba(frame))


def test_a_type_not_recorded_as_trusted_is_refused(trained_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(trained_model_dir, folder)
    meta = yaml.safe_load((folder / MLMODEL).read_text())
    meta["flavors"]["sklearn"]["skops_trusted_types"] = []  # the trees' type is no longer trusted
    (folder / MLMODEL).write_text(yaml.safe_dump(meta))
    with pytest.raises(ModelLoadError, match="cannot load the MLflow sklearn model"):
        load_sklearn_model(folder)
