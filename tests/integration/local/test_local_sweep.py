"""The local sweep and registry on a real MLflow SQLite store, with real worker processes."""

from __future__ import annotations

from pathlib import Path

import mlflow.sklearn
import pytest
import yaml

from backends.base import TrialStatus
from backends.domain.dataset import prepare_data
from backends.local import tracking
from backends.local.backend import LocalBackend
from backends.local.scheduler import prestart_workers, take_prestarted
from backends.local.sweep import TAG_MODEL
from backends.domain.spec import Choice, SweepSpec, ValidationSpec

SPACE = {
    "n_estimators": Choice(values=[10, 30]),
    "max_depth": Choice(values=[4, -1]),
    "criterion": Choice(values=["gini", "bogus"]),  # "bogus" makes scikit-learn refuse: a failing trial
    "max_features": Choice(values=["sqrt"]),
}


@pytest.fixture(scope="module")
def prepared():
    return prepare_data(None, None, 0.1)


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory, prepared):
    home = tmp_path_factory.mktemp("home")
    backend = LocalBackend(home)
    data = backend.upload(prepared.train)
    spec = SweepSpec(sampling="grid", search_space=SPACE, max_total_trials=8, max_concurrent_trials=2,
                     validation=ValidationSpec(method="split"))
    seen: list[tuple[int, int]] = []
    prestart_workers(2)  # as `heartflow run` does: the sweep takes these workers (the fresh-home rerun does not)
    result = backend.sweep(data, spec, prepared.schema, progress=lambda t, done, total: seen.append((done, total)))
    assert take_prestarted(2) is None, "the sweep took the prestarted workers"
    return backend, data, spec, result, seen


def test_upload_is_content_addressed_and_idempotent(tmp_path: Path, prepared) -> None:
    backend = LocalBackend(tmp_path)
    first = backend.upload(prepared.train)
    stored = Path(first.uri.removeprefix("file://"))
    assert stored == tmp_path.resolve() / "data" / first.sha256 / "train.csv"
    mtime = stored.stat().st_mtime_ns
    assert backend.upload(prepared.train) == first
    assert stored.stat().st_mtime_ns == mtime  # the second upload wrote nothing
    assert first.rows == len(prepared.train) and "output" in first.columns
    assert not list(stored.parent.glob("*.part"))


def test_every_trial_is_a_child_run_with_exact_param_names_metrics_and_a_model(swept) -> None:
    backend, _, _, result, seen = swept
    assert len(result.trials) == 8 and [t.number for t in result.trials] == list(range(8))
    assert seen[-1] == (8, 8) and len(seen) == 8
    client = tracking.make_client(backend.home)
    parent = client.get_run(result.sweep_id)
    assert parent.info.status == "FINISHED"
    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{result.sweep_id}'")
    assert len(children) == 8
    for run in children:
        assert set(run.data.params) == {"n_estimators", "max_depth", "criterion", "max_features"}
    completed = [r for r in children if r.info.status == "FINISHED"]
    failed = [r for r in children if r.info.status == "FAILED"]
    assert len(completed) == 4 and len(failed) == 4
    assert all(r.data.params["criterion"] == "bogus" for r in failed)
    assert all("criterion" in r.data.tags[tracking.TAG_ERROR] for r in failed)
    # Only a trial that led the sweep when it finished wrote its model: the best always did.
    saved = {r.info.run_id for r in completed if r.data.tags[TAG_MODEL] == "saved"}
    assert result.best.run_id in saved
    for run in completed:
        assert {"accuracy", "f1", "precision", "recall", "roc_auc", "balanced_accuracy", "average_precision",
                "log_loss"} <= set(run.data.metrics)
        model_dir = tracking.local_path(run.info.artifact_uri) / "model"
        if run.info.run_id not in saved:
            assert run.data.tags[TAG_MODEL].startswith("not saved") and not model_dir.exists()
            continue
        mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
        assert mlmodel["flavors"]["sklearn"]["serialization_format"] == "skops"
        requirements = (model_dir / "requirements.txt").read_text()
        assert "scikit-learn==" in requirements and "skops==" in requirements
    best = client.get_run(result.best.run_id)
    model = mlflow.sklearn.load_model(str(tracking.local_path(best.info.artifact_uri) / "model"))
    assert hasattr(model, "predict_proba")


