"""The `train-and-deploy` flow: validate -> upload -> sweep -> register -> deploy -> evaluate -> gate.

The only place (with the CLI) that picks a backend. What an operator sees in the Prefect UI:

- the flow run named after the backend and data, renamed as the data hash and the model version become
  known (``tasks.naming``); one task run per stage, named after what it works on;
- a failed stage ends the flow Failed with ``stage <task run> failed: <error type>: <message>``; a rejected
  promotion ends it Failed with the gate's reason;
- one rollout per endpoint at a time (``tasks.rollout``: a slot around deploy, evaluate, gate and importance
  that a crashed holder cannot keep);
- upload and sweep cached on computed keys (``tasks.caching``), so a rerun after a crash skips them;
- before training (``tasks.watch``): what was read (``data-source``), the serving champion scored on the
  new rows (``champion-decay``) and per-column drift (``data-drift``). When the training data is the
  champion's, the run ends Completed with ``no new data since <model> v<n> (sha256 ...)`` and changes
  nothing (``--force`` retrains); with ``retrain_on="drift"`` it also ends when no column drifted; when the
  sweep's best is the champion itself, nothing is redeployed. Events for automations: ``tasks.events``.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from dataclasses import dataclass
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, State
from pydantic.json_schema import SkipJsonSchema

from backends.base import Endpoint, EndpointWarmer, EvalReport, ModelVersion, SweepResult
from backends.results import ShadowFigures, WatchRecord
from backends.domain.lineage import drift_tags
from backends.domain.split import split_tag
from backends.errors import HeartflowError, PromotionRejected
from backends.factory import backend_for_spec
from backends.client.importance import ImportanceResult
from backends.domain.selection import GateDecision
from backends.domain.spec import PipelineSpec
from flows.secret_blocks import secrets_from_blocks
from tasks.caching import result_storage_for
from tasks.naming import data_run_name, initial_flow_run_name, model_run_name, rename_flow_run
from tasks.reports import publish_plan, report_model, report_sweep
from tasks import events
from tasks.rollout import rollout_slot
from tasks.shadow import close_watch, open_watch, shadow_candidate, watch_new_champion
from tasks.stages import (
    converge_endpoint,
    deploy_endpoint,
    evaluate_endpoint,
    measure_feature_importance,
    promotion_gate,
    register_best_model,
    run_sweep,
    upload_data,
    validate_data,
)
from tasks.decisions import compare_with_champion_on_folds
from tasks.watch import CheckedData, ChampionWatch, early_end_reason, report_watch, restore_champion, watch_champion

IMPORTANCE_REPEATS = 5


class StageFailed(HeartflowError):
    """A stage (task) of the flow failed; the message names the task run and carries its error."""

    def __init__(self, stage: str, cause: BaseException | None) -> None:
        self.stage = stage
        detail = f"{type(cause).__name__}: {cause}" if cause is not None else "no error recorded"
        super().__init__(f"stage {stage} failed: {detail}")


@dataclass(frozen=True)
class RunSummary:
    sweep: SweepResult
    model: ModelVersion
    endpoint: Endpoint
    report: EvalReport
    champion_report: EvalReport | None
    decision: GateDecision
    importance: ImportanceResult | None = None


class _FailedRunNames:
    """The names Prefect gave the task runs that failed, as the UI shows them: Prefect's public on_failure hook
    receives the task run. (Its name is not on the returned state, and the API may not have the run yet:
    Prefect 3 records task runs through events, asynchronously.)"""

    def __init__(self) -> None:
        self._names: dict[Any, str] = {}

    def watching(self, task: Any) -> Any:
        """``task`` with a hook that records the failed run's name."""
        return task.with_options(on_failure=[*task.on_failure_hooks, self._record])

    def _record(self, task: Any, task_run: Any, state: State[Any]) -> None:
        self._names[task_run.id] = task_run.name

    def name_of(self, task: Any, state: State[Any]) -> str:
        return self._names.get(state.state_details.task_run_id, task.name)


