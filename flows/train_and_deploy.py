"""The `train-and-deploy` flow: validate -> upload -> sweep -> register -> deploy -> evaluate -> gate.

The only place (with the CLI) that picks a backend.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from backends.base import Endpoint, EvalReport, ModelVersion, SweepResult
from backends.errors import PromotionRejected
from backends.factory import create_backend
from backends.selection import GateDecision
from backends.spec import PipelineSpec
from tasks.stages import (
    deploy_endpoint,
    evaluate_endpoint,
    promotion_gate,
    publish_reports,
    register_best_model,
    run_sweep,
    upload_data,
    validate_data,
)


@dataclass(frozen=True)
class RunSummary:
    sweep: SweepResult
    model: ModelVersion
    endpoint: Endpoint
    report: EvalReport
    champion_report: EvalReport | None
    decision: GateDecision


def _run_name() -> str:
    spec = flow_run.parameters.get("spec") or {}
    backend = spec.get("backend", "local") if isinstance(spec, dict) else getattr(spec, "backend", "local")
    data = (spec.get("data") or {}).get("path") if isinstance(spec, dict) else spec.data.path
    return f"{backend}-{'heart' if not data else str(data).rsplit('/', 1)[-1]}-{flow_run.scheduled_start_time:%Y%m%d-%H%M%S}"


@flow(name="train-and-deploy", flow_run_name=_run_name, log_prints=False, validate_parameters=True)
def train_and_deploy(spec: PipelineSpec = PipelineSpec()) -> RunSummary:  # noqa: B008 - pydantic default renders the UI form
    """Train a classifier with a hyperparameter sweep, deploy the best model beside the serving one,
    evaluate it through the live endpoint and promote it only if it is at least as good."""
    logger = get_run_logger()
    backend = create_backend(spec.backend, home=spec.home)
    prepared = validate_data(spec.data)
    data = upload_data(backend, prepared.train)
    sweep = run_sweep(backend, data, spec.sweep, prepared)
    model = register_best_model(backend, sweep, spec.model_name)
    endpoint = deploy_endpoint(backend, model, spec.deploy)
    target = prepared.schema.target
    report = evaluate_endpoint(backend, endpoint, prepared.holdout, target, endpoint.deployment)
    # The champion is measured on the same holdout, through the same endpoint, at the same time.
    rivals = [d for d, share in endpoint.traffic.items() if share > 0 and d != endpoint.deployment]
    champion_report = evaluate_endpoint(backend, endpoint, prepared.holdout, target, rivals[0]) if rivals else None
    triggered_by = f"flow run {flow_run.name or flow_run.id}"
    decision, endpoint = promotion_gate(
        backend, endpoint, model, report, champion_report, spec.deploy.promotion_tolerance, triggered_by
    )
    publish_reports(sweep, model, report, decision, endpoint)
    if spec.deploy.stop_endpoint and spec.backend == "local":
        backend.teardown(endpoint.name)
        logger.info("endpoint %s stopped (--stop-endpoint)", endpoint.name)
    if not decision.promote:
        raise PromotionRejected(
            f"{model.name} v{model.version} was rejected by the promotion gate: {decision.reason}. "
            f"The champion keeps serving on {endpoint.name}."
        )
    return RunSummary(sweep, model, endpoint, report, champion_report, decision)
