"""Plain renderings of typed results for people: markdown and table rows for Prefect artifacts and the
CLI. No Prefect here, so they are tested directly."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from backends.base import Endpoint, EvalReport, GateFigures, HistoryEntry, ModelVersion, SweepResult, TrialStatus
from backends.domain.calibration import calibration
from backends.domain.selection import GateDecision
from backends.results import ShadowFigures


def leaderboard_rows(sweep: SweepResult) -> list[dict[str, Any]]:
    """One row per trial, best first (failed trials last), with every parameter and metric."""
    metric = sweep.primary_metric
    sign = -1 if sweep.goal == "maximize" else 1

    def order(t: Any) -> tuple[int, float, int]:
        value = t.metrics.get(metric)
        return (t.status is not TrialStatus.COMPLETED, sign * value if value is not None else 0.0, t.number)

    rows = []
    for rank, trial in enumerate(sorted(sweep.trials, key=order), start=1):
        row: dict[str, Any] = {"rank": rank, "trial": trial.number, "status": trial.status.value}
        row.update({k: trial.params[k] for k in sorted(trial.params)})
        row.update({k: round(float(v), 4) for k, v in sorted(trial.metrics.items())})
        row["duration_s"] = round(trial.duration_s, 3)
        row["run_id"] = trial.run_id
        if trial.error:
            row["error"] = trial.error[:200]
        rows.append(row)
    return rows


def confusion_markdown(report: EvalReport) -> str:
    (tn, fp), (fn, tp) = report.confusion_matrix
    return (
        "| | predicted 0 | predicted 1 |\n|---|---|---|\n"
        f"| **actual 0** | {tn} | {fp} |\n| **actual 1** | {fn} | {tp} |\n"
    )


def classification_markdown(report: EvalReport, plot_uri: str | None = None,
                            decision: GateDecision | None = None) -> str:
    lines = [
        f"# Holdout evaluation through endpoint `{report.endpoint}` (deployment `{report.deployment}`)",
        "",
        f"Model version **{report.model_version}**, {report.rows} holdout rows sent over HTTP in "
        f"{report.requests} request(s), median latency {report.latency_ms_p50:.1f} ms. "
        f"Accuracy **{report.accuracy:.4f}**.",
        "",
        *([metric_line(decision), ""] if decision is not None else []),
        *([f"Calibration: {calibrated.summary()}.", ""] if (calibrated := calibration(report.labels, report.scores)) else []),
        "```",
        report.report_text.rstrip(),
        "```",
        "",
        "## Confusion matrix",
        "",
        confusion_markdown(report),
    ]
    if plot_uri:
        lines += ["", f"Plot: `{plot_uri}`"]
    return "\n".join(lines)


def model_markdown(
    model: ModelVersion, sweep: SweepResult, decision: GateDecision | None = None,
    top_features: Sequence[str] = (), extra_links: Sequence[str] = (),
) -> str:
    best = sweep.best
    lines = [
        f"# Model `{model.name}` version {model.version}",
        "",
        "| field | value |",
        "|---|---|",
        f"| registry URI | `{model.uri}` |",
        f"| source trial | #{best.number} (run `{model.source_run_id}`) |",
        f"| sweep | `{model.sweep_id}` ({len(sweep.completed)} completed, {len(sweep.failed)} failed trials) |",
        f"| parameters | {', '.join(f'{k}={v}' for k, v in sorted(best.params.items()))} |",
        f"| validation {model.metric_name} | {model.metric_value:.4f} |",
        f"| decision threshold | {threshold_text(best.metrics.get('threshold'))} |",
        f"| training data sha256 | `{model.data_sha256}` ({sweep.data.rows} rows) |",
    ]
    if decision is not None:
        verdict = "PROMOTED to champion" if decision.promote else "REJECTED (champion keeps serving)"
        lines.append(f"| gate decision | **{verdict}**: {decision.reason} |")
        lines.append(f"| holdout against no skill | {metric_line(decision)} |")
        if decision.cv is not None:
            lines.append(f"| against the champion's configuration on the training folds | {decision.cv.summary()} |")
    if top_features:
        lines.append(f"| top features (permutation importance on the holdout) | {', '.join(top_features)} |")
    lines += [f"\n{link}" for link in extra_links]
    return "\n".join(lines)


def threshold_text(threshold: float | None) -> str:
    if threshold is None:
        return "0.5 (the model's own decision)"
    return f"{threshold:.4f} (stored with the model; the endpoint labels a row positive at or above it)"


def metric_line(decision: GateDecision) -> str:
    """The run's metric on the holdout beside its no-skill baseline and the one-sided test."""
    if decision.candidate_value is None or decision.baseline is None:
        return f"{decision.metric}: no figures"
    verdict = "beats" if decision.beats_baseline else "does NOT beat"
    p = "" if decision.baseline_p is None else f", one-sided p={decision.baseline_p:.3g}"
    return (f"Holdout {decision.metric} **{decision.candidate_value:.4f}** {verdict} the no-skill baseline "
            f"{decision.baseline:.4f} ({decision.rows} rows{p}, alpha {decision.alpha})")


