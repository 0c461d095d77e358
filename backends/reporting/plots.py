"""Figures people would rather look at than read: the sweep's metric against each hyperparameter, the
confusion matrix and the permutation importance. Pure matplotlib (the object API, no pyplot and no global
backend switch), written as PNG files; no Prefect and no tracking here."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeGuard
from weakref import WeakKeyDictionary

from matplotlib.figure import Figure

from backends.base import EvalReport, SweepResult, TrialStatus
from backends.results import ShadowFigures
from backends.client.importance import FeatureImportance
from backends.domain.calibration import Calibration

DPI = 110


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


def sweep_figure(sweep: SweepResult) -> Figure:
    """One panel per hyperparameter: the primary metric of every completed trial against its value.
    Numeric parameters get a numeric axis; the others (and None) one slot per distinct value. The best
    trial is drawn as a star."""
    metric = sweep.primary_metric
    completed = [t for t in sweep.completed if metric in t.metrics]
    names = sorted({name for t in sweep.trials for name in t.params})
    columns = min(2, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / columns))
    figure = Figure(figsize=(5.2 * columns, 3.4 * rows), dpi=DPI, layout="constrained")
    figure.suptitle(f"Sweep {sweep.sweep_id[:12]}: {metric} of {len(completed)} completed trials")
    axes = figure.subplots(rows, columns, squeeze=False)
    for index, name in enumerate(names):
        ax = axes[index // columns][index % columns]
        values = [t.params.get(name) for t in completed]
        scores = [float(t.metrics[metric]) for t in completed]
        numbers = [v for v in values if _is_number(v)]
        if values and len(numbers) == len(values):
            xs: list[float] = [float(v) for v in numbers]
        else:
            labels = sorted({repr(v) if not isinstance(v, str) else v for v in values})
            slot = {label: i for i, label in enumerate(labels)}
            xs = [float(slot[repr(v) if not isinstance(v, str) else v]) for v in values]
            ax.set_xticks(range(len(labels)), labels)
        ax.scatter(xs, scores, alpha=0.7, color="tab:blue", label="trial")
        best = sweep.best
        if best in completed:
            i = completed.index(best)
            ax.scatter([xs[i]], [scores[i]], marker="*", s=220, color="tab:red", label=f"best (#{best.number})")
        ax.set_xlabel(name)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        if index == 0:
            ax.legend(loc="lower right", fontsize="small")
    for index in range(len(names), rows * columns):
        axes[index // columns][index % columns].set_visible(False)
    failed = [t for t in sweep.trials if t.status is TrialStatus.FAILED]
    if failed:
        figure.supxlabel(f"{len(failed)} failed trial(s) not shown", fontsize="small")
    return figure


def confusion_figure(report: EvalReport) -> Figure:
    """The 2x2 confusion matrix of a holdout evaluation, counts written in the cells."""
    figure = Figure(figsize=(4.2, 3.8), dpi=DPI, layout="constrained")
    ax = figure.add_subplot()
    matrix = [list(row) for row in report.confusion_matrix]
    image = ax.imshow(matrix, cmap="Blues")
    peak = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center", fontsize=14,
                    color="white" if count > peak / 2 else "black")
    ax.set_xticks([0, 1], ["predicted 0", "predicted 1"])
    ax.set_yticks([0, 1], ["actual 0", "actual 1"])
    ax.set_title(f"v{report.model_version} on {report.deployment}: accuracy {report.accuracy:.3f} ({report.rows} rows)",
                 fontsize="medium")
    figure.colorbar(image, ax=ax, shrink=0.8)
    return figure


def importance_figure(importances: Sequence[FeatureImportance], title: str) -> Figure:
    """Horizontal bars: mean accuracy drop per original column, with the spread over repeats."""
    ordered = sorted(importances, key=lambda f: f.mean_drop)
    figure = Figure(figsize=(6.0, 0.35 * len(ordered) + 1.4), dpi=DPI, layout="constrained")
    ax = figure.add_subplot()
    ax.barh([f.column for f in ordered], [f.mean_drop for f in ordered], xerr=[f.std_drop for f in ordered],
            color=["tab:green" if f.mean_drop > 0 else "tab:gray" for f in ordered], capsize=3)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("holdout accuracy drop when the column is shuffled")
    ax.set_title(title, fontsize="medium")
    ax.grid(axis="x", alpha=0.3)
    return figure


def decay_figure(scores: Sequence[float], title: str) -> Figure:
    """The champion's accuracy on each run's new data, run after run."""
    figure = Figure(figsize=(6.0, 3.2), dpi=DPI, layout="constrained")
    ax = figure.add_subplot()
    runs = list(range(1, len(scores) + 1))
    ax.plot(runs, list(scores), marker="o", color="tab:blue")
    ax.set_xlabel("run (scoring of new data)")
    ax.set_ylabel("accuracy")
    ax.set_xticks(runs)
    ax.set_ylim(0.0, 1.02)
    ax.set_title(title, fontsize="medium")
    ax.grid(alpha=0.3)
    return figure


def drift_figure(columns: Sequence[tuple[str, float, bool]], major: float, moderate: float) -> Figure:
    """PSI per column (name, psi, drifted), with the moderate and major thresholds."""
    ordered = sorted(columns, key=lambda c: c[1])
    figure = Figure(figsize=(6.0, 0.32 * len(ordered) + 1.4), dpi=DPI, layout="constrained")
    ax = figure.add_subplot()
    ax.barh([c[0] for c in ordered], [c[1] for c in ordered],
            color=["tab:red" if c[2] else "tab:gray" for c in ordered])
    ax.axvline(moderate, color="tab:orange", linestyle="--", linewidth=0.9, label=f"moderate ({moderate})")
    ax.axvline(major, color="tab:red", linestyle="--", linewidth=0.9, label=f"major ({major})")
    ax.set_xlabel("population stability index (PSI)")
    ax.set_title("Drift of the new data against the champion's training data", fontsize="medium")
    ax.legend(loc="lower right", fontsize="small")
    ax.grid(axis="x", alpha=0.3)
    return figure


def shadow_figure(figures: ShadowFigures) -> Figure:
    """Champion against candidate on the same mirrored requests: p50 and p99 scoring time."""
    figure = Figure(figsize=(6.0, 3.2), dpi=DPI, layout="constrained")
    ax = figure.add_subplot()
    sides = [("champion", figures.champion_p50_ms, figures.champion_p99_ms, "tab:blue"),
             ("candidate", figures.candidate_p50_ms, figures.candidate_p99_ms, "tab:orange")]
    for i, (name, p50, p99, colour) in enumerate(sides):
        ax.bar([i * 3, i * 3 + 1], [p50 or 0.0, p99 or 0.0], color=colour, label=name)
    ax.set_xticks([0, 1, 3, 4], ["p50", "p99", "p50", "p99"])
    ax.set_ylabel("scoring time (ms)")
    share = "n/a" if figures.disagreement is None else f"{100 * figures.disagreement:.1f} %"
    ax.set_title(f"Shadow: {figures.mirrored} mirrored requests, disagreement {share}, "
                 f"{figures.candidate_errors} candidate errors", fontsize="medium")
    ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    return figure


def watch_figure(points: Sequence[tuple[float, int, int]], title: str) -> Figure:
    """The new champion's live requests and server errors, summed since the watch began (seconds, n, errors)."""
    figure = Figure(figsize=(6.0, 3.2), dpi=DPI, layout="constrained")
    ax = figure.add_subplot()
    ax.plot([p[0] for p in points], [p[1] for p in points], color="tab:blue", label="requests")
    ax.plot([p[0] for p in points], [p[2] for p in points], color="tab:red", label="server errors")
    ax.set_xlabel("seconds since the promotion")
    ax.set_ylabel("count")
    ax.set_title(title, fontsize="medium")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return figure