def test_failed_trials_do_not_stop_the_sweep_and_the_best_is_a_completed_one(swept) -> None:
    _, _, _, result, _ = swept
    assert len(result.failed) == 4 and all(t.error for t in result.failed)
    assert result.best.status is TrialStatus.COMPLETED
    best_accuracy = max(t.metrics["accuracy"] for t in result.completed)
    assert result.best.metrics["accuracy"] == best_accuracy
    assert result.best.number == min(t.number for t in result.completed if t.metrics["accuracy"] == best_accuracy)


def test_rerun_reuses_the_finished_sweep_and_a_fresh_home_reproduces_it(swept, tmp_path: Path, prepared) -> None:
    backend, data, spec, result, _ = swept
    again = backend.sweep(data, spec.model_copy(update={"max_concurrent_trials": 1}), prepared.schema)
    assert again.sweep_id == result.sweep_id
    assert [t.run_id for t in again.trials] == [t.run_id for t in result.trials]
    fresh = LocalBackend(tmp_path)
    other = fresh.sweep(fresh.upload(prepared.train), spec, prepared.schema)
    assert other.sweep_id != result.sweep_id
    assert [dict(t.metrics) for t in other.trials] == [dict(t.metrics) for t in result.trials]


def test_register_tags_lineage_and_is_not_duplicated(swept) -> None:
    backend, data, _, result, _ = swept
    model = backend.register(result)
    assert model.version == "1" and model.source_run_id == result.best.run_id
    assert model.tags["heartflow.sweep_run"] == result.sweep_id
    assert model.tags["heartflow.data_sha256"] == data.sha256
    assert float(model.tags["heartflow.metric_value"]) == pytest.approx(result.best.metrics["accuracy"], abs=1e-6)
    assert model.tags["heartflow.status"] == "candidate"
    assert backend.register(result).version == "1"
    assert backend.champion("heart-classifier") is None  # only the promotion gate names a champion


def test_a_trial_over_its_timeout_fails_and_the_others_finish(tmp_path: Path, prepared) -> None:
    backend = LocalBackend(tmp_path)
    data = backend.upload(prepared.train)
    spec = SweepSpec(
        sampling="grid", max_concurrent_trials=2, trial_timeout_s=6, validation=ValidationSpec(method="split"),
        search_space={"n_estimators": Choice(values=[5, 20000, 6]), "max_depth": Choice(values=[-1])},
    )
    result = backend.sweep(data, spec, prepared.schema)
    by_number = {t.number: t for t in result.trials}
    assert by_number[1].status is TrialStatus.FAILED and by_number[1].error == "trial timeout"
    assert by_number[0].status is TrialStatus.COMPLETED and by_number[2].status is TrialStatus.COMPLETED


def test_a_best_trial_without_its_model_is_refitted_so_it_can_be_registered(swept, prepared) -> None:
    """A better trial killed by its timeout after it claimed the lead leaves the best without a model."""
    import shutil

    from backends.local.sweep import LocalSweepRunner

    backend, data, spec, result, _ = swept
    client = tracking.make_client(backend.home)
    folder = tracking.local_path(client.get_run(result.best.run_id).info.artifact_uri) / "model"
    shutil.rmtree(folder)
    runner = LocalSweepRunner(backend.home, client, client.get_run(result.sweep_id).info.experiment_id)
    runner._ensure_best_model(data, spec, prepared.schema.to_json(), result.best)
    assert mlflow.sklearn.load_model(str(folder)).predict_proba is not None
    assert client.get_run(result.best.run_id).data.tags[TAG_MODEL].startswith("saved")


@pytest.mark.parametrize(("sampling", "replaced_first"), [("grid", True), ("bayesian", False)])
def test_a_finished_trial_is_replaced_before_the_parent_records_it(
    tmp_path: Path, prepared, sampling: str, replaced_first: bool,
) -> None:
    """Recording can take longer than a queued trial (the first model written imports skops and checks
    MLflow's requirements): the worker's next trial is handed out first, so it does not wait. Bayesian
    sampling learns from each result, so it asks for the next trial only after recording the last."""
    import time

    from backends.local.scheduler import TrialScheduler

    csv = tmp_path / "train.csv"
    prepared.train.to_csv(csv, index=False)
    space = {"n_estimators": Choice(values=[10, 20]), "max_depth": Choice(values=[4]),
             "criterion": Choice(values=["gini"]), "max_features": Choice(values=["sqrt", "log2"])}
    spec = SweepSpec(sampling=sampling, search_space=space, max_total_trials=4, max_concurrent_trials=1,
                     validation=ValidationSpec(method="split"))
    events: list[tuple[str, int]] = []
    numbers = iter(range(4))

    def ask():
        number = next(numbers, None)
        return None if number is None else (number, {"n_estimators": 10, "max_depth": 4, "criterion": "gini",
                                                     "max_features": "sqrt"})

    def start(number, params):
        events.append(("start", number))
        return f"run-{number}", tmp_path / f"model-{number}"

    def record(run_id, job, outcome):
        assert outcome.error is None, outcome.error
        events.append(("record", job.number))
        time.sleep(0.2)  # a slow record

    TrialScheduler(spec, str(csv), prepared.schema.to_json(), 1, None).run(ask, start, record)
    assert sorted(events) == [(kind, n) for kind in ("record", "start") for n in range(4)]
    handed_out_next = events.index(("start", 2 if replaced_first else 1))
    assert (handed_out_next < events.index(("record", 0))) is replaced_first, events


