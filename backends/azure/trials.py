"""Reading a finished sweep's trials into TrialResults.

The trials are the sweep's child jobs (``jobs.list(parent_job_name=...)``); their parameters and metrics
are what model_train.py logged to the workspace's MLflow tracking (``workspace.mlflow_tracking_uri``).
Two readers sit behind one interface (``TrialDataReader``: run id -> TrialData): MLflow's own client when
the azureml-mlflow plugin is installed (the documented way), else MLflow's REST API
(``/api/2.0/mlflow/runs/get``) with an Azure token. ``make_trial_reader`` picks one.

A trial whose data cannot be read because of a transient failure is never marked failed (that would
drop it and could register a worse model): the read raises TransientBackendError, so the stage retries
and re-attaches to the same sweep.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

from backends.azure.mlflow_auth import azureml_mlflow_installed
from backends.azure.resilience import TRANSIENT_STATUS, RetryPolicy, is_transient
from backends.base import TrialResult, TrialStatus
from backends.errors import ConfigurationError, TransientBackendError

logger = logging.getLogger(__name__)

COMPLETED_STATES = frozenset({"Completed"})
TERMINAL_STATES = frozenset({"Completed", "Failed", "Canceled", "NotResponding", "Paused"})
ARM_SCOPE = "https://management.azure.com/.default"


@dataclass(frozen=True)
class TrialData:
    """What one trial logged."""

    params: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    duration_s: float = 0.0


TrialDataReader = Callable[[str], TrialData]


def _number(value: str) -> Any:
    """MLflow stores params as text; give numbers back their type."""
    for cast in (int, float):
        try:
            return cast(value)
        except (TypeError, ValueError):
            continue
    return value


def https_tracking_uri(tracking_uri: str) -> str:
    """``azureml://<region>.api.azureml.ms/mlflow/...`` as the https URL it stands for."""
    if tracking_uri.startswith("azureml://"):
        return "https://" + tracking_uri[len("azureml://"):]
    return tracking_uri


@dataclass
class MlflowRestReader:
    """Params, metrics and duration of a run from an MLflow tracking server's REST API."""

    tracking_uri: str
    token: Callable[[], str] | None = None  # a bearer token for Azure; None for an open server
    timeout_s: float = 30.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    session: requests.Session = field(default_factory=requests.Session)

    def _get(self, run_id: str) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token()}"} if self.token else {}
        url = https_tracking_uri(self.tracking_uri).rstrip("/") + "/api/2.0/mlflow/runs/get"
        response = self.session.get(url, params={"run_id": run_id}, headers=headers, timeout=self.timeout_s)
        if response.status_code >= 400:
            error = HttpResponseError(message=f"MLflow runs/get {run_id}: HTTP {response.status_code} {response.text[:200]}")
            error.status_code = response.status_code
            error.response = response  # type: ignore[assignment] # its headers carry Retry-After
            raise error
        return dict(response.json().get("run", {}))

    def __call__(self, run_id: str) -> TrialData:
        run = self.retry.call(f"read trial {run_id} from MLflow", self._get, run_id)
        data, info = run.get("data", {}), run.get("info", {})
        params = {p["key"]: _number(p.get("value", "")) for p in data.get("params", [])}
        metrics = {m["key"]: float(m["value"]) for m in data.get("metrics", [])}
        start, end = info.get("start_time"), info.get("end_time")
        duration = (int(end) - int(start)) / 1000.0 if start and end else 0.0
        return TrialData(params=params, metrics=metrics, duration_s=duration)


@dataclass
class MlflowClientReader:
    """Params, metrics and duration of a run through ``mlflow.MlflowClient``. ``tracking_uri`` is one
    ``mlflow_auth.authenticated_tracking_uri`` returned, so azureml-mlflow signs in with heartflow's
    credential. MLflow's HTTP layer already retries with backoff and honours Retry-After, so this reader
    adds no retry of its own."""

    tracking_uri: str

    def __call__(self, run_id: str) -> TrialData:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        try:
            run = MlflowClient(tracking_uri=self.tracking_uri).get_run(run_id)
        except ClientAuthenticationError as exc:  # the credential itself could not sign in: no trial is to blame
            raise ConfigurationError(
                f"could not sign in to read trial {run_id} from the workspace's MLflow ({type(exc).__name__}): check "
                "`az login` or AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET (docs/azure.md)") from exc
        except MlflowException as exc:
            status = exc.get_http_status_code()
            if status in (401, 403):
                raise ConfigurationError(
                    f"MLflow refused to read trial {run_id} (HTTP {status}): check the AzureML Data Scientist role "
                    "on the workspace (docs/azure.md)") from exc
            if status in TRANSIENT_STATUS:
                raise TransientBackendError(f"reading trial {run_id} from MLflow failed after retries: {exc}") from exc
            raise KeyError(f"MLflow has no readable run {run_id}: {exc}") from exc
        start, end = run.info.start_time, run.info.end_time
        return TrialData(
            params={k: _number(v) for k, v in run.data.params.items()},
            metrics={k: float(v) for k, v in run.data.metrics.items()},
            duration_s=(int(end) - int(start)) / 1000.0 if start and end else 0.0,
        )


