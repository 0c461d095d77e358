"""The local sweep: trials in long-lived worker processes, tracked as MLflow child runs.

Only this (parent) process writes to the SQLite store, so workers never contend for its lock; a worker
fits one trial and saves its model straight into the run's artifact folder. A sweep is identified by a
key (data sha256, search spec, training-code version): rerunning a finished sweep returns its recorded
result, and rerunning an interrupted one reuses the finished trials and runs only the rest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from backends.base import DataRef, SweepResult, TrialResult, TrialStatus
from backends.local import tracking
from backends.search import make_sampler, planned_trials
from backends.selection import pick_best_trial
from backends.spec import SweepSpec

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[TrialResult, int, int], None]

# Worker-process state, set once per worker by _init_worker (never in the parent).
_WORKER: dict[str, Any] = {}


def _init_worker(data_path: str, schema_json: str) -> None:
    from src.features import DatasetSchema, read_training_csv
    from src.model_train import model_metadata, model_signature, pip_requirements

    import mlflow.sklearn  # noqa: F401 - imported now, so the first trial is not charged for it
    import skops.io  # noqa: F401

    from backends.local.model_writer import TrialModelWriter

    from threadpoolctl import threadpool_limits

    # The worker processes are the parallelism: one thread each. Gradient boosting's OpenMP threads on
    # top of them oversubscribe the cores (measured: a 5-fold hgb trial 3.7 s alone, 172 s under load).
    threadpool_limits(1)
    schema = DatasetSchema.from_mapping(json.loads(schema_json))
    frame = read_training_csv(data_path, schema)
    writer = TrialModelWriter(model_signature(frame, schema), pip_requirements(), model_metadata(frame, schema))
    _WORKER.update(frame=frame, schema=schema, writer=writer)


@dataclass(frozen=True)
class _TrialJob:
    number: int
    params: dict[str, Any]
    model_dir: str
    seed: int
    method: str
    test_size: float
    folds: int
    random_state: int


@dataclass(frozen=True)
class _TrialOutcome:
    number: int
    metrics: dict[str, float]
    seconds: float
    error: str | None


def _warm_up(seconds: float) -> None:
    time.sleep(seconds)  # long enough that every worker process gets one


def _run_trial(job: _TrialJob) -> _TrialOutcome:
    """Runs in a worker: the same train_trial that src/model_train.py runs as a script."""
    from src.model_train import train_trial

    started = time.perf_counter()
    try:
        fit = train_trial(
            _WORKER["frame"], _WORKER["schema"], job.params, seed=job.seed, method=job.method,
            test_size=job.test_size, folds=job.folds, random_state=job.random_state,
        )
        _WORKER["writer"].save(fit.model, Path(job.model_dir))
    except (ValueError, TypeError, KeyError, ArithmeticError, MemoryError, OSError) as exc:
        # A bad parameter combination fails this trial only; the sweep goes on.
        return _TrialOutcome(job.number, {}, time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
    return _TrialOutcome(job.number, fit.metrics, time.perf_counter() - started, None)


def sweep_key(data: DataRef, spec: SweepSpec, schema_json: str) -> str:
    """What makes two sweeps the same: data, schema, search, validation, seed and training code.
    Concurrency and timeouts are left out: they change how fast, not what, a sweep computes."""
    relevant = spec.model_dump(mode="json", exclude={"max_concurrent_trials", "timeout_s", "trial_timeout_s"})
    payload = json.dumps(
        {"data": data.sha256, "spec": relevant, "schema": json.loads(schema_json), "code": tracking.code_version()},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


class LocalSweepRunner:
    """Runs one sweep against the MLflow store of ``home``."""

    def __init__(self, home: Path, client: MlflowClient, experiment_id: str) -> None:
        self._home = home
        self._client = client
        self._experiment_id = experiment_id

    # ---- MLflow bookkeeping -------------------------------------------------------------------
    def _find_parent(self, key: str) -> Any | None:
        runs = self._client.search_runs(
            [self._experiment_id],
            filter_string=f"tags.`{tracking.TAG_SWEEP_KEY}` = '{key}' and tags.`heartflow.kind` = 'sweep'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return runs[0] if runs else None

    def _children(self, parent_id: str) -> list[Any]:
        return self._client.search_runs(
            [self._experiment_id],
            filter_string=f"tags.`{tracking.PARENT_TAG}` = '{parent_id}'",
            max_results=5000,
        )

    def _trial_from_run(self, run: Any) -> TrialResult:
        status = TrialStatus.COMPLETED if run.info.status == "FINISHED" else TrialStatus.FAILED
        return TrialResult(
            number=int(run.data.tags[tracking.TAG_TRIAL_NUMBER]),
            run_id=run.info.run_id,
            params={k: _parse_param(v) for k, v in run.data.params.items()},
            metrics=dict(run.data.metrics),
            status=status,
            duration_s=float(run.data.tags.get(tracking.TAG_DURATION, 0.0)),
            error=run.data.tags.get(tracking.TAG_ERROR),
        )

    def _start_trial_run(self, parent_id: str, number: int, params: dict[str, Any], key: str) -> Any:
        run = self._client.create_run(
            self._experiment_id,
            run_name=f"trial-{number:03d}",
            tags={
                tracking.PARENT_TAG: parent_id,
                tracking.TAG_TRIAL_NUMBER: str(number),
                tracking.TAG_SWEEP_KEY: key,
                "heartflow.kind": "trial",
            },
        )
        return run

    def _finish_trial_run(self, run_id: str, params: dict[str, Any], outcome: _TrialOutcome) -> None:
        """Params, metrics and tags in one transaction (each SQLite commit counts in a 100-trial sweep)."""
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, 0) for k, v in outcome.metrics.items() if not math.isnan(v)]
        tags = [RunTag(tracking.TAG_DURATION, f"{outcome.seconds:.4f}")]
        if outcome.error:
            tags.append(RunTag(tracking.TAG_ERROR, outcome.error[:4000]))
        logged = [Param(k, v if isinstance(v, str) else json.dumps(v)) for k, v in params.items()]
        self._client.log_batch(run_id, metrics=metrics, params=logged, tags=tags)
        self._client.set_terminated(run_id, "FAILED" if outcome.error else "FINISHED")

    # ---- the sweep ------------------------------------------------------------------------------
    def run(
        self, data: DataRef, spec: SweepSpec, schema_json: str, progress: ProgressCallback | None = None
    ) -> SweepResult:
        key = sweep_key(data, spec, schema_json)
        total = planned_trials(spec)
        if spec.early_termination is not None:
            logger.warning(
                "early termination (%s) acts on metrics a trial logs while it trains; a local trial reports "
                "once, when it ends, so every trial runs to completion here (Azure ML applies the policy)",
                spec.early_termination.policy,
            )
        parent = self._find_parent(key)
        done: dict[int, TrialResult] = {}
        if parent is not None:
            for child in self._children(parent.info.run_id):
                if child.info.status in {"FINISHED", "FAILED"} and tracking.TAG_DURATION in child.data.tags:
                    trial = self._trial_from_run(child)
                    done.setdefault(trial.number, trial)
                else:  # a trial cut off by a crash: forget it, it runs again
                    self._client.delete_run(child.info.run_id)
            if parent.info.status == "FINISHED" and len(done) >= total:
                logger.info("sweep %s: reusing the finished sweep run %s (%d trials)", key, parent.info.run_id, len(done))
                return self._result(parent.info.run_id, spec, data, done)
            logger.info("sweep %s: resuming run %s, %d of %d trials already recorded", key, parent.info.run_id, len(done), total)
            parent_id = parent.info.run_id
            self._client.update_run(parent_id, status="RUNNING")
        else:
            parent_run = self._client.create_run(
                self._experiment_id,
                run_name=f"sweep-{data.sha256[:8]}",
                tags={tracking.TAG_SWEEP_KEY: key, "heartflow.kind": "sweep", tracking.TAG_DATA_SHA: data.sha256},
            )
            parent_id = parent_run.info.run_id
            self._client.log_batch(
                parent_id,
                params=[
                    Param("sampling", spec.sampling),
                    Param("max_total_trials", str(spec.max_total_trials)),
                    Param("primary_metric", spec.primary_metric),
                    Param("goal", spec.goal),
                    Param("seed", str(spec.seed)),
                    Param("validation", spec.validation.model_dump_json()),
                    Param("search_space", json.dumps(spec.model_dump(mode="json")["search_space"])[:6000]),
                    Param("data_uri", data.uri),
                ],
            )
        for trial in sorted(done.values(), key=lambda t: t.number):
            if progress:
                progress(trial, len(done), total)
        try:
            self._run_missing(parent_id, key, data, spec, schema_json, done, total, progress)
        except BaseException:
            self._client.set_terminated(parent_id, "KILLED")
            raise
        result = self._result(parent_id, spec, data, done)
        best = result.best
        self._client.log_batch(
            parent_id,
            metrics=[Metric(f"best_{k}", v, int(time.time() * 1000), 0) for k, v in best.metrics.items()],
            tags=[RunTag("heartflow.best_trial_run_id", best.run_id), RunTag("heartflow.best_trial_number", str(best.number))],
        )
        self._client.set_terminated(parent_id, "FINISHED")
        return result

    def _result(self, parent_id: str, spec: SweepSpec, data: DataRef, done: dict[int, TrialResult]) -> SweepResult:
        trials = tuple(sorted(done.values(), key=lambda t: t.number))
        best = pick_best_trial(trials, spec.primary_metric, spec.goal)
        return SweepResult(
            sweep_id=parent_id, primary_metric=spec.primary_metric, goal=spec.goal, trials=trials, best=best,
            data=data, url=None,
        )

    def _run_missing(
        self, parent_id: str, key: str, data: DataRef, spec: SweepSpec, schema_json: str,
        done: dict[int, TrialResult], total: int, progress: ProgressCallback | None,
    ) -> None:
        sampler = make_sampler(
            spec,
            {n: (dict(t.params), t.metrics.get(spec.primary_metric) if t.status is TrialStatus.COMPLETED else None) for n, t in done.items()},
        )
        deadline = time.monotonic() + spec.timeout_s if spec.timeout_s else math.inf
        workers = min(spec.concurrency, max(1, total - len(done)))
        data_path = str(tracking.local_path(data.uri))
        pool = self._new_pool(workers, data_path, schema_json)
        in_flight: dict[Future[_TrialOutcome], tuple[_TrialJob, str, float]] = {}
        retry: list[tuple[_TrialJob, str]] = []
        try:
            while True:
                # Keep every worker busy.
                while len(in_flight) < workers and time.monotonic() < deadline:
                    if retry:
                        job, run_id = retry.pop()
                    else:
                        asked = sampler.ask()
                        if asked is None:
                            break
                        number, params = asked
                        run = self._start_trial_run(parent_id, number, params, key)
                        run_id = run.info.run_id
                        model_dir = tracking.trial_model_dir(self._home, run_id, run.info.artifact_uri)
                        job = _TrialJob(
                            number, params, str(model_dir), spec.seed, spec.validation.method,
                            spec.validation.test_size, spec.validation.folds, spec.validation.random_state,
                        )
                    in_flight[pool.submit(_run_trial, job)] = (job, run_id, time.monotonic())
                if not in_flight:
                    break
                finished, _ = wait(in_flight, timeout=_next_wait(in_flight, spec, deadline), return_when=FIRST_COMPLETED)
                broken = False
                for future in finished:
                    job, run_id, _ = in_flight.pop(future)
                    try:
                        outcome = future.result()
                    except BrokenProcessPool:
                        broken = True
                        outcome = _TrialOutcome(job.number, {}, 0.0, "the worker process died (out of memory or killed)")
                    self._record(run_id, job, outcome, sampler, spec, done, total, progress)
                expired = _expired(in_flight, spec, deadline)
                if expired or broken:
                    # A worker cannot be stopped one task at a time: replace the pool, fail the
                    # trials that ran out of time and run the others again.
                    for future, (job, run_id, _) in list(in_flight.items()):
                        if future in expired:
                            reason = "trial timeout" if time.monotonic() < deadline else "sweep timeout"
                            self._record(run_id, job, _TrialOutcome(job.number, {}, 0.0, reason), sampler, spec, done, total, progress)
                        elif time.monotonic() < deadline:
                            retry.append((job, run_id))
                        else:
                            self._record(run_id, job, _TrialOutcome(job.number, {}, 0.0, "sweep timeout"), sampler, spec, done, total, progress)
                    in_flight.clear()
                    _kill_pool(pool)
                    pool = self._new_pool(workers, data_path, schema_json)
                if time.monotonic() >= deadline and not in_flight and not retry:
                    logger.warning("sweep timeout (%ss) reached: %d of %d trials ran", spec.timeout_s, len(done), total)
                    break
        finally:
            _kill_pool(pool, wait_for=False)

    def _new_pool(self, workers: int, data_path: str, schema_json: str) -> ProcessPoolExecutor:
        # spawn, not fork: the parent may run threads (Prefect, MLflow) that fork would copy mid-flight.
        pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(data_path, schema_json),
        )
        # Start every worker (imports, data load) before the first trial, so that start-up time is
        # not charged to a trial's timeout.
        warm = [pool.submit(_warm_up, 0.2) for _ in range(workers)]
        wait(warm, timeout=120)
        return pool

    def _record(
        self, run_id: str, job: _TrialJob, outcome: _TrialOutcome, sampler: Any, spec: SweepSpec,
        done: dict[int, TrialResult], total: int, progress: ProgressCallback | None,
    ) -> None:
        if not outcome.error:
            tracking.publish_trial_model(self._client, self._home, run_id, Path(job.model_dir))
        self._finish_trial_run(run_id, job.params, outcome)
        trial = TrialResult(
            number=job.number, run_id=run_id, params=job.params, metrics=outcome.metrics,
            status=TrialStatus.FAILED if outcome.error else TrialStatus.COMPLETED,
            duration_s=outcome.seconds, error=outcome.error,
        )
        done[job.number] = trial
        sampler.tell(job.number, None if outcome.error else outcome.metrics.get(spec.primary_metric))
        if outcome.error:
            logger.warning("trial %d failed: %s", job.number, outcome.error)
        if progress:
            progress(trial, len(done), total)


def _next_wait(in_flight: dict[Future[Any], tuple[Any, str, float]], spec: SweepSpec, deadline: float) -> float | None:
    limits = [deadline - time.monotonic()] if deadline != math.inf else []
    if spec.trial_timeout_s:
        limits += [started + spec.trial_timeout_s - time.monotonic() for _, _, started in in_flight.values()]
    return max(0.05, min(limits)) if limits else None


def _expired(in_flight: dict[Future[Any], tuple[Any, str, float]], spec: SweepSpec, deadline: float) -> set[Future[Any]]:
    now = time.monotonic()
    if now >= deadline:
        return set(in_flight)
    if not spec.trial_timeout_s:
        return set()
    return {f for f, (_, _, started) in in_flight.items() if now - started >= spec.trial_timeout_s}


def _kill_pool(pool: ProcessPoolExecutor, wait_for: bool = True) -> None:
    processes = list(getattr(pool, "_processes", {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    if wait_for:
        for process in processes:
            process.join(timeout=5)


def _parse_param(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
