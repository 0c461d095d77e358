"""One thin Prefect task per stage: names, retries, caching, artifacts and the run logger.
The work is in backends/.

Retries: the stages that talk to a network (upload, sweep, register, deploy, evaluate, importance) retry
transient failures with backoff (``tasks.retries``); a validation or configuration error fails at once.
The promotion gate does not retry: it changes traffic and the registry, and a half-applied change is
for a person to look at. Caching: upload and sweep are cached on computed keys (``tasks.caching``).
"""

from __future__ import annotations

import logging
import time
from uuid import UUID

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact

from backends.base import Backend, DataRef, Endpoint, EvalReport, ModelVersion, SweepResult, TrialResult
from backends.errors import HeartflowError
from backends.domain.convergence import converge
from backends.domain.dataset import PreparedData
from backends.client.importance import ImportanceResult, measure_importance
from backends.domain.search import planned_trials
from backends.domain.cv_gate import CvComparison
from backends.domain.selection import GateDecision, decide_gate
from backends.domain.shadow import DEFAULT_MAX_DISAGREEMENT, gate_with_shadow
from backends.results import ShadowFigures, WatchRecord
from backends.domain.spec import DeploySpec, SweepSpec
from tasks.caching import sweep_cache_key_fn, upload_cache_key_fn
from tasks.retries import BACKOFF_S, JITTER, retry_only_transient
from tasks.watch import validate_data

# Progress events for the CLI's progress bar (a plain logger: the CLI listens, Prefect is not needed).
progress_logger = logging.getLogger("heartflow.progress")

SWEEP_PROGRESS_KEY = "sweep-progress"
PROGRESS_EVERY_S = 1.0

__all__ = [
    "deploy_endpoint", "evaluate_endpoint", "measure_feature_importance", "promotion_gate",
    "register_best_model", "retry_only_transient", "run_sweep", "upload_data", "validate_data",
]


@task(name="upload-data", task_run_name="upload-data-{backend.name}-{prepared.train_sha256:.8}",
      retries=3, retry_delay_seconds=BACKOFF_S, retry_jitter_factor=JITTER, retry_condition_fn=retry_only_transient,
      cache_key_fn=upload_cache_key_fn, persist_result=True)
def upload_data(backend: Backend, prepared: PreparedData) -> DataRef:
    ref = backend.upload(prepared.train)
    get_run_logger().info("training data at %s (%d rows, sha256 %s)", ref.uri, ref.rows, ref.sha256[:12])
    return ref


@task(name="run-sweep", task_run_name="run-sweep-{backend.name}-{data.sha256:.8}-{spec.sampling}-{spec.max_total_trials}-trials",
      retries=2, retry_delay_seconds=BACKOFF_S, retry_jitter_factor=JITTER, retry_condition_fn=retry_only_transient,
      cache_key_fn=sweep_cache_key_fn, persist_result=True)
