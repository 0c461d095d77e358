"""The trial as an Azure ML command job runs it: ``python -m src.model_train`` in the uploaded code folder (src/
alone, as a package), with the tutorial's command line (the one the sweep's trial builds), logging to MLflow and saving the model under outputs/<model_name>."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from backends.azure.code import TRAIN_MODULE, stage_code


def test_script_runs_alone_logs_accuracy_and_saves_the_model(tmp_path: Path, heart_frame: pd.DataFrame) -> None:
    code = stage_code(tmp_path / "code")
    data = tmp_path / "inputs" / "input_data"
    data.mkdir(parents=True)
    heart_frame.to_csv(data / "heart.csv", index=False)  # a uri_folder input holding one CSV
    db = tmp_path / "mlflow.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(MLFLOW_TRACKING_URI=f"sqlite:///{db}", MLFLOW_EXPERIMENT_NAME="azure-trial", PYTHONPATH="")
    command = [sys.executable, "-m", TRAIN_MODULE, "--input_data", str(data), "--model_name", "heart-classifier",
               "--test_size", "0.3", "--n_estimators", "10", "--max_depth", "-1", "--criterion", "entropy",
               "--max_features", "log2"]
    done = subprocess.run(command, cwd=code, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]

    model_dir = code / "outputs" / "heart-classifier"
    assert (model_dir / "MLmodel").is_file()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("azure-trial")
    (run,) = client.search_runs([experiment.experiment_id])
    assert 0.5 < run.data.metrics["accuracy"] <= 1.0
    assert run.data.params["criterion"] == "entropy" and run.data.params["n_estimators"] == "10"
