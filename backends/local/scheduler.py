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
import logging
import math
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backends.domain.spec import SweepSpec
from backends.local.trial_worker import TrialJob, TrialOutcome, init_worker, run_trial, warm_up, trial_job

logger = logging.getLogger(__name__)

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
        # A second trial per worker waits in its queue where it may (bayesian asks better the later it asks).
        self._slots = workers * 2 if spec.queues_ahead else workers
        self._learns = spec.learns_from_results  # its next trial is asked after the last one is recorded
        self._best_so_far = math.nan if best_so_far is None else best_so_far
        self._leader: Any = None  # the workers' shared best (kept when a pool is replaced)
        self._deadline = time.monotonic() + spec.timeout_s if spec.timeout_s else math.inf
        self._in_flight: dict[Future[TrialOutcome], _Running] = {}
        self._retry: list[_Running] = []
        self._asked_all = False
        self._early: list[tuple[TrialJob, Future[TrialOutcome]]] = []
        self._on_tail: Callable[[], None] | None = None

    def run(
        self, ask: Callable[[], Asked], start: StartTrial, record: RecordTrial,
        on_last_handed_out: Callable[[], None] | None = None,
    ) -> None:
        """``on_last_handed_out``: called once, when ``ask`` has no trial left to hand out (the sweep's tail)."""
        pool = self._first_pool()
        self._on_tail = on_last_handed_out
        try:
            while True:
                self._fill(pool, ask, start)
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
            self._drop_early()
            _kill_pool(pool, wait_for=False)

    # -- the loop's steps ---------------------------------------------------------------------------------

    def _fill(self, pool: ProcessPoolExecutor, ask: Callable[[], Asked], start: StartTrial) -> None:
        """Keep every worker busy: retried trials first, then new ones. When ``ask`` has none left, the
        sweep's tail begins: its hook runs then, once, before anything is recorded."""
        while len(self._in_flight) < self._slots and not self._past_deadline():
            running = self._retry.pop() if self._retry else self._new_trial(ask, start)
            if running is None:
                if self._asked_all and self._on_tail is not None:
                    hook, self._on_tail = self._on_tail, None
                    hook()
                return
            running.started = time.monotonic()
            future = self._adopt_early(running.job) or pool.submit(run_trial, running.job)
            self._in_flight[future] = running

    def _adopt_early(self, job: TrialJob) -> Future[TrialOutcome] | None:
        """The future of the early trial that is this very job (``start_early_trials``), else None. Early trials
        are the sweep's first ones in order: at the first that differs (a resumed sweep, another spec),
        the rest are cancelled (one already running finishes, unread)."""
        if not self._early:
            return None
        early_job, future = self._early[0]
        if early_job == dataclasses.replace(job, model_dir=""):
            self._early.pop(0)
            return future
        self._drop_early()
        return None

    def _drop_early(self) -> None:
        for _, future in self._early:
            future.cancel()
        self._early.clear()

    def _new_trial(self, ask: Callable[[], Asked], start: StartTrial) -> _Running | None:
        if self._asked_all:
            return None
        asked = ask()
        if asked is None:
            self._asked_all = True
            return None
        number, params = asked
        run_id, model_dir = start(number, params)
        return _Running(trial_job(self._spec, number, params, str(model_dir), *self._data), run_id, time.monotonic())

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
        self._early = list(started.early)
        if not math.isnan(self._best_so_far):  # else the value early trials may have claimed stays
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
            wait([pool.submit(warm_up, 0.2, *self._data) for _ in range(self._workers)], timeout=120)
        return pool


@dataclass(frozen=True)
class StartedWorkers:
    """Worker processes and the best value they share (a process-shared double, inherited at their start)."""

    executor: ProcessPoolExecutor
    leader: Any
    workers: int
    early: list[tuple[TrialJob, Future[TrialOutcome]]] = field(default_factory=list)  # start_early_trials'
    early_since: float = 0.0  # when they were handed out (epoch seconds)


def start_workers(workers: int, best_so_far: float = math.nan, leader: Any = None) -> StartedWorkers:
    """``workers`` processes that import the trial code at once (they read the data on their first trial);
    ``leader``: the shared best of workers they replace, else a new one holding ``best_so_far``."""
    context = multiprocessing.get_context("spawn")  # not fork: the parent may run threads (Prefect, MLflow)
    leader = leader if leader is not None else context.Value("d", best_so_far)
    executor = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=init_worker,
                                   initargs=(leader,))
    for _ in range(workers):  # a worker process is spawned per task that finds none idle: all start now
        executor.submit(warm_up, 0.0)
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


def start_early_trials(spec: SweepSpec, data_path: str, schema_json: str) -> int:
    """Hand the prestarted workers the trials of a sweep of ``spec`` on the training CSV at ``data_path`` now,
    in the order the sweep will ask for them, before the sweep starts: `heartflow run` calls it while Prefect
    starts the flow, when a core is otherwise idle. The sweep adopts each early trial that is exactly the
    trial it would hand out (``TrialScheduler._adopt_early``) and records it as its own; from the first it
    does not take, the rest are cancelled (one already running finishes, unread). Only where nothing depends
    on when a trial starts (no trial or sweep timeout) and the first trials do not depend on results (not
    bayesian). The number of trials handed out."""
    from backends.domain.search import make_sampler

    if not _PRESTARTED or _PRESTARTED[-1].early or not spec.starts_ahead:
        return 0
    started = _PRESTARTED[-1] = dataclasses.replace(_PRESTARTED[-1], early_since=time.time())
    sampler = make_sampler(spec)
    while (asked := sampler.ask()) is not None:  # all of them: the workers stay busy until the sweep starts
        job = trial_job(spec, asked[0], asked[1], "", data_path, schema_json)
        started.early.append((job, started.executor.submit(run_trial, job)))
    return len(started.early)


def early_trials_since() -> float | None:
    """When the prestarted workers were handed early trials (epoch seconds), else None: a new sweep's MLflow
    run starts then, as its first trials did."""
    return _PRESTARTED[-1].early_since if _PRESTARTED and _PRESTARTED[-1].early else None


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
