"""Lineage tags: one writer, one reader, the same format on every backend, and records written before
(local: k=v text beside a JSON copy, %.6f metric; in-memory: k=v alone; Azure: JSON, repr metric) read back."""

from __future__ import annotations

import math

import pytest

from backends.domain import lineage
from backends.domain.lineage import lineage_tags, model_version_of, params_of, read_lineage
from backends.results import DataRef, SweepResult, TrialResult, TrialStatus

PARAMS = {"criterion": "entropy", "max_depth": -1, "max_features": "sqrt", "min_samples_leaf": 0.05, "n_estimators": 125}


def sweep_of(params: dict) -> SweepResult:
    best = TrialResult(number=7, params=params, metrics={"f1": 0.8123456789}, status=TrialStatus.COMPLETED, run_id="run-7")
    data = DataRef(uri="file:///home/train/ab.csv", sha256="ab" * 32, rows=272, split="row-sha256-v1;holdout_fraction=0.1")
    return SweepResult(sweep_id="sweep-1", primary_metric="f1", goal="maximize", trials=(best,), best=best, data=data)


def test_what_is_written_reads_back_whole() -> None:
    tags = lineage_tags(sweep_of(PARAMS), code_version="c0de")
    read = read_lineage(tags)
    assert read.params == PARAMS and read.metric_value == 0.8123456789  # exact, not rounded to 6 places
    assert (read.sweep_id, read.trial_run, read.trial_number, read.data_sha256, read.code_version, read.status) == (
        "sweep-1", "run-7", 7, "ab" * 32, "c0de", "candidate")
    assert read.split == "row-sha256-v1;holdout_fraction=0.1" and read.data_uri == "file:///home/train/ab.csv"
    assert all(name.startswith(lineage.PREFIX) for name in tags)
    version = model_version_of("m", "3", "models:/m/3", tags)
    assert (version.source_run_id, version.sweep_id, version.metric_name, version.metric_value) == ("run-7", "sweep-1", "f1", 0.8123456789)


OLD_LOCAL = {  # the local registry before lineage.py: k=v text, a JSON copy, 6 decimals
    "heartflow.sweep_run": "s", "heartflow.trial_run": "r", "heartflow.trial_number": "3",
    "heartflow.metric_name": "accuracy", "heartflow.metric_value": "0.812346",
    "heartflow.params": "criterion=entropy, max_depth=-1, max_features=sqrt, min_samples_leaf=0.05, n_estimators=125",
    "heartflow.params_json": '{"criterion": "entropy", "max_depth": -1, "max_features": "sqrt", "min_samples_leaf": 0.05, "n_estimators": 125}',
}
OLD_MEMORY = {k: v for k, v in OLD_LOCAL.items() if k != "heartflow.params_json"}  # k=v alone
OLD_AZURE = {  # Azure: JSON params, repr metric, no trial number, tag values as the SDK returns them (any type)
    "heartflow.sweep_run": "s", "heartflow.trial_run": "r", "heartflow.metric_name": "accuracy",
    "heartflow.metric_value": "0.8123456789", "heartflow.params": '{"criterion": "entropy", "max_depth": -1, '
    '"max_features": "sqrt", "min_samples_leaf": 0.05, "n_estimators": 125}', "created-by": "heartflow",
}


@pytest.mark.parametrize(("tags", "metric"), [(OLD_LOCAL, 0.812346), (OLD_MEMORY, 0.812346), (OLD_AZURE, 0.8123456789)])
def test_records_in_each_old_format_read_back(tags: dict, metric: float) -> None:
    read = read_lineage(tags)
    assert read.params == PARAMS and read.metric_value == metric and read.trial_run == "r" and read.sweep_id == "s"
    assert read.trial_number == (None if tags is OLD_AZURE else 3)


def test_old_kv_text_keeps_types_and_commas() -> None:
    assert params_of({"heartflow.params": "a=None, b=True, c=1e-3, d=x, y, e=7"}) == {
        "a": None, "b": True, "c": 0.001, "d": "x, y", "e": 7}
    assert params_of({}) is None and params_of({"heartflow.params": "garbage"}) is None


def test_a_record_without_lineage_reads_as_unknown() -> None:
    read = read_lineage({}, run_id="mlflow-run")
    assert read.trial_run == "mlflow-run" and math.isnan(read.metric_value) and read.params is None
    assert read.trial_number is None and read.status == ""


def test_drift_is_tagged_per_column_and_as_a_list() -> None:
    assert lineage.drift_tags({"chol": 0.31234, "age": 0.01}, ["chol"]) == {
        "heartflow.drift.psi.chol": "0.3123", "heartflow.drift.psi.age": "0.0100", "heartflow.drift.drifted": "chol"}
    assert lineage.drift_tags({}, [])["heartflow.drift.drifted"] == "none"
