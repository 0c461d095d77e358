"""``InMemoryBackend``: the stages in this process. Upload keeps the canonical CSV bytes (and a copy under
a scratch folder, so lineage's data URI reads back as on the local backend); the sweep samples the spec's
space with the shared samplers and trains real scikit-learn pipelines (``src.model_train.train_trial``)
one after another; the registry, the endpoints and the history are dictionaries; evaluation calls the
deployed model through a predictor that checks the key and routes by deployment or traffic."""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from backends.base import (
    DEFAULT_MODEL_NAME, Backend, DataRef, Endpoint, HistoryEntry, ModelVersion, SweepResult, TrialResult,
    TrialStatus,
)
from backends.client.evaluation import Predictor
from backends.domain.dataset import canonical_csv
from backends.domain.search import make_sampler, planned_trials
from backends.domain.selection import pick_best_trial
from backends.domain.spec import DeploySpec, SweepSpec
from backends.errors import SweepError, UploadError
from backends.memory.endpoints import MemoryEndpoints, MemoryPredictor
from backends.domain.realized import LabelledAnswer
from backends.domain.shadow import ServedAnswer, WatchSample
from backends.memory.faults import Faults
from backends.memory.registry import MemoryRegistry, TrainedModel
from src.features import DatasetSchema, read_training_csv

logger = logging.getLogger(__name__)

# What a trial may raise on a bad parameter combination: that trial fails, the sweep goes on (as locally).
TRIAL_ERRORS = (ValueError, TypeError, KeyError, ArithmeticError)