def reliability_figure(calibration: Calibration, title: str) -> Figure:
    """Observed share of positives against the mean predicted probability, per bin (the diagonal is
    perfect calibration); each point's size follows its rows."""
    figure = Figure(figsize=(4.6, 4.2), dpi=DPI, layout="constrained")
    ax = figure.subplots()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfectly calibrated")
    predicted = [b.mean_predicted for b in calibration.bins]
    observed = [b.observed for b in calibration.bins]
    sizes = [20 + 180 * b.rows / max(calibration.rows, 1) for b in calibration.bins]
    ax.plot(predicted, observed, color="tab:blue", linewidth=1)
    ax.scatter(predicted, observed, s=sizes, color="tab:blue", label="holdout bins")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean predicted probability of the positive class")
    ax.set_ylabel("observed share of positives")
    ax.set_title(f"{title}\nBrier {calibration.brier:.4f} (constant {calibration.brier_no_skill:.4f})", fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    return figure


def png_bytes(figure: Figure) -> bytes:
    """The figure rendered as PNG, once: the file and the inline copy of a plot are the same bytes, and
    rendering is most of a report's cost."""
    rendered = _RENDERED.get(figure)
    if rendered is None:
        import io

        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        rendered = _RENDERED[figure] = buffer.getvalue()
    return rendered


def png_data_uri(figure: Figure) -> str:
    """The figure as a ``data:image/png;base64,...`` URI, for markdown the Prefect UI renders inline."""
    import base64

    return "data:image/png;base64," + base64.b64encode(png_bytes(figure)).decode("ascii")


def save_png(figure: Figure, path: Path) -> Path:
    """Write ``figure`` as a PNG (parent folders created) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(figure))
    return path


# Each figure's PNG, kept while the figure lives (figures are not changed once drawn here).
_RENDERED: WeakKeyDictionary[Figure, bytes] = WeakKeyDictionary()