def make_trial_reader(tracking_uri: str, token: Callable[[], str], *, timeout_s: float, retry: RetryPolicy,
                      prefer_mlflow: bool | None = None) -> TrialDataReader:
    """MLflow's client when it can open the workspace's tracking URI (give it the URI
    ``mlflow_auth.authenticated_tracking_uri`` returned), else the REST reader signing with ``token``."""
    use_mlflow = azureml_mlflow_installed() if prefer_mlflow is None else prefer_mlflow
    if use_mlflow:
        return MlflowClientReader(tracking_uri=tracking_uri)
    return MlflowRestReader(tracking_uri=tracking_uri, token=token, timeout_s=timeout_s, retry=retry)


def trial_number(name: str, fallback: int) -> int:
    """Sweep trials are named ``<sweep>_<n>``; the n orders them."""
    match = re.search(r"_(\d+)$", name or "")
    return int(match.group(1)) if match else fallback


def _is_trial(job: Any) -> bool:
    return job is not None and not str(getattr(job, "name", "")).endswith("_preparation")


def read_trial(job: Any, reader: TrialDataReader, wanted: set[str], fallback_number: int = 0) -> TrialResult:
    """One child job as a TrialResult. A trial whose data cannot be read (not found, malformed) is kept,
    marked failed; a transient failure (after the reader's retries) raises TransientBackendError instead,
    so a network blip never turns a good trial into a dropped one."""
    number = trial_number(job.name, fallback_number)
    status = str(getattr(job, "status", "") or "Unknown")
    error = None if status in COMPLETED_STATES else f"trial ended {status}; see its logs in Studio: {getattr(job, 'studio_url', '') or job.name}"
    try:
        data = reader(job.name)
    except (HttpResponseError, requests.RequestException, ValueError, KeyError) as exc:
        if is_transient(exc):
            raise TransientBackendError(
                f"could not read trial {job.name} from MLflow after retries ({exc}); the sweep is kept and a "
                "retry re-attaches to it") from exc
        logger.warning("could not read trial %s from MLflow: %s", job.name, exc)
        data = TrialData(params=_params_from_inputs(job, wanted))
        error = error or f"its params and metrics could not be read from MLflow: {exc}"
    params = {k: v for k, v in data.params.items() if k in wanted} or _params_from_inputs(job, wanted)
    ok = status in COMPLETED_STATES and error is None
    return TrialResult(
        number=number, run_id=job.name, params=params, metrics=dict(data.metrics),
        status=TrialStatus.COMPLETED if ok else TrialStatus.FAILED, duration_s=data.duration_s, error=error,
    )


def read_trials(children: Iterable[Any], reader: TrialDataReader, search_space: Iterable[str]) -> tuple[TrialResult, ...]:
    """Every child job (in trial order) as a TrialResult."""
    wanted = set(search_space)
    jobs = sorted((j for j in children if _is_trial(j)), key=lambda j: trial_number(j.name, 10**9))
    return tuple(read_trial(job, reader, wanted, index) for index, job in enumerate(jobs))


class TrialWatcher:
    """Follows a running sweep's trials: counts by state for the progress log, and each trial read
    once, when it ends, and reported through ``progress(trial, finished, total)``."""

    def __init__(self, reader: Callable[[], TrialDataReader], search_space: Iterable[str], total: int,
                 progress: Callable[[TrialResult, int, int], None] | None = None) -> None:
        self._reader = reader
        self._wanted = set(search_space)
        self._total = total
        self._progress = progress
        self._done: dict[str, TrialResult] = {}

    def _absorb(self, children: list[Any], *, final: bool = False) -> None:
        for index, job in enumerate(sorted(children, key=lambda j: trial_number(j.name, 10**9))):
            if job.name in self._done or str(getattr(job, "status", "")) not in TERMINAL_STATES:
                continue
            try:
                trial = read_trial(job, self._reader(), self._wanted, index)
            except TransientBackendError as exc:
                if final:
                    raise
                logger.info("trial %s not read yet (%s); trying again at the next poll", job.name, exc)
                continue
            self._done[job.name] = trial
            if self._progress is not None:
                self._progress(trial, len(self._done), max(self._total, len(children)))

    def poll(self, children: Iterable[Any]) -> str:
        """Absorb newly ended trials; a summary such as ``3 Completed, 1 Running``."""
        jobs = [j for j in children if _is_trial(j)]
        self._absorb(jobs)
        counts = Counter(str(getattr(j, "status", "Unknown")) for j in jobs)
        return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))

    def all_trials(self, children: Iterable[Any]) -> tuple[TrialResult, ...]:
        """Every trial once the sweep has ended (a trial still listed as running counts as failed)."""
        jobs = [j for j in children if _is_trial(j)]
        self._absorb(jobs, final=True)
        for index, job in enumerate(jobs):
            if job.name not in self._done:
                self._done[job.name] = read_trial(job, self._reader(), self._wanted, index)
        return tuple(sorted(self._done.values(), key=lambda t: t.number))


def _params_from_inputs(job: Any, wanted: set[str]) -> dict[str, Any]:
    inputs = getattr(job, "inputs", None) or {}
    out = {}
    for name in wanted:
        value = inputs.get(name) if isinstance(inputs, Mapping) else None
        value = getattr(value, "default", getattr(value, "path", value))
        if value is not None and not hasattr(value, "__dict__"):
            out[name] = _number(str(value))
    return out
