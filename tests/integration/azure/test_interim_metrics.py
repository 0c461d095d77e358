"""Early termination acts on interim values: model_train.py logs every metric after each fold (step = fold),
the last step is the final value; a policy that could not stop a trial before its last report is refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from backends.azure.code import TRAIN_MODULE, stage_code
from backends.azure import entities
from backends.azure.settings import AzureSettings
from backends.errors import ConfigurationError
from backends.domain.spec import EarlyTermination, SweepSpec, ValidationSpec
from src.features import HEART_SCHEMA
from src.model_train import train_trial


def test_the_script_logs_each_fold_under_the_primary_metric(tmp_path: Path, heart_frame: pd.DataFrame) -> None:
    code = stage_code(tmp_path / "code")
    data = tmp_path / "heart.csv"
    heart_frame.to_csv(data, index=False)
    db = tmp_path / "mlflow.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(MLFLOW_TRACKING_URI=f"sqlite:///{db}", MLFLOW_EXPERIMENT_NAME="folds", PYTHONPATH="")
    command = [sys.executable, "-m", TRAIN_MODULE, "--input_data", str(data), "--n_estimators", "10",
               "--validation", "kfold", "--folds", "4", "--random_state", "3", "--seed", "5"]
    done = subprocess.run(command, cwd=code, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    (run,) = client.search_runs([client.get_experiment_by_name("folds").experiment_id])
    params = {"n_estimators": 10, "max_depth": -1, "criterion": "gini", "max_features": "sqrt"}
    interim: list[dict[str, float]] = []
    expected = train_trial(heart_frame, HEART_SCHEMA, params, seed=5, method="kfold", folds=4, random_state=3,
                           on_fold=lambda fold, metrics: interim.append(dict(metrics)))
    for metric in ("accuracy", "f1", "roc_auc"):
        history = sorted(client.get_metric_history(run.info.run_id, metric), key=lambda m: m.step)
        assert [m.step for m in history] == [1, 2, 3, 4]
        assert [m.value for m in history] == pytest.approx([fold[metric] for fold in interim])
        assert run.data.metrics[metric] == pytest.approx(expected.metrics[metric]) == history[-1].value
    assert len({round(m.value, 12) for m in client.get_metric_history(run.info.run_id, "accuracy")}) > 1


def test_a_policy_that_cannot_act_before_the_last_fold_is_refused() -> None:
    settings = AzureSettings(_env_file=None, compute="cpu-cluster", experiment_name="heartflow")  # type: ignore[call-arg]

    def sweep(policy: EarlyTermination, validation: ValidationSpec) -> object:
        spec = SweepSpec(early_termination=policy, validation=validation)
        return entities.build_sweep(settings, spec, data_path="azureml://datastores/d/paths/x.csv",
                                    model_name="heart-classifier", environment="azureml:env:1")

    with pytest.raises(ConfigurationError, match="never stop a trial.*at most 3"):
        sweep(EarlyTermination(delay_evaluation=5), ValidationSpec(method="kfold", folds=5))
    with pytest.raises(ConfigurationError, match="use validation kfold"):
        sweep(EarlyTermination(delay_evaluation=0), ValidationSpec(method="split"))
    job = sweep(EarlyTermination(delay_evaluation=3), ValidationSpec(method="kfold", folds=5))
    assert job.early_termination.delay_evaluation == 3
    assert sweep(EarlyTermination(delay_evaluation=5), ValidationSpec(folds=10)).early_termination is not None