def run_sweep(backend: Backend, data: DataRef, spec: SweepSpec, prepared: PreparedData) -> SweepResult:
    """The whole sweep. Killed midway, the rerun reuses the finished trials (the backend resumes by the
    sweep's key); finished, the rerun is a cache hit and the task shows as Cached."""
    logger = get_run_logger()
    artifact_id = create_progress_artifact(
        0.0, key=SWEEP_PROGRESS_KEY, description=f"Finished trials of the sweep ({spec.max_total_trials} planned)"
    )
    assert isinstance(artifact_id, UUID)  # dispatched: from sync code the id, not a coroutine

    last_update = [0.0]

    def on_trial(trial: TrialResult, finished: int, total: int) -> None:
        metric = trial.metrics.get(spec.primary_metric)
        shown = f"{spec.primary_metric}={metric:.4f}" if metric is not None else f"FAILED: {trial.error}"
        logger.info("trial %d finished (%d/%d): %s %s", trial.number, finished, total, shown, dict(trial.params))
        # The UI's progress bar moves at most once a second (each update is a call the API serves while the
        # trials train beside it); the end always shows.
        if time.monotonic() - last_update[0] >= PROGRESS_EVERY_S or finished >= total:
            last_update[0] = time.monotonic()
            update_progress_artifact(artifact_id, 100.0 * finished / max(total, 1),
                                     description=f"{finished} of {total} trials finished")
        progress_logger.info("trial", extra={"finished": finished, "total": total, "trial": trial})

    # The CLI's progress bar starts now, not when the first trial ends.
    progress_logger.info("sweep", extra={"finished": 0, "total": planned_trials(spec)})
    result = backend.sweep(data, spec, prepared.schema, progress=on_trial)
    # A sweep read back whole from the store reports no trial as it finishes: show it done, not 0 of N.
    done = len(result.trials)
    update_progress_artifact(artifact_id, 100.0, description=f"{done} of {done} trials finished")
    progress_logger.info("sweep", extra={"finished": done, "total": done})
    best = result.best
    logger.info(
        "best trial #%d: %s=%.4f with %s (%d completed, %d failed)", best.number, result.primary_metric,
        best.metrics[result.primary_metric], dict(best.params), len(result.completed), len(result.failed),
    )
    return result


@task(name="register-best-model", task_run_name="register-{model_name}-from-trial-{sweep.best.number}",
      retries=2, retry_delay_seconds=BACKOFF_S, retry_jitter_factor=JITTER, retry_condition_fn=retry_only_transient)
def register_best_model(backend: Backend, sweep: SweepResult, model_name: str) -> ModelVersion:
    """Idempotent on both backends: a retry finds the version registered from the same trial."""
    model = backend.register(sweep, model_name=model_name)
    get_run_logger().info("registered %s version %s from trial run %s", model.name, model.version, model.source_run_id)
    return model


@task(name="converge-endpoint", task_run_name="converge-{endpoint_name}",
      retries=2, retry_delay_seconds=BACKOFF_S, retry_jitter_factor=JITTER, retry_condition_fn=retry_only_transient)
def converge_endpoint(backend: Backend, endpoint_name: str, model_name: str, triggered_by: str,
                      adopting: ModelVersion | None = None) -> tuple[str, ...]:
    """Holding the rollout slot: repair what a crashed run left on the endpoint (a candidate at 0 %, a promotion
    cut short), each repair logged and recorded (``backends.domain.convergence``); ``adopting`` is the version
    this run deploys next, never abandoned."""
    actions = converge(backend.rollout_policy(), endpoint_name, model_name, triggered_by, adopting)
    logger = get_run_logger()
    for action in actions:
        logger.warning("converged after a crash: %s", action)
    return actions


@task(name="deploy-endpoint", task_run_name="deploy-{model.name}-v{model.version}-to-{spec.endpoint_name}",
      retries=2, retry_delay_seconds=BACKOFF_S, retry_jitter_factor=JITTER, retry_condition_fn=retry_only_transient)
def deploy_endpoint(backend: Backend, model: ModelVersion, spec: DeploySpec) -> Endpoint:
    endpoint = backend.deploy(model, spec)
    get_run_logger().info(
        "deployment %s of endpoint %s serves %s v%s at %s (traffic %s)", endpoint.deployment, endpoint.name,
        model.name, model.version, endpoint.scoring_uri, dict(endpoint.traffic),
    )
    return endpoint


@task(name="evaluate-endpoint", task_run_name="evaluate-{endpoint.name}-{deployment}",
      retries=2, retry_delay_seconds=BACKOFF_S, retry_jitter_factor=JITTER, retry_condition_fn=retry_only_transient)
def evaluate_endpoint(backend: Backend, endpoint: Endpoint, holdout: pd.DataFrame, target: str, deployment: str) -> EvalReport:
    report = backend.evaluate(endpoint, holdout, target, deployment=deployment)
    get_run_logger().info(
        "holdout through %s/%s: accuracy %.4f on %d rows\n%s", endpoint.name, deployment, report.accuracy,
        report.rows, report.report_text,
    )
    return report


