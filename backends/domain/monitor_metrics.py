"""The monitor's figures as MLflow metrics, one set per monitor run on the serving model's training run (both
backends log the same names, step = the window's end in epoch seconds)."""

from __future__ import annotations

import re

from backends.domain.monitoring import MonitorReport

__all__ = ["monitor_metrics"]


def monitor_metrics(report: MonitorReport) -> dict[str, float | None]:
    """The figures MLflow keeps per monitor run (MLflow metric names: letters, digits, _ - . / and spaces)."""
    prediction = report.prediction_drift
    metrics: dict[str, float | None] = {
        "monitor_requests": float(report.requests), "monitor_errors": float(sum(report.errors.values())),
        "monitor_latency_p50_ms": report.latency_p50_ms, "monitor_latency_p99_ms": report.latency_p99_ms,
        "monitor_positive_rate": prediction.positive_rate, "monitor_score_psi": prediction.score_psi,
        "monitor_drifted_columns": float(len(report.drifted)),
    }
    if report.realized is not None:
        metrics[f"monitor_realized_{report.realized.metric}"] = report.realized.value
        metrics["monitor_labelled_rows"] = float(report.realized.rows)
    if report.estimated is not None:
        metrics[f"monitor_estimated_{report.estimated.metric}"] = report.estimated.value
    for column in report.drift.columns if report.drift is not None else ():
        metrics[f"monitor_psi.{re.sub(r'[^A-Za-z0-9_./ -]', '_', column.column)}"] = column.psi
    return metrics
