"""A user's table on Azure: the schema travels as a job input (base64 JSON, so column names with spaces and
dots cannot break the command line), the families travel in the flat search space, and the command the
sweep's trial carries, with its inputs filled in as Azure ML does, runs model_train.py from a copy of src/
and saves a model that answers in the table's labels."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from azure.ai.ml import load_job

from backends.azure.code import stage_code
from backends.azure import entities
from backends.azure.plan import sdk_round_trip
from backends.azure.settings import AzureSettings
from backends.domain.dataset import canonical_csv, prepare_data
from backends.domain.spec import SweepSpec, family_search_space
from src.scoring import Scorer
from tests.tables import LABELS, TARGET, user_table, write_table

DATA = "azureml://datastores/heartflowdata/paths/heartflow/train/abc.csv"
ENV = "azureml:heartflow-sklearn:0123456789abcdef"


def test_the_trial_command_runs_a_users_table_with_a_family(settings: AzureSettings, tmp_path: Path) -> None:
    prepared = prepare_data(write_table(user_table(rows=300), tmp_path / "t.csv"), None, 0.1, target=TARGET)
    spec = SweepSpec(search_space=family_search_space(["rf", "hgb", "logreg"]), max_total_trials=6)
    node = entities.build_sweep(settings, spec, data_path=DATA, model_name="table-classifier", environment=ENV,
                                schema_json=prepared.schema.to_json())
    _, job = sdk_round_trip(node._to_job(), load_job)
    assert "--schema_json ${{inputs.schema}}" in job.trial.command
    assert "Chest.Pain Type" not in job.trial.command  # the names travel inside the input, not the command
    assert set(job.search_space) >= {"model", "hgb__learning_rate", "logreg__C"}

    code = stage_code(tmp_path / "code")
    (tmp_path / "train.csv").write_bytes(canonical_csv(prepared.train))
    values = {"input_data": str(tmp_path / "train.csv"), "schema": job.inputs["schema"]}
    values.update({k: str(getattr(v, "value", v)) for k, v in job.inputs.items() if k not in values})
    values.update({"model": "hgb", "hgb__learning_rate": "0.1", "hgb__max_depth": "3", "hgb__max_iter": "50",
                   "hgb__l2_regularization": "0.0", "logreg__C": "1.0", "n_estimators": "10", "max_depth": "-1",
                   "criterion": "gini", "max_features": "sqrt"})
    command = re.sub(r"\$\{\{(?:inputs|search_space)\.(\w+)\}\}", lambda m: values[m.group(1)], job.trial.command)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/mlflow.db", PYTHONPATH="")
    done = subprocess.run([sys.executable, *shlex.split(command)[1:]], cwd=code, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]

    scorer = Scorer.from_model_dir(code / "outputs")
    assert type(scorer.predictor).__name__ == "FramePredictor"
    assert scorer.classes == list(LABELS)
    assert scorer.schema is not None and scorer.schema.target == TARGET
    status, answer = scorer.score(json.dumps(scorer.example_request()))
    assert status == 200 and answer[0] in LABELS