def endpoint_markdown(endpoint: Endpoint) -> str:
    traffic = ", ".join(f"{d}: {p}%" for d, p in sorted(endpoint.traffic.items())) or "none"
    return "\n".join(
        [
            f"# Endpoint `{endpoint.name}`",
            "",
            f"- scoring URI: {endpoint.scoring_uri}",
            f"- serving: `{endpoint.model_name}` version {endpoint.model_version} (deployment `{endpoint.deployment}`)",
            f"- traffic: {traffic}",
            f"- key: {endpoint.key_hint}",
        ]
    )


def curl_example(endpoint: Endpoint, record: dict[str, Any]) -> str:
    import json

    body = json.dumps({"data": [record]})
    return (
        f"curl -s -X POST {endpoint.scoring_uri} \\\n"
        f"  -H \"Authorization: Bearer $HEARTFLOW_ENDPOINT_KEY\" -H 'Content-Type: application/json' \\\n"
        f"  -d '{body}'"
    )


def history_rows(entries: Sequence[HistoryEntry]) -> list[dict[str, Any]]:
    return [
        {
            "time": e.time,
            "event": e.event,
            "model": f"{e.model_name} v{e.model_version}",
            "deployment": e.deployment,
            "accuracy": None if e.accuracy is None else round(e.accuracy, 4),
            "champion_accuracy": None if e.champion_accuracy is None else round(e.champion_accuracy, 4),
            "reason": e.reason,
            "by": e.triggered_by,
            "gate": None if e.gate is None else gate_summary(e.gate),
            "shadow": None if e.shadow is None else shadow_summary(e.shadow),
            "watch": None if e.watch is None else f"{e.watch.outcome.replace('_', ' ')} ({e.watch.seconds:.0f} s, "
                                                  f"{e.watch.requests} requests, {e.watch.errors} errors)",
        }
        for e in entries
    ]


def shadow_summary(shadow: ShadowFigures) -> str:
    """The shadow's figures in one line."""
    share = "n/a" if shadow.disagreement is None else f"{100 * shadow.disagreement:.1f} %"
    return (f"{shadow.mirrored} mirrored in {shadow.seconds:.0f} s, disagreement {share}, candidate errors "
            f"{shadow.candidate_errors}, p99 candidate {shadow.candidate_p99_ms} ms vs champion {shadow.champion_p99_ms} ms"
            + ("" if shadow.enough else f" (fewer than {shadow.min_requests}: holdout alone)"))


def gate_summary(gate: GateFigures) -> str:
    """The gate's figures in one line: its mode, the compared rows, both accuracies, their difference and
    McNemar's p-values when a paired comparison ran."""
    parts = [f"{gate.rule} gate on {gate.rows} rows", f"candidate {gate.candidate_accuracy:.4f}"]
    if gate.champion_accuracy is None:
        parts.append("no champion")
    else:
        parts.append(f"champion {gate.champion_accuracy:.4f}")
    if gate.difference is not None:
        parts.append(f"difference {gate.difference:+.4f}")
    if gate.p_value is not None:
        worse = "" if gate.p_worse is None else f" (worse: p={gate.p_worse:.3g})"
        parts.append(f"McNemar p={gate.p_value:.3g}{worse}")
    if gate.tolerance is not None:
        parts.append(f"tolerance {gate.tolerance:.4f}")
    if gate.candidate_value is not None and gate.baseline is not None:
        parts.append(f"{gate.metric} {gate.candidate_value:.4f} vs no-skill {gate.baseline:.4f}"
                     + ("" if gate.baseline_p is None else f" (p={gate.baseline_p:.3g})"))
    if gate.cv_folds is not None and gate.cv_difference is not None:
        parts.append(f"training folds: {gate.cv_folds}, difference {gate.cv_difference:+.4f}"
                     + ("" if gate.cv_p_worse is None else f" (worse: p={gate.cv_p_worse:.3g})")
                     + ("" if gate.cv_power is None else f", power {gate.cv_power:.2f}"))
    return ", ".join(parts)