GOOD_SPACE = {"n_estimators": Choice(values=[10, 20]), "max_depth": Choice(values=[4]),
              "criterion": Choice(values=["gini"]), "max_features": Choice(values=["sqrt", "log2"])}


@pytest.mark.parametrize("same_spec", [True, False])
def test_trials_handed_out_before_the_sweep_are_adopted_only_when_they_are_its_own(
    tmp_path: Path, prepared, same_spec: bool,
) -> None:
    """`heartflow run` hands the prestarted workers the sweep's trials while Prefect starts the flow: the
    sweep records each as its own (the very outcome, its worker's duration to the float) when it is the
    trial it would hand out; for another spec none is taken, the rest are cancelled, and the sweep runs
    its own. Either way its MLflow run starts no later than its first trial did."""
    from concurrent.futures import wait

    from backends.local import scheduler

    backend = LocalBackend(tmp_path / "home")
    data = backend.upload(prepared.train)
    spec = SweepSpec(sampling="grid", search_space=GOOD_SPACE, max_total_trials=4, max_concurrent_trials=2,
                     validation=ValidationSpec(method="split"))
    early_spec = spec if same_spec else spec.model_copy(update={"seed": spec.seed + 1})
    scheduler.stop_prestarted()
    prestart_workers(2)
    assert scheduler.start_early_trials(early_spec, str(tracking.local_path(data.uri)), prepared.schema.to_json()) == 4
    since = scheduler.early_trials_since()
    handed = list(scheduler._PRESTARTED[-1].early)
    wait([future for _, future in handed], timeout=300)  # all four ran before the sweep started
    result = backend.sweep(data, spec, prepared.schema)
    assert [t.status for t in result.trials] == [TrialStatus.COMPLETED] * 4
    durations = {t.number: t.duration_s for t in result.trials}
    adopted = [job.number for job, future in handed if durations[job.number] == future.result().seconds]
    assert adopted == ([0, 1, 2, 3] if same_spec else [])
    parent = tracking.make_client(backend.home).get_run(result.sweep_id)
    assert since is not None and parent.info.start_time <= int(since * 1000) + 1
    assert take_prestarted(2) is None


def test_the_sweeps_tail_begins_before_the_parent_records_the_trials_that_ended_with_it(tmp_path: Path, prepared) -> None:
    """The tail hook (the first deploy's endpoint host starts there) runs when the last trial is handed out,
    before the parent records what finished meanwhile: here trials 1 and 2 end while trial 0 is recorded
    slowly, and the tail begins before either is recorded."""
    import time

    from backends.local.scheduler import TrialScheduler

    csv = tmp_path / "train.csv"
    prepared.train.to_csv(csv, index=False)
    spec = SweepSpec(sampling="grid", search_space=GOOD_SPACE, max_total_trials=3, max_concurrent_trials=1,
                     validation=ValidationSpec(method="split"))
    events: list[tuple[str, int]] = []
    numbers = iter(range(3))
    params = {"n_estimators": 10, "max_depth": 4, "criterion": "gini", "max_features": "sqrt"}

    def record(run_id, job, outcome):
        events.append(("record", job.number))
        if job.number == 0:
            time.sleep(3)  # trials 1 and 2 end meanwhile

    def ask():
        number = next(numbers, None)
        return None if number is None else (number, params)

    TrialScheduler(spec, str(csv), prepared.schema.to_json(), 1, None).run(
        ask, lambda n, p: (f"run-{n}", tmp_path / f"model-{n}"), record, lambda: events.append(("tail", -1)))
    assert events.index(("tail", -1)) < events.index(("record", 1)), events
