"""The worker side of a local sweep: what a worker process runs for one trial, and the lead its trials share.

A worker imports only pandas and scikit-learn (as a bare loop does), reads the training rows once, and runs
the same ``train_trial`` that src/model_train.py runs as a script. Only a trial that leads the sweep when it
finishes (``claims_lead``: a value shared by the workers, compared under its lock) sends its fitted model
back; ``backends.local.scheduler`` hands the trials out and records them.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

from backends.domain.spec import SweepSpec

# Worker-process state, set once per worker by init_worker (never in the parent).
_WORKER: dict[str, Any] = {}


@dataclass(frozen=True)
class TrialJob:
    number: int
    params: dict[str, Any]
    model_dir: str
    seed: int
    method: str
    test_size: float
    folds: int
    random_state: int
    metric: str
    goal: str
    threshold: float | str | None = None  # the spec's: 0.5 (None), a probability, or "auto"
    data_path: str = ""  # the training CSV and its schema, read by the worker on its first trial
    schema_json: str = ""


@dataclass(frozen=True)
class TrialOutcome:
    number: int
    metrics: dict[str, float]
    seconds: float
    error: str | None
    model: Any = None  # the fitted model, sent back only by a trial that led when it finished


def init_worker(leader: Any) -> None:
    from threadpoolctl import threadpool_limits

    import src.model_train  # noqa: F401 - the trial code's imports (scikit-learn, pandas), before any trial

    # The worker processes are the parallelism: one thread each. Gradient boosting's OpenMP threads on
    # top of them oversubscribe the cores (measured: a 5-fold hgb trial 3.7 s alone, 172 s under load).
    threadpool_limits(1)
    _WORKER.update(leader=leader)


def _training_frame(data_path: str, schema_json: str) -> tuple[Any, Any]:
    """The sweep's training rows and schema, read once per worker (a worker may start before the data is known)."""
    if _WORKER.get("data") != (data_path, schema_json):
        from src.features import DatasetSchema, read_training_csv

        schema = DatasetSchema.from_mapping(json.loads(schema_json))
        _WORKER.update(data=(data_path, schema_json), frame=read_training_csv(data_path, schema), schema=schema)
    return _WORKER["frame"], _WORKER["schema"]


def claims_lead(leader: Any, value: float | None, goal: str) -> bool:
    """True when ``value`` is at least as good as the best value the sweep has seen (ties lead too, so a
    tie broken by trial number still has its model); the shared best moves to it."""
    if value is None or math.isnan(value):
        return False
    with leader.get_lock():
        best = leader.value
        better = math.isnan(best) or (value >= best if goal == "maximize" else value <= best)
        if better:
            leader.value = value
        return better


def warm_up(seconds: float, data_path: str = "", schema_json: str = "") -> None:
    if data_path:
        _training_frame(data_path, schema_json)
    time.sleep(seconds)  # long enough that every worker process gets one


def run_trial(job: TrialJob) -> TrialOutcome:
    """Runs in a worker: the same train_trial that src/model_train.py runs as a script."""
    from src.model_train import train_trial

    started = time.perf_counter()
    try:
        frame, schema = _training_frame(job.data_path, job.schema_json)
        fit = train_trial(
            frame, schema, job.params, seed=job.seed, method=job.method,
            test_size=job.test_size, folds=job.folds, random_state=job.random_state, threshold=job.threshold,
            metric=job.metric,
        )
    except (ValueError, TypeError, KeyError, ArithmeticError, MemoryError, OSError) as exc:
        # A bad parameter combination fails this trial only; the sweep goes on.
        return TrialOutcome(job.number, {}, time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
    leads = claims_lead(_WORKER["leader"], fit.metrics.get(job.metric), job.goal)
    return TrialOutcome(job.number, fit.metrics, time.perf_counter() - started, None, fit.model if leads else None)


def trial_job(spec: SweepSpec, number: int, params: dict[str, Any], model_dir: str, data_path: str,
              schema_json: str) -> TrialJob:
    """What a worker needs to run trial ``number`` of ``spec`` on the training CSV at ``data_path``."""
    v = spec.validation
    return TrialJob(number, params, model_dir, spec.seed, v.method, v.test_size, v.folds, v.random_state,
                    spec.primary_metric, spec.goal, spec.threshold, data_path, schema_json)
