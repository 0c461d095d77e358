"""One thin Prefect task per stage: retries, artifacts and the run logger. The work is in backends/."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from backends import reports
from backends.base import Backend, DataRef, Endpoint, EvalReport, ModelVersion, SweepResult, TrialResult
from backends.dataset import PreparedData, prepare_data
from backends.errors import TransientBackendError
from backends.selection import GateDecision, decide_promotion
from backends.spec import DataSpec, DeploySpec, SweepSpec

# Progress events for the CLI's progress bar (a plain logger: the CLI listens, Prefect is not needed).
progress_logger = logging.getLogger("heartflow.progress")


def retry_only_transient(task: Any, task_run: Any, state: Any) -> bool:  # noqa: ARG001 - Prefect's signature
    """Retry throttling, 5xx and dropped connections; never a validation or configuration error."""
    import requests

    try:
        state.result(raise_on_failure=True)
    except (TransientBackendError, requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError):
        return True
    except Exception:  # noqa: BLE001 - any other failure is final; Prefect hands us the state to judge
        return False
    return False


@task(name="validate-data", task_run_name="validate-data")
def validate_data(spec: DataSpec) -> PreparedData:
    logger = get_run_logger()
    prepared = prepare_data(spec.path, spec.schema_path, spec.holdout_fraction, spec.seed)
    logger.info(
        "data %s: %d rows valid; %d for training (sha256 %s), %d held out (never uploaded)",
        prepared.source, len(prepared.train) + len(prepared.holdout), len(prepared.train),
        prepared.train_sha256[:12], len(prepared.holdout),
    )
    return prepared


@task(name="upload-data", task_run_name="upload-data-{backend.name}", retries=3, retry_delay_seconds=[2, 8, 30],
      retry_condition_fn=retry_only_transient)
def upload_data(backend: Backend, train: pd.DataFrame) -> DataRef:
    ref = backend.upload(train)
    get_run_logger().info("training data at %s (%d rows, sha256 %s)", ref.uri, ref.rows, ref.sha256[:12])
    return ref


@task(name="run-sweep", task_run_name="run-sweep-{spec.sampling}-{spec.max_total_trials}")
def run_sweep(backend: Backend, data: DataRef, spec: SweepSpec, prepared: PreparedData) -> SweepResult:
    logger = get_run_logger()
    artifact_id = create_progress_artifact(0.0, key="sweep-progress", description="Finished trials of the sweep")

    def on_trial(trial: TrialResult, finished: int, total: int) -> None:
        metric = trial.metrics.get(spec.primary_metric)
        shown = f"{spec.primary_metric}={metric:.4f}" if metric is not None else f"FAILED: {trial.error}"
        logger.info("trial %d finished (%d/%d): %s %s", trial.number, finished, total, shown, dict(trial.params))
        update_progress_artifact(artifact_id, 100.0 * finished / max(total, 1))
        progress_logger.info("trial", extra={"finished": finished, "total": total, "trial": trial})

    result = backend.sweep(data, spec, prepared.schema, progress=on_trial)
    create_table_artifact(
        reports.leaderboard_rows(result), key="sweep-leaderboard",
        description=f"All {len(result.trials)} trials, best first, by {result.primary_metric}",
    )
    best = result.best
    logger.info(
        "best trial #%d: %s=%.4f with %s (%d completed, %d failed)", best.number, result.primary_metric,
        best.metrics[result.primary_metric], dict(best.params), len(result.completed), len(result.failed),
    )
    return result


@task(name="register-best-model", task_run_name="register-best-model")
def register_best_model(backend: Backend, sweep: SweepResult, model_name: str) -> ModelVersion:
    model = backend.register(sweep, model_name=model_name)  # type: ignore[call-arg]
    get_run_logger().info("registered %s version %s from trial run %s", model.name, model.version, model.source_run_id)
    return model


@task(name="deploy-endpoint", task_run_name="deploy-endpoint-{model.name}-v{model.version}", retries=2,
      retry_delay_seconds=[5, 30], retry_condition_fn=retry_only_transient)
def deploy_endpoint(backend: Backend, model: ModelVersion, spec: DeploySpec) -> Endpoint:
    endpoint = backend.deploy(model, spec)
    get_run_logger().info(
        "deployment %s of endpoint %s serves %s v%s at %s (traffic %s)", endpoint.deployment, endpoint.name,
        model.name, model.version, endpoint.scoring_uri, dict(endpoint.traffic),
    )
    return endpoint


@task(name="evaluate-endpoint", task_run_name="evaluate-endpoint-{deployment}", retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=retry_only_transient)
def evaluate_endpoint(backend: Backend, endpoint: Endpoint, holdout: pd.DataFrame, target: str, deployment: str) -> EvalReport:
    report = backend.evaluate(endpoint, holdout, target, deployment=deployment)
    get_run_logger().info(
        "holdout through %s/%s: accuracy %.4f on %d rows\n%s", endpoint.name, deployment, report.accuracy,
        report.rows, report.report_text,
    )
    return report


@task(name="promotion-gate", task_run_name="promotion-gate-v{model.version}")
def promotion_gate(
    backend: Backend, endpoint: Endpoint, model: ModelVersion, report: EvalReport, champion_report: EvalReport | None,
    tolerance: float, triggered_by: str,
) -> tuple[GateDecision, Endpoint]:
    """Promote the candidate (traffic, alias, old deployment removed) or reject it (champion keeps serving)."""
    logger = get_run_logger()
    decision = decide_promotion(report.accuracy, champion_report.accuracy if champion_report else None, tolerance)
    if decision.promote:
        endpoint = backend.promote(endpoint, model, report, reason=decision.reason, triggered_by=triggered_by)
        logger.info("promoted %s v%s: %s", model.name, model.version, decision.reason)
    else:
        backend.reject(endpoint, model, decision.reason, report=report, triggered_by=triggered_by)
        logger.warning("rejected %s v%s: %s", model.name, model.version, decision.reason)
    return decision, endpoint


def publish_reports(
    sweep: SweepResult, model: ModelVersion, report: EvalReport, decision: GateDecision, endpoint: Endpoint,
) -> None:
    """The keyed artifacts operators read in the UI (never the key)."""
    create_markdown_artifact(reports.classification_markdown(report), key="classification-report",
                             description=f"Holdout evaluation of v{model.version} through the endpoint")
    create_markdown_artifact(reports.model_markdown(model, sweep, decision), key="model-version",
                             description=f"{model.name} v{model.version}: lineage and gate decision")
    create_link_artifact(endpoint.scoring_uri, link_text=f"{endpoint.name} scoring URI", key="endpoint",
                         description=reports.endpoint_markdown(endpoint))