@task(name="promotion-gate", task_run_name="promotion-gate-{model.name}-v{model.version}")
def promotion_gate(
    backend: Backend, endpoint: Endpoint, model: ModelVersion, report: EvalReport, champion_report: EvalReport | None,
    tolerance: float | None, triggered_by: str, rule: str = "tolerance", alpha: float = 0.05,
    metric: str = "accuracy", cv: CvComparison | None = None,
    shadow: ShadowFigures | None = None, max_disagreement: float = DEFAULT_MAX_DISAGREEMENT,
    watch: WatchRecord | None = None,
) -> tuple[GateDecision, Endpoint]:
    """Promote the candidate (traffic, alias, old deployment removed) or reject it (champion keeps serving).
    The decision's numbers go to the run log, the ``gate-decision`` table artifact and the backend's
    tracking (``Backend.record_gate``)."""
    logger = get_run_logger()
    champion_tags = backend.get_model(model.name, champion_report.model_version).tags if champion_report else None
    decision = decide_gate(report, champion_report, rule=rule, tolerance=tolerance, alpha=alpha,
                           champion_tags=champion_tags, candidate_tags=model.tags, metric=metric, cv=cv)
    decision = gate_with_shadow(decision, shadow, max_disagreement)  # live traffic, when a shadow ran
    for warning in decision.warnings:
        logger.warning("gate: %s", warning)
    # The decision is carried out first (traffic, alias, history with the figures), then its figures go to the
    # tracking store: a store that fails then cannot leave the candidate deployed, neither promoted nor rejected.
    if decision.promote:
        endpoint = backend.promote(endpoint, model, report, reason=decision.reason, triggered_by=triggered_by,
                                   gate=decision.figures(), shadow=shadow, watch=watch)
        logger.info("promoted %s v%s: %s", model.name, model.version, decision.reason)
    else:
        backend.reject(endpoint, model, decision.reason, report=report, triggered_by=triggered_by,
                       gate=decision.figures(), shadow=shadow)
        logger.warning("rejected %s v%s: %s", model.name, model.version, decision.reason)
    create_table_artifact([decision.record()], key="gate-decision",
                          description=f"Promotion gate ({decision.rule}) for {model.name} v{model.version}")
    try:
        backend.record_gate(model, decision.record())
    except HeartflowError as exc:  # the decision stands and history holds its figures
        logger.warning("the gate's figures were not recorded on %s v%s's training run (%s); the decision stands "
                       "and `heartflow history` holds them", model.name, model.version, exc)
    return decision, endpoint


@task(name="feature-importance", task_run_name="feature-importance-{champion.name}-v{champion.version}-{deployment}",
      retries=2, retry_delay_seconds=BACKOFF_S, retry_jitter_factor=JITTER, retry_condition_fn=retry_only_transient)
def measure_feature_importance(
    backend: Backend, endpoint: Endpoint, deployment: str, champion: ModelVersion, holdout: pd.DataFrame, target: str,
    repeats: int = 5, seed: int = 0, batch_size: int = 500,
) -> ImportanceResult:
    """Permutation importance of the serving champion per original column, through the backend's predictor
    of the deployment (over HTTP for a live endpoint), on at most a bounded sample of the holdout."""
    result = measure_importance(
        backend.predictor(endpoint, deployment=deployment, batch_size=batch_size, purpose="importance"), holdout, target,
        model_name=champion.name, model_version=champion.version, deployment=deployment, repeats=repeats, seed=seed,
    )
    get_run_logger().info(
        "permutation importance of %s v%s (baseline accuracy %.4f, %d repeats, seed %d): top %s",
        champion.name, champion.version, result.baseline_accuracy, repeats, seed, ", ".join(result.top(5)) or "none",
    )
    return result