def _stage(task: Any, *args: Any, **kwargs: Any) -> tuple[Any, State[Any]]:
    """Run a task and return (result, state); a failed task raises StageFailed naming it, so the
    flow's final state message says which stage failed and why."""
    names = _FailedRunNames()
    state = names.watching(task)(*args, return_state=True, **kwargs)
    if not state.is_completed():
        cause = state.result(raise_on_failure=False)
        raise StageFailed(names.name_of(task, state), cause if isinstance(cause, BaseException) else None) from (
            cause if isinstance(cause, BaseException) else None
        )
    return state.result(), state


class _Background:
    """A task submitted to the flow's thread pool, finished (its failure raised as StageFailed) once."""

    def __init__(self, task: Any, *args: Any) -> None:
        self._task, self._names = task, _FailedRunNames()
        self._future = self._names.watching(task).submit(*args)
        self._result: Any = None
        self._done = False

    def wait(self) -> None:
        self._future.wait()

    def finish(self) -> Any:
        if not self._done:
            self._done = True
            self._future.wait()
            state = self._future.state
            if not state.is_completed():
                cause = state.result(raise_on_failure=False)
                error = cause if isinstance(cause, BaseException) else None
                raise StageFailed(self._names.name_of(self._task, state), error) from error
            self._result = state.result()
        return self._result


@flow(name="train-and-deploy", flow_run_name=initial_flow_run_name, log_prints=False, validate_parameters=True)
def train_and_deploy(
    spec: PipelineSpec = PipelineSpec(),  # noqa: B008 - pydantic default renders the UI form
    data: SkipJsonSchema[CheckedData | None] = None,
) -> RunSummary | State[Any] | None:
    """Train a classifier with a hyperparameter sweep, deploy the best model beside the serving one,
    evaluate it through the live endpoint and promote it only if it is at least as good.
    With ``dry_run`` (azure), only validate the data and publish the plan of what would be created.
    ``data``: the rows the CLI already read and validated for ``spec.data`` (not in the UI's form; a
    deployment's run reads its data itself)."""
    logger = get_run_logger()
    try:
        backend = backend_for_spec(spec, secrets=secrets_from_blocks(spec.azure_secret_blocks))
    except Exception as exc:
        raise StageFailed(f"open-backend-{spec.backend}", exc) from exc
    storage = result_storage_for(backend)
    upload, sweep_task = upload_data, run_sweep
    if storage is not None:
        upload, sweep_task = upload_data.with_options(result_storage=storage), run_sweep.with_options(result_storage=storage)

    # A dry run calls nothing remote: the champion's split keys are read for a real run only.
    loaded, _ = _stage(validate_data, spec.data, backend, None if spec.dry_run else spec.model_name, data)
    prepared = loaded.prepared
    rename_flow_run(data_run_name(spec.backend, prepared.train_sha256))
    if spec.dry_run:
        _stage(publish_plan, backend, spec, prepared.train_sha256)
        return None
    watch, _ = _stage(watch_champion, backend, spec, loaded)
    _stage(report_watch, spec, watch)
    early = _early_end(backend, spec, watch, prepared.train_sha256)
    if early is not None:
        return early
    # A first deploy's endpoint process starts during the sweep's tail (a backend that can); stopped in the
    # end if no deployment took it.
    warmer = backend if isinstance(backend, EndpointWarmer) else None
    if warmer is not None:
        warmer.warm_endpoint(spec.deploy)
    try:
        data, _ = _stage(upload, backend, prepared)
        sweep, sweep_state = _stage(sweep_task, backend, data, spec.sweep, prepared)
        # The model records how its training rows were chosen, so a later gate scores it only on rows it never saw.
        sweep = dataclasses.replace(sweep, data=dataclasses.replace(sweep.data, split=prepared.split or split_tag(spec.data.holdout_fraction)))
        # The sweep's plots render in a worker thread while the model registers and deploys (the deploy mostly
        # waits for the endpoint's process); the model report at the end takes them.
        sweep_report = _Background(report_sweep, backend, sweep, sweep_state.name == "Cached")
        try:
            outcome = _deploy_and_gate(spec, backend, loaded, watch, sweep, sweep_report, logger)
        except BaseException:
            sweep_report.wait()  # never left running; the stage that failed is the one to report
            raise
        sweep_report.finish()
        return outcome
    finally:
        if warmer is not None:
            warmer.release_warm_endpoint()


