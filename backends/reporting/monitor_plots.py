"""Plots of the monitor's figures over its runs (``MonitorReport.to_json`` lines, oldest first): drift per
column, the positive answer rate, realized against estimated performance, latency."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure

from backends.reporting.plots import DPI


def _times(history: Sequence[Mapping[str, Any]]) -> list[str]:
    return [str(h.get("until", ""))[5:16].replace("T", " ") for h in history]


def _axes(title: str, ylabel: str) -> tuple[Figure, Any]:
    figure = Figure(figsize=(6.4, 3.2), dpi=DPI, layout="constrained")
    ax = figure.add_subplot()
    ax.set_title(title, fontsize="medium")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return figure, ax


def _ticks(ax: Any, labels: list[str]) -> None:
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize="x-small")


def drift_over_time(history: Sequence[Mapping[str, Any]], major: float) -> Figure:
    """PSI of each column at each monitor run; the major-shift line."""
    figure, ax = _axes("Input drift per column (PSI against the training data)", "PSI")
    columns = sorted({row["column"] for h in history for row in h.get("drift", [])})
    for column in columns:
        values = [next((r["psi"] for r in h.get("drift", []) if r["column"] == column), float("nan")) for h in history]
        ax.plot(range(len(history)), values, marker="o", markersize=3, label=column)
    ax.axhline(major, color="tab:red", linestyle="--", linewidth=0.9)
    _ticks(ax, _times(history))
    if columns:
        ax.legend(fontsize="x-small", ncol=2, loc="upper left")
    return figure


def rate_over_time(history: Sequence[Mapping[str, Any]]) -> Figure:
    figure, ax = _axes("Share of positive answers", "positive rate")
    xs = range(len(history))
    live = [(h.get("prediction_drift") or {}).get("positive_rate") for h in history]
    ref = [(h.get("prediction_drift") or {}).get("reference_positive_rate") for h in history]
    ax.plot(xs, [float("nan") if v is None else v for v in live], marker="o", label="live")
    ax.plot(xs, [float("nan") if v is None else v for v in ref], linestyle="--", label="holdout")
    ax.set_ylim(0.0, 1.02)
    ax.legend(fontsize="small")
    _ticks(ax, _times(history))
    return figure


def performance_over_time(history: Sequence[Mapping[str, Any]], gate: float | None) -> Figure:
    metric = next((h["realized"]["metric"] for h in history if h.get("realized")), None) or next(
        (h["estimated"]["metric"] for h in history if h.get("estimated")), "accuracy")
    figure, ax = _axes(f"Realized against estimated {metric}", metric)
    xs = range(len(history))
    realized = [h["realized"]["value"] if h.get("realized") and h["realized"]["value"] is not None else float("nan") for h in history]
    estimated = [h["estimated"]["value"] if h.get("estimated") and h["estimated"]["value"] is not None else float("nan") for h in history]
    ax.plot(xs, realized, marker="o", label="realized (labelled rows)")
    ax.plot(xs, estimated, marker="s", linestyle=":", label="estimated (CBPE, unlabelled rows)")
    if gate is not None:
        ax.axhline(gate, color="tab:green", linestyle="--", linewidth=0.9, label=f"gate figure {gate:.3f}")
    ax.set_ylim(0.0, 1.02)
    ax.legend(fontsize="x-small", loc="lower left")
    _ticks(ax, _times(history))
    return figure


def latency_over_time(history: Sequence[Mapping[str, Any]]) -> Figure:
    figure, ax = _axes("Latency of answered requests", "ms")
    xs = range(len(history))
    for key in ("p50", "p99"):
        values = [(h.get("latency_ms") or {}).get(key) for h in history]
        ax.plot(xs, [float("nan") if v is None else v for v in values], marker="o", label=key)
    ax.legend(fontsize="small")
    _ticks(ax, _times(history))
    return figure
