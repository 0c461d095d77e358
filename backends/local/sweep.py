"""The local sweep: trials in long-lived worker processes, tracked as MLflow child runs.

Only this (parent) process writes to the SQLite store and the model folders; a worker
(``backends.local.scheduler``) fits one trial and, when the trial leads the sweep as it finishes, sends its
model back to be written into the run's artifact folder (tag ``heartflow.model`` says whether it was). A sweep is identified by a
key (data sha256, search spec, training-code version): rerunning a finished sweep returns its recorded
result, and rerunning an interrupted one reuses the finished trials and runs only the rest.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from backends.base import DataRef, SweepResult, TrialResult, TrialStatus
from backends.errors import SweepError
from backends.local import tracking
from backends.local.scheduler import TrialJob, TrialOutcome, TrialScheduler, early_trials_since
from backends.domain.search import make_sampler, planned_trials
from backends.domain.selection import pick_best_trial
from backends.domain.spec import SweepSpec

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[TrialResult, int, int], None]

TAG_MODEL = "heartflow.model"


class LocalSweepRunner:
    """Runs one sweep against the MLflow store of ``home``."""

    def __init__(self, home: Path, client: MlflowClient, experiment_id: str) -> None:
        self._home = home
        self._client = client
        self._experiment_id = experiment_id
        self._writer: Any = None  # TrialModelWriter, built on the first model written

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

    def _write_model(
        self, run_id: str, job: TrialJob, outcome: TrialOutcome, data: DataRef, schema_json: str,
    ) -> str | None:
        """Write a leading trial's model into its run's folder; what the run's model tag says."""
        if outcome.error:
            return None
        if outcome.model is None:
            return "not saved: did not lead when it finished"
        try:
            if self._writer is None:
                from backends.local.model_writer import TrialModelWriter
                from src.features import DatasetSchema, read_training_csv
                from src.model_train import model_metadata, model_signature, pip_requirements

                schema = DatasetSchema.from_mapping(json.loads(schema_json))
                frame = read_training_csv(tracking.local_path(data.uri), schema)
                self._writer = TrialModelWriter(
                    model_signature(frame, schema), pip_requirements(), model_metadata(frame, schema))
            self._writer.save(outcome.model, Path(job.model_dir))
            tracking.publish_trial_model(self._client, self._home, run_id, Path(job.model_dir))
        except OSError as exc:
            logger.error("trial %d: its model could not be written to %s: %s", job.number, job.model_dir, exc)
            return f"not saved: {exc}"
        return "saved"

    def _finish_trial_run(self, run_id: str, params: dict[str, Any], outcome: TrialOutcome, model_note: str | None) -> None:
        """Params, metrics and tags in one transaction (each SQLite commit counts in a 100-trial sweep)."""
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, 0) for k, v in outcome.metrics.items() if not math.isnan(v)]
        tags = [RunTag(tracking.TAG_DURATION, f"{outcome.seconds:.4f}")]
        if model_note:
            tags.append(RunTag(TAG_MODEL, model_note))
        if outcome.error:
            tags.append(RunTag(tracking.TAG_ERROR, outcome.error[:4000]))
        logged = [Param(k, v if isinstance(v, str) else json.dumps(v)) for k, v in params.items()]
        self._client.log_batch(run_id, metrics=metrics, params=logged, tags=tags)
        self._client.set_terminated(run_id, "FAILED" if outcome.error else "FINISHED")

    # ---- the sweep ------------------------------------------------------------------------------
    def run(
        self, data: DataRef, spec: SweepSpec, schema_json: str, key: str, progress: ProgressCallback | None = None,
        on_tail: Callable[[], None] | None = None,
    ) -> SweepResult:
        """``key``: the sweep's identity (``Backend.sweep_identity``), which names its MLflow sweep run.
        ``on_tail``: called once when the last trial has been handed to a worker (not for a sweep read back
        whole from its records)."""
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
            since = early_trials_since()  # trials handed out before the sweep: it started with them
            parent_run = self._client.create_run(
                self._experiment_id,
                start_time=None if since is None else int(since * 1000),
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
            self._run_missing(parent_id, key, data, spec, schema_json, done, total, progress, on_tail)
        except BaseException:
            self._client.set_terminated(parent_id, "KILLED")
            raise
        result = self._result(parent_id, spec, data, done)
        best = result.best
        self._ensure_best_model(data, spec, schema_json, best)
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
        on_tail: Callable[[], None] | None = None,
    ) -> None:
        sampler = make_sampler(
            spec,
            {n: (dict(t.params), t.metrics.get(spec.primary_metric) if t.status is TrialStatus.COMPLETED else None) for n, t in done.items()},
        )
        best_so_far = None
        with contextlib.suppress(SweepError):
            best_so_far = pick_best_trial(done.values(), spec.primary_metric, spec.goal).metrics[spec.primary_metric]

        def start(number: int, params: dict[str, Any]) -> tuple[str, Path]:
            run = self._start_trial_run(parent_id, number, params, key)
            return run.info.run_id, tracking.trial_model_dir(self._home, run.info.run_id, run.info.artifact_uri)

        def record(run_id: str, job: TrialJob, outcome: TrialOutcome) -> None:
            model_note = self._write_model(run_id, job, outcome, data, schema_json)
            self._finish_trial_run(run_id, job.params, outcome, model_note)
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

        workers = min(spec.concurrency, max(1, total - len(done)))
        scheduler = TrialScheduler(spec, str(tracking.local_path(data.uri)), schema_json, workers, best_so_far)
        scheduler.run(sampler.ask, start, record, on_tail)

    def _ensure_best_model(self, data: DataRef, spec: SweepSpec, schema_json: str, best: TrialResult) -> None:
        """The best trial led when it finished, so it wrote its model; unless a timeout killed the worker of
        a better trial after it claimed the lead. Then the best trial is refitted here (same seeds, same
        model) and its model written, so that it can be registered."""
        artifact_uri = self._client.get_run(best.run_id).info.artifact_uri
        if tracking.is_local_artifact(artifact_uri):
            if (tracking.local_path(artifact_uri) / "model" / "MLmodel").exists():
                return
        elif any(f.path == "model" for f in self._client.list_artifacts(best.run_id)):
            return
        folder = tracking.trial_model_dir(self._home, best.run_id, artifact_uri)
        from src.features import DatasetSchema, read_training_csv
        from src.model_train import model_metadata, model_signature, pip_requirements, save_model, train_trial

        logger.info("sweep: refitting the best trial %d to write its model", best.number)
        schema = DatasetSchema.from_mapping(json.loads(schema_json))
        frame = read_training_csv(tracking.local_path(data.uri), schema)
        v = spec.validation
        fit = train_trial(frame, schema, dict(best.params), seed=spec.seed, method=v.method, test_size=v.test_size,
                          folds=v.folds, random_state=v.random_state, threshold=spec.threshold, metric=spec.metric)
        if folder.exists():
            shutil.rmtree(folder)
        save_model(fit.model, folder, model_signature(frame, schema), pip_requirements(), model_metadata(frame, schema))
        tracking.publish_trial_model(self._client, self._home, best.run_id, folder)
        self._client.set_tag(best.run_id, TAG_MODEL, "saved (refitted after the sweep)")


def _parse_param(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