class InMemoryBackend(Backend):
    name = "memory"
    stores_files = False  # plots stay where the reports wrote them

    def __init__(self, scratch: Path | str | None = None, *, faults: Faults | None = None) -> None:
        """``scratch``: where uploaded data and cached results go (default: a new temporary folder);
        ``faults``: errors to raise at a stage's next call (tests inject failures this way)."""
        self.scratch = Path(scratch) if scratch else Path(tempfile.mkdtemp(prefix="heartflow-memory-"))
        self.faults = faults or Faults()
        self.registry = MemoryRegistry()
        self.endpoints = MemoryEndpoints(self.registry, self.faults)
        self._id = uuid.uuid4().hex[:12]
        self._sweeps: dict[str, SweepResult] = {}
        self._trained: dict[str, TrainedModel] = {}  # trial run id -> its fitted model
        self._scores: dict[tuple[str, str], list[float]] = {}
        self._gates: dict[tuple[str, str], dict[str, Any]] = {}
        self.files: dict[str, dict[str, bytes]] = {}  # run id -> file name -> bytes (attach_files)

    # ---- upload -------------------------------------------------------------------------------------
    def upload(self, train: pd.DataFrame) -> DataRef:
        self.faults.check("upload")
        payload = canonical_csv(train)
        sha = hashlib.sha256(payload).hexdigest()
        target = self.scratch / "data" / sha / "train.csv"
        if not target.exists():
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_suffix(".partial")
                partial.write_bytes(payload)
                partial.replace(target)
            except OSError as exc:
                raise UploadError(f"could not keep the training data under {target.parent}: {exc}") from exc
        return DataRef(uri=target.as_uri(), sha256=sha, rows=len(train), columns=tuple(map(str, train.columns)))

    # ---- sweep --------------------------------------------------------------------------------------
    def sweep(
        self, data: DataRef, spec: SweepSpec, schema: DatasetSchema,
        progress: Callable[[TrialResult, int, int], None] | None = None,
    ) -> SweepResult:
        """Every trial trained here, in order; a finished sweep of the same identity is returned as it was."""
        from src.model_train import train_trial

        self.faults.check("sweep")
        key = self.sweep_identity(data, spec, schema.to_json())
        if key in self._sweeps:
            return self._sweeps[key]
        path = self.scratch / "data" / data.sha256 / "train.csv"
        if not path.is_file():
            raise SweepError(f"no uploaded data {data.sha256[:12]} in this backend: upload it first")
        frame = read_training_csv(path, schema)
        sampler, total, trials = make_sampler(spec), planned_trials(spec), []
        validation = spec.validation
        while (asked := sampler.ask()) is not None:
            number, params = asked
            run_id = uuid.uuid4().hex
            try:
                fit = train_trial(frame, schema, params, seed=spec.seed, method=validation.method,
                                  test_size=validation.test_size, folds=validation.folds,
                                  random_state=validation.random_state)
            except TRIAL_ERRORS as exc:
                trial = TrialResult(number, run_id, params, {}, TrialStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
                sampler.tell(number, None)
            else:
                trial = TrialResult(number, run_id, params, fit.metrics, TrialStatus.COMPLETED, duration_s=fit.seconds)
                sampler.tell(number, fit.metrics.get(spec.primary_metric))
                self._trained[run_id] = TrainedModel(fit.model, schema, frame.loc[:, list(schema.features)].head(1))
            trials.append(trial)
            if progress is not None:
                progress(trial, len(trials), total)
        best = pick_best_trial(trials, spec.primary_metric, spec.goal)  # SweepError when none completed
        result = SweepResult(sweep_id=f"memory-sweep-{key[:12]}", primary_metric=spec.primary_metric, goal=spec.goal,
                             trials=tuple(trials), best=best, data=data, url=None)
        self._sweeps[key] = result
        return result

    # ---- registry -----------------------------------------------------------------------------------
    def register(self, sweep: SweepResult, model_name: str = DEFAULT_MODEL_NAME) -> ModelVersion:
        self.faults.check("register")
        return self.registry.register(model_name, sweep, self._trained.get(sweep.best.run_id))

    def get_model(self, model_name: str, version: str) -> ModelVersion:
        return self.registry.get(model_name, version)

    def tag_model(self, model: ModelVersion, tags: Mapping[str, str]) -> None:
        self.registry.tag(model, tags)

    # ---- endpoint -----------------------------------------------------------------------------------
    def rollout_policy(self) -> MemoryEndpoints:
        return self.endpoints

    def deploy(self, model: ModelVersion, spec: DeploySpec) -> Endpoint:
        return self.endpoints.deploy(model, spec)

    def endpoint_key(self, endpoint: Endpoint) -> str:
        return self.endpoints.key(endpoint.name)

    def predictor(self, endpoint: Endpoint, deployment: str | None = None, batch_size: int = 500,
                  purpose: str = "holdout") -> Predictor:
        return MemoryPredictor(self.endpoints, self.faults, endpoint, self.endpoint_key(endpoint), deployment, batch_size)

    def serving(self, endpoint_name: str) -> Endpoint | None:
        return self.endpoints.serving(endpoint_name)

    # ---- live traffic (``backends.domain.shadow.LiveTraffic``): the shadow and the watch ----------------
    def start_mirror(self, endpoint: Endpoint, candidate: str, percent: int) -> str:
        return self.endpoints.live.start_mirror(endpoint, candidate, percent)

    def stop_mirror(self, endpoint: Endpoint) -> None:
        self.endpoints.live.stop_mirror(endpoint)

    def mirrored_answers(self, endpoint: Endpoint, session: str) -> tuple[tuple[ServedAnswer, ...], int]:
        return self.endpoints.live.mirrored_answers(endpoint, session)

    def start_watch(self, endpoint: Endpoint, champion: str, previous: str) -> str:
        return self.endpoints.live.start_watch(endpoint, champion, previous)

    def watch_sample(self, endpoint: Endpoint, session: str) -> WatchSample:
        return self.endpoints.live.watch_sample(endpoint, session)

    def stop_watch(self, endpoint: Endpoint) -> None:
        self.endpoints.live.stop_watch(endpoint)

    # ---- labelled answers (``backends.domain.realized.LabelledAnswers``): feedback joined in memory ------
    def add_feedback(self, pairs: Sequence[tuple[str, object]]) -> int:
        """Labels ("0"/"1", the models' answers) by the request id a live request was given."""
        return self.endpoints.live.add_feedback(pairs)

    def labelled_answers(self, endpoint: Endpoint, deployment: str, since: datetime) -> tuple[LabelledAnswer, ...]:
        return self.endpoints.live.labelled_answers(endpoint, deployment, since)

    def history(self, endpoint_name: str) -> tuple[HistoryEntry, ...]:
        return self.endpoints.history(endpoint_name)

    def teardown(self, endpoint_name: str) -> None:
        self.faults.check("teardown")
        self.endpoints.remove(endpoint_name)

    # ---- tracking -----------------------------------------------------------------------------------
    def record_gate(self, model: ModelVersion, numbers: Mapping[str, Any]) -> None:
        self._gates[(model.name, model.version)] = dict(numbers)

    def gate_record(self, model: ModelVersion) -> dict[str, Any] | None:
        """The gate's numbers kept with ``model`` (what the local backend logs as gate_* metrics)."""
        return self._gates.get((model.name, model.version))

    def record_champion_score(self, model: ModelVersion, accuracy: float, rows: int) -> tuple[float, ...]:
        series = self._scores.setdefault((model.name, model.version), [])
        series.append(float(accuracy))
        return tuple(series)

    def attach_files(self, model: ModelVersion, files: Sequence[Path]) -> None:
        self._keep(model.source_run_id, files)

    def attach_sweep_files(self, sweep: SweepResult, files: Sequence[Path]) -> None:
        self._keep(sweep.sweep_id, files)

    def _keep(self, run_id: str, files: Sequence[Path]) -> None:
        self.files.setdefault(run_id, {}).update({file.name: file.read_bytes() for file in files})

    def store_identity(self) -> str:
        return f"{self.name}:{self._id}"

    def result_storage(self) -> Path:
        folder = self.scratch / "prefect-results"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def close(self) -> None:
        """Forget the scratch folder (data and cached results)."""
        shutil.rmtree(self.scratch, ignore_errors=True)