def _deploy_and_gate(
    spec: PipelineSpec, backend: Any, loaded: Any, watch: ChampionWatch, sweep: Any, sweep_report: _Background,
    logger: Any,
) -> RunSummary | State[Any] | None:
    prepared, source = loaded.prepared, loaded.source
    model, _ = _stage(register_best_model, backend, sweep, spec.model_name)
    rename_flow_run(model_run_name(spec.backend, prepared.train_sha256, model.name, model.version))
    backend.tag_model(model, {**source.tags(), **_drift_tags(watch)})
    if watch.champion is not None and watch.champion.source_run_id == model.source_run_id:
        message = (f"the sweep's best model is champion {model.name} v{model.version} (same trial run): "
                   "no new deployment")
        return _restore_or_keep(backend, spec, watch, message)
    if watch.champion is not None and watch.serving is None:
        logger.info("%s (champion v%s is put back in front before the candidate is deployed beside it)",
                    watch.situation, watch.champion.version)

    target = prepared.schema.target
    cv = None  # the champion's configuration on the candidate's folds: the gate's witness with power
    if watch.champion is not None:
        cv, _ = _stage(compare_with_champion_on_folds, sweep, watch.champion, prepared, spec.sweep,
                       spec.deploy.gate_alpha)
    triggered_by = f"flow run {flow_run.name or flow_run.id}"
    with (
        rollout_slot(spec.backend, spec.deploy.endpoint_name),
        backend.rollout_lock(spec.deploy.endpoint_name),
    ):
        _stage(converge_endpoint, backend, spec.deploy.endpoint_name, spec.model_name, triggered_by, model)
        endpoint, _ = _stage(deploy_endpoint, backend, model, spec.deploy)
        report, _ = _stage(evaluate_endpoint, backend, endpoint, prepared.holdout, target, endpoint.deployment)
        # The champion is measured on the same holdout, through the same endpoint, at the same time.
        rivals = [d for d, share in endpoint.traffic.items() if share > 0 and d != endpoint.deployment]
        champion_report = None
        if rivals:
            # Addressed to the serving deployment as the backend reports it, so the report names the version
            # that answered (the champion's), not the candidate's: the gate reads that version's tags.
            served = backend.serving(endpoint.name)
            rival = served if served is not None and served.deployment == rivals[0] else endpoint
            try:
                champion_report, _ = _stage(evaluate_endpoint, backend, rival, prepared.holdout, target, rivals[0])
            except StageFailed as exc:
                # The champion cannot be scored on this data (a column it needs is gone from the source): no
                # comparison is possible, so the candidate is rejected (decided, recorded), never left at 0 %.
                cause = exc.__cause__ if exc.__cause__ is not None else exc
                reason = f"the serving champion could not be scored on this data's holdout, so no comparison ({cause})"
                backend.reject(endpoint, model, reason, report=report, triggered_by=triggered_by)
                message = (f"{model.name} v{model.version} was rejected by the promotion gate: {reason}. The champion "
                           f"keeps serving on {endpoint.name}; if the data lost a column the champion needs, bring it back")
                return Failed(message=message, data=PromotionRejected(message))
        shadow, watching = _live_stages(spec, backend, endpoint, rivals, logger)
        watch_opened = datetime.now(UTC)  # labelled live answers count for the watch from here on
        session = open_watch(backend, endpoint, rivals[0]) if watching is not None else None
        promoted = False
        try:
            (decision, endpoint), _ = _stage(
                promotion_gate, backend, endpoint, model, report, champion_report, spec.deploy.promotion_tolerance,
                triggered_by, rule=spec.deploy.gate, alpha=spec.deploy.gate_alpha, metric=spec.sweep.metric, cv=cv,
                shadow=shadow, max_disagreement=spec.deploy.max_disagreement, watch=watching,
            )
            promoted = decision.promote
        finally:
            if session is not None and not promoted:  # nothing to watch: the champion kept its traffic
                close_watch(backend, endpoint)
        watched: WatchRecord | None = None
        if decision.promote:
            champion: ModelVersion | None = model
            if session is not None and champion_report is not None:
                previous = backend.get_model(model.name, champion_report.model_version)
                (watched, endpoint), _ = _stage(
                    watch_new_champion, backend, endpoint, model, previous, rivals[0], champion_report,
                    spec.deploy.watch_seconds, shadow.champion_p99_ms if shadow else None, session,
                    metric=decision.metric, gate_value=decision.candidate_value, since=watch_opened,
                )
                if watched.outcome == "rolled_back":
                    champion = previous
        elif not rivals:  # a rejected first version: it was removed and nothing serves
            champion = None
        else:  # the champion keeps serving on its own deployment
            champion = backend.champion(model.name)
            endpoint = dataclasses.replace(
                endpoint, deployment=rivals[0], model_version=champion.version if champion else "",
                traffic={rivals[0]: 100},
            )
        importance = None
        if champion is not None:
            importance, _ = _stage(
                measure_feature_importance, backend, endpoint, endpoint.deployment, champion, prepared.holdout, target,
                repeats=IMPORTANCE_REPEATS, seed=spec.sweep.seed, batch_size=min(500, spec.deploy.max_rows),
            )
        if spec.deploy.stop_endpoint and spec.backend == "local":
            backend.teardown(endpoint.name)
            logger.info("endpoint %s stopped (stop_endpoint)", endpoint.name)

    sweep_plots = sweep_report.finish()
    _stage(report_model, backend, sweep, model, report, decision, endpoint, importance, champion, sweep_plots)
    events.emit(events.PROMOTED if decision.promote else events.REJECTED, model=model.name, version=model.version,
                endpoint=endpoint.name, data_sha256=prepared.train_sha256,
                payload={"reason": decision.reason, "accuracy": report.accuracy, "source": source.uri,
                         "source_sha256": source.sha256, "metric": decision.metric,
                         "value": decision.candidate_value, "baseline": decision.baseline})
    if watched is not None and watched.outcome == "rolled_back":
        events.emit(events.ROLLED_BACK, model=model.name, version=endpoint.model_version, endpoint=endpoint.name,
                    data_sha256=prepared.train_sha256,
                    payload={"from_version": model.version, "reason": watched.reason, "by": "watch",
                             "check": watched.check, "realized": {"metric": watched.realized_metric,
                                                                  "value": watched.realized_value,
                                                                  "labelled": watched.realized_labelled,
                                                                  "p_value": watched.realized_p_value,
                                                                  "gate_value": watched.gate_value}})
        return Failed(message=f"{model.name} v{model.version} was promoted, then rolled back by the watch: "
                              f"{watched.reason}. v{endpoint.model_version} serves {endpoint.name} again.")
    if decision.floor_failed:
        serving = (f"champion v{champion.version} keeps serving on {endpoint.name}" if champion is not None
                   else f"nothing serves on {endpoint.name}")
        message = (f"{decision.reason.split('; against the champion')[0]}; {model.name} v{model.version} was "
                   f"rejected by the promotion gate; {serving}")
        return Failed(message=message, data=PromotionRejected(message))
    if not decision.promote:
        rejected = PromotionRejected(
            f"{model.name} v{model.version} was rejected by the promotion gate: {decision.reason}. "
            f"The champion keeps serving on {endpoint.name}."
        )
        # An expected outcome, not a crash: the run ends Failed with the gate's reason, without the
        # traceback Prefect logs for a raised exception; calling the flow still raises PromotionRejected.
        return Failed(message=str(rejected), data=rejected)
    return RunSummary(sweep, model, endpoint, report, champion_report, decision, importance)


