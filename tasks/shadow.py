"""The shadow before the gate and the watch after a promotion, as their own task runs (the policy:
``backends.domain.shadow``). Each publishes a table artifact and a plot."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from backends.base import Backend, Endpoint, EvalReport, ModelVersion
from backends.domain.realized import LabelledAnswers, RealizedCheck, realized_check
from backends.domain.shadow import WATCH_MAX_ERROR_RATE, WATCH_P99_RATIO, LiveTraffic, WatchSample, run_shadow, run_watch
from backends.errors import ConfigurationError, HeartflowError
from backends.reporting import plots
from backends.results import ShadowFigures, WatchRecord

AZURE_MIRROR_PERCENT = 50  # Azure ML mirrors at most 50 % of an endpoint's traffic


def _live(backend: Backend) -> LiveTraffic:
    if not isinstance(backend, LiveTraffic):
        raise ConfigurationError(f"the {backend.name} backend cannot mirror or watch live traffic: "
                                 "run without --shadow and --watch")
    return backend


@task(name="shadow-candidate", task_run_name="shadow-{candidate}-of-{endpoint.name}-{seconds}s")
def shadow_candidate(backend: Backend, endpoint: Endpoint, candidate: str, seconds: int, min_requests: int) -> ShadowFigures:
    """Mirror live requests to ``candidate`` while the champion answers every client; the joined figures."""
    logger = get_run_logger()
    percent = AZURE_MIRROR_PERCENT if backend.name == "azure" else 100
    logger.info("mirroring %d %% of live requests on %s to %s for %d s", percent, endpoint.name, candidate, seconds)
    figures = run_shadow(_live(backend), endpoint, candidate, seconds, min_requests, percent=percent)
    record = dataclasses.asdict(figures)
    create_table_artifact([record], key="shadow-figures",
                          description=f"Shadow of {candidate} on {endpoint.name}: live requests answered by both sides")
    create_markdown_artifact(
        f"# Shadow of {candidate}\n\n{figures.mirrored} mirrored requests in {seconds} s "
        f"(at least {min_requests} needed). ![shadow]({plots.png_data_uri(plots.shadow_figure(figures))})",
        key="shadow-plot", description="Champion and candidate on the same live requests")
    logger.info("shadow: %d mirrored, disagreement %s, candidate errors %d, p99 candidate %s ms vs champion %s ms",
                figures.mirrored, figures.disagreement, figures.candidate_errors, figures.candidate_p99_ms,
                figures.champion_p99_ms)
    return figures


def open_watch(backend: Backend, endpoint: Endpoint, previous_deployment: str) -> str:
    """Start recording the candidate's live answers, with ``previous_deployment`` as its fallback, before the
    gate moves traffic: from the first live request the new champion takes, a failure is counted and answered
    by the warm previous champion. A rejected candidate's deployment is removed, and its watch with it."""
    return _live(backend).start_watch(endpoint, endpoint.deployment, previous_deployment)


def close_watch(backend: Backend, endpoint: Endpoint) -> None:
    _live(backend).stop_watch(endpoint)


@task(name="watch-new-champion", task_run_name="watch-{model.name}-v{model.version}-{seconds}s")
def watch_new_champion(
    backend: Backend, endpoint: Endpoint, model: ModelVersion, previous: ModelVersion, previous_deployment: str,
    previous_report: EvalReport, seconds: int, reference_p99_ms: float | None, session: str,
    metric: str = "accuracy", gate_value: float | None = None, since: datetime | None = None,
) -> tuple[WatchRecord, Endpoint]:
    """Watch the new champion (watch ``session``, opened before the promotion moved traffic, at ``since``)
    with ``previous`` warm at 0 %: roll back automatically (the rollout policy's promotion with event
    "rollback", by "watch") when a limit is crossed, its live errors, its p99, or its realized ``metric`` on
    labelled live rows against the gate's ``gate_value``; else remove the old deployment and record that the
    watch passed. Returns the record and the endpoint that serves afterwards."""
    logger = get_run_logger()
    points: list[tuple[float, int, int]] = []

    def on_sample(elapsed: float, sample: WatchSample) -> None:
        points.append((round(elapsed, 2), sample.requests, sample.errors))

    realized = _realized_reader(backend, endpoint, metric, gate_value, since or datetime.now(UTC), logger)
    record = run_watch(_live(backend), endpoint, session, seconds, reference_p99_ms, on_sample=on_sample,
                       realized=realized)
    if record.outcome == "rolled_back":
        restored = dataclasses.replace(endpoint, deployment=previous_deployment, model_version=previous.version)
        try:
            serving = backend.promote(restored, previous, previous_report, event="rollback", reason=record.reason,
                                      triggered_by="watch", watch=record)
        finally:
            close_watch(backend, endpoint)
        logger.warning("rolled back %s to %s v%s: %s", endpoint.name, previous.name, previous.version, record.reason)
    else:
        backend.rollout_policy().end_watch(endpoint, model, record)
        serving = endpoint
        logger.info("%s", record.reason)
    create_table_artifact(watch_table(record, reference_p99_ms), key="watch-result",
                          description=f"Watch of {model.name} v{model.version} after its promotion: {record.outcome}")
    title = f"Watch of v{model.version}: {record.outcome.replace('_', ' ')}"
    create_markdown_artifact(f"# {title}\n\n{record.reason}\n\n"
                             f"![watch]({plots.png_data_uri(plots.watch_figure(points, title))})",
                             key="watch-plot", description="The new champion's live requests and errors")
    return record, serving


def _realized_reader(backend: Backend, endpoint: Endpoint, metric: str, gate_value: float | None, since: datetime,
                     logger: Any) -> Callable[[], RealizedCheck | None] | None:
    """The realized-performance check the watch calls, or None when the backend reads no labelled answers."""
    if not isinstance(backend, LabelledAnswers):
        logger.info("the %s backend reads no labelled answers: the watch judges live errors and latency only",
                    backend.name)
        return None
    reader: LabelledAnswers = backend

    def check() -> RealizedCheck | None:
        try:
            answers = reader.labelled_answers(endpoint, endpoint.deployment, since)
        except (HeartflowError, OSError, ValueError) as exc:  # labels unreadable: errors and latency still judge
            logger.warning("the watch could not read labelled answers this time: %s", exc)
            return None
        if answers is None:
            return None
        return realized_check(answers, metric, gate_value)

    return check


def watch_table(record: WatchRecord, reference_p99_ms: float | None) -> list[dict[str, Any]]:
    """The watch-result artifact: one row per limit the watch judged, with its figure, reference and n."""
    error_rate = record.errors / record.requests if record.requests else None
    rows: list[dict[str, Any]] = [
        {"check": "server errors", "value": None if error_rate is None else round(error_rate, 4),
         "limit": f"> {WATCH_MAX_ERROR_RATE:g} of requests", "n": record.requests,
         "crossed": record.check == "errors"},
        {"check": "p99 scoring ms", "value": record.p99_ms,
         "limit": "none (no shadow)" if reference_p99_ms is None else f"> {WATCH_P99_RATIO:g} x {reference_p99_ms:.2f} ms",
         "n": record.requests, "crossed": record.check == "p99"},
    ]
    if record.realized_metric is not None:
        rows.append({"check": f"realized {record.realized_metric}", "value": record.realized_value,
                     "limit": f"significantly below gate {record.gate_value} (p = {record.realized_p_value})",
                     "n": record.realized_labelled, "crossed": record.check == "realized"})
    return rows
