"""Schedules a sweep's trials on long-lived worker processes: keeps every worker busy, enforces the trial and
sweep timeouts, survives a dead worker, and says which trials write their model.

The scheduler and its workers know nothing of MLflow (a worker imports only pandas and scikit-learn, as a
bare loop does): ``start`` gives a new trial its run id and model folder, ``record`` stores a finished (or
failed) trial. Only a trial that leads the sweep when it finishes (a value shared by the workers, compared
under its lock) sends its fitted model back for ``record`` to write: the best trial always leads when it
finishes, so its model is always there, and the 90-odd trials of a 100-trial grid that never lead cost no
model write. Without a trial timeout, each worker has its next trial queued behind the running one, and
the trials that replace finished ones are handed out before the parent records them, so a worker does not
wait while the parent records (bayesian sampling asks after recording: it learns from each result).
"""

from __future__ import annotations

import atexit
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

from backends.domain.spec import SweepSpec

logger = logging.getLogger(__name__)

# Worker-process state, set once per worker by _init_worker (never in the parent).
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


def _init_worker(leader: Any) -> None:
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


def _warm_up(seconds: float, data_path: str = "", schema_json: str = "") -> None:
    if data_path:
        _training_frame(data_path, schema_json)
    time.sleep(seconds)  # long enough that every worker process gets one


def _run_trial(job: TrialJob) -> TrialOutcome:
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


StartTrial = Callable[[int, dict[str, Any]], tuple[str, Path]]
RecordTrial = Callable[[str, TrialJob, TrialOutcome], None]
Asked = tuple[int, dict[str, Any]] | None


@dataclass
class _Running:
    job: TrialJob
    run_id: str
    started: float


class TrialScheduler:
    """Runs the trials ``ask`` hands out on ``workers`` processes until it hands out None or time runs out."""

    def __init__(
        self, spec: SweepSpec, data_path: str, schema_json: str, workers: int, best_so_far: float | None,
    ) -> None:
        self._spec = spec
        self._data = (data_path, schema_json)
        self._workers = workers
        # Queue a second trial per worker when no trial clock runs from submission and the sampler does not
        # learn from finished trials (bayesian asks better the later it asks).
        self._slots = workers * 2 if not spec.trial_timeout_s and spec.sampling != "bayesian" else workers
        self._learns = spec.sampling == "bayesian"  # its next trial is asked after the last one is recorded
        self._best_so_far = math.nan if best_so_far is None else best_so_far
        self._leader: Any = None  # the workers' shared best (kept when a pool is replaced)
        self._deadline = time.monotonic() + spec.timeout_s if spec.timeout_s else math.inf
        self._in_flight: dict[Future[TrialOutcome], _Running] = {}
        self._retry: list[_Running] = []
        self._asked_all = False

    def run(
        self, ask: Callable[[], Asked], start: StartTrial, record: RecordTrial,
        on_last_handed_out: Callable[[], None] | None = None,
    ) -> None:
        """``on_last_handed_out``: called once, when ``ask`` has no trial left to hand out (the sweep's tail)."""
        pool = self._first_pool()
        try:
            while True:
                self._fill(pool, ask, start)
                if self._asked_all and on_last_handed_out is not None:
                    hook, on_last_handed_out = on_last_handed_out, None
                    hook()
                if not self._in_flight:
                    break
                finished, broken = self._collect()
                if not broken and not self._learns:
                    # the workers' next trials before the parent records: a record can take longer than a
                    # queued trial (the first model written imports skops and checks MLflow's requirements)
                    self._fill(pool, ask, start)
                for running, outcome in finished:
                    record(running.run_id, running.job, outcome)
                if self._reap(record, broken):
                    _kill_pool(pool)
                    pool = self._new_pool()
                if self._past_deadline() and not self._in_flight and not self._retry:
                    logger.warning("sweep timeout (%ss) reached: the remaining trials do not run", self._spec.timeout_s)
                    break
        finally:
            _kill_pool(pool, wait_for=False)

    # -- the loop's steps ---------------------------------------------------------------------------------

    def _fill(self, pool: ProcessPoolExecutor, ask: Callable[[], Asked], start: StartTrial) -> None:
        """Keep every worker busy: retried trials first, then new ones."""
        while len(self._in_flight) < self._slots and not self._past_deadline():
            running = self._retry.pop() if self._retry else self._new_trial(ask, start)
            if running is None:
                return
            running.started = time.monotonic()
            self._in_flight[pool.submit(_run_trial, running.job)] = running

    def _new_trial(self, ask: Callable[[], Asked], start: StartTrial) -> _Running | None:
        if self._asked_all:
            return None
        asked = ask()
        if asked is None:
            self._asked_all = True
            return None
        number, params = asked
        run_id, model_dir = start(number, params)
        v = self._spec.validation
        job = TrialJob(number, params, str(model_dir), self._spec.seed, v.method, v.test_size, v.folds,
                       v.random_state, self._spec.primary_metric, self._spec.goal, self._spec.threshold, *self._data)
        return _Running(job, run_id, time.monotonic())

    def _collect(self) -> tuple[list[tuple[_Running, TrialOutcome]], bool]:
        """The trials that finished, with their outcomes, and whether a worker died."""
        done, _ = wait(self._in_flight, timeout=self._next_wait(), return_when=FIRST_COMPLETED)
        finished = []
        broken = False
        for future in done:
            running = self._in_flight.pop(future)
            try:
                outcome = future.result()
            except BrokenProcessPool:
                broken = True
                outcome = TrialOutcome(running.job.number, {}, 0.0, "the worker process died (out of memory or killed)")
            finished.append((running, outcome))
        return finished, broken

    def _reap(self, record: RecordTrial, broken: bool) -> bool:
        """A worker cannot be stopped one task at a time: when a trial ran out of time (or a worker died),
        fail the expired trials, queue the others to run again, and say that the pool must be replaced."""
        expired = self._expired()
        if not expired and not broken:
            return False
        for future, running in list(self._in_flight.items()):
            if future in expired or self._past_deadline():
                reason = "sweep timeout" if self._past_deadline() else "trial timeout"
                record(running.run_id, running.job, TrialOutcome(running.job.number, {}, 0.0, reason))
            else:
                self._retry.append(running)
        self._in_flight.clear()
        return True

    # -- time ------------------------------------------------------------------------------------------------

    def _past_deadline(self) -> bool:
        return time.monotonic() >= self._deadline

    def _next_wait(self) -> float | None:
        now = time.monotonic()
        limits = [self._deadline - now] if self._deadline != math.inf else []
        if self._spec.trial_timeout_s:
            limits += [r.started + self._spec.trial_timeout_s - now for r in self._in_flight.values()]
        return max(0.05, min(limits)) if limits else None

    def _expired(self) -> set[Future[TrialOutcome]]:
        if self._past_deadline():
            return set(self._in_flight)
        if not self._spec.trial_timeout_s:
            return set()
        now = time.monotonic()
        return {f for f, r in self._in_flight.items() if now - r.started >= self._spec.trial_timeout_s}

    # -- the pool ------------------------------------------------------------------------------------------

    def _first_pool(self) -> ProcessPoolExecutor:
        """The workers started before the sweep (``prestart_workers``) when there are as many, else new ones."""
        started = take_prestarted(self._workers)
        if started is None:
            return self._new_pool()
        self._leader = started.leader
        self._leader.value = self._best_so_far  # the shared best, read by the workers from their first trial
        return self._warmed(started.executor)

    def _new_pool(self) -> ProcessPoolExecutor:
        started = start_workers(self._workers, self._best_so_far, self._leader)
        self._leader = started.leader
        return self._warmed(started.executor)

    def _warmed(self, pool: ProcessPoolExecutor) -> ProcessPoolExecutor:
        if self._spec.trial_timeout_s:
            # Start every worker (imports, data load) before the first trial, so that start-up time is
            # not charged to a trial's timeout. Without one, the first trials simply queue until it is done.
            wait([pool.submit(_warm_up, 0.2, *self._data) for _ in range(self._workers)], timeout=120)
        return pool