def _live_stages(
    spec: PipelineSpec, backend: Any, endpoint: Endpoint, rivals: list[str], logger: Any,
) -> tuple[ShadowFigures | None, WatchRecord | None]:
    """The shadow's figures (run here, before the gate) and the watch the promotion opens, when asked for and
    a champion serves to compare with."""
    deploy = spec.deploy
    if not rivals:
        if deploy.shadow_seconds or deploy.watch_seconds:
            logger.info("no champion serves on %s: no shadow and no watch (nothing to compare with or go back to)",
                        endpoint.name)
        return None, None
    shadow = None
    if deploy.shadow_seconds:
        shadow, _ = _stage(shadow_candidate, backend, endpoint, endpoint.deployment, deploy.shadow_seconds,
                           deploy.shadow_min_requests)
    watching = WatchRecord("watching", float(deploy.watch_seconds)) if deploy.watch_seconds else None
    return shadow, watching


def _drift_tags(watch: ChampionWatch) -> dict[str, str]:
    if watch.drift is None:
        return {}
    return drift_tags({c.column: c.psi for c in watch.drift.columns}, watch.drift.drifted)


def _restore_or_keep(backend: Any, spec: PipelineSpec, watch: ChampionWatch, message: str) -> State[Any]:
    """End Completed with ``message``; what a crashed run left is repaired first, and when the champion exists
    but nothing serves, it is put back."""
    champion = watch.champion
    restored = None
    with (
        rollout_slot(spec.backend, spec.deploy.endpoint_name),
        backend.rollout_lock(spec.deploy.endpoint_name),
    ):
        repairs, _ = _stage(converge_endpoint, backend, spec.deploy.endpoint_name, spec.model_name,
                            f"flow run {flow_run.name or flow_run.id}")
        serving = backend.serving(spec.deploy.endpoint_name) if repairs else watch.serving
        if champion is not None and serving is None:
            restored, _ = _stage(restore_champion, backend, champion, spec.deploy)
            if spec.deploy.stop_endpoint and spec.backend == "local":
                backend.teardown(restored.name)
    if repairs:
        message += f"; repaired what a crashed run left: {'; '.join(repairs)}"
    if restored is not None and champion is not None:
        message += (f"; nothing served on {restored.name}: champion {champion.name} v{champion.version} "
                    f"restored on deployment {restored.deployment}")
    elif serving is not None and champion is not None and serving.model_version != champion.version:
        message += (f"; {serving.name} serves v{serving.model_version}, not champion v{champion.version}: left as it is "
                    "(see `heartflow status`)")
    elif not repairs:
        message += "; no deployment change"
    get_run_logger().info("%s", message)
    return Completed(message=message)


def _early_end(backend: Any, spec: PipelineSpec, watch: ChampionWatch, train_sha256: str) -> State[Any] | None:
    """The run's end before any training: the data is the champion's, or (retrain_on drift) nothing drifted."""
    champion = watch.champion
    if champion is None:
        return None
    if watch.drift is not None and watch.drift.drifted:
        events.emit(events.DATA_DRIFTED, model=champion.name, version=champion.version,
                    endpoint=spec.deploy.endpoint_name, data_sha256=train_sha256,
                    payload={"drifted": list(watch.drift.drifted)})
    reason = early_end_reason(watch, spec.data, train_sha256)
    if reason is None:
        return None
    if watch.unchanged:
        events.emit(events.DATA_UNCHANGED, model=champion.name, version=champion.version,
                    endpoint=spec.deploy.endpoint_name, data_sha256=train_sha256)
    return _restore_or_keep(backend, spec, watch, reason)