@dataclass(frozen=True)
class StartedWorkers:
    """Worker processes and the best value they share (a process-shared double, inherited at their start)."""

    executor: ProcessPoolExecutor
    leader: Any
    workers: int


def start_workers(workers: int, best_so_far: float = math.nan, leader: Any = None) -> StartedWorkers:
    """``workers`` processes that import the trial code at once (they read the data on their first trial);
    ``leader``: the shared best of workers they replace, else a new one holding ``best_so_far``."""
    context = multiprocessing.get_context("spawn")  # not fork: the parent may run threads (Prefect, MLflow)
    leader = leader if leader is not None else context.Value("d", best_so_far)
    executor = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                                   initargs=(leader,))
    for _ in range(workers):  # a worker process is spawned per task that finds none idle: all start now
        executor.submit(_warm_up, 0.0)
    return StartedWorkers(executor, leader, workers)


# Workers started by ``prestart_workers`` in this process, until a sweep takes them (one sweep a process).
_PRESTARTED: list[StartedWorkers] = []


def prestart_workers(workers: int) -> None:
    """Start the sweep's workers now, so that their start-up (a Python process each, importing scikit-learn
    and pandas: a second or two of a core) overlaps the caller's own start-up instead of the sweep's first
    trials. `heartflow run` calls it first thing; workers no sweep takes are stopped when the command ends
    (``stop_prestarted``) or, at the latest, when this process exits."""
    if _PRESTARTED or workers < 1:
        return
    _PRESTARTED.append(start_workers(workers))
    atexit.register(stop_prestarted)


def take_prestarted(workers: int) -> StartedWorkers | None:
    """The prestarted workers when there are exactly ``workers`` of them (else they are stopped and None)."""
    if not _PRESTARTED:
        return None
    started = _PRESTARTED.pop()
    if started.workers == workers:
        return started
    _kill_pool(started.executor, wait_for=False)
    return None


def stop_prestarted() -> None:
    """Stop the prestarted workers no sweep took (a run that ended early, failed, or swept nothing)."""
    while _PRESTARTED:
        _kill_pool(_PRESTARTED.pop().executor)


def _kill_pool(pool: ProcessPoolExecutor, wait_for: bool = True) -> None:
    processes = list(getattr(pool, "_processes", {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    if wait_for:
        for process in processes:
            process.join(timeout=5)
