"""Per-column drift between a champion's training data (the reference) and a run's new data.

- Numeric columns: the Population Stability Index over ``BINS`` bins cut at the reference's quantiles
  (duplicate edges merged; the outer bins open to -inf/+inf, so new values outside the old range count).
- Categorical columns: PSI over the categories of both tables, and Pearson's chi-square test of
  homogeneity on the counts (its p-value is reported beside the PSI).

PSI = sum((cur% - ref%) * ln(cur% / ref%)), each share floored at ``EPSILON`` so an empty bin stays finite.
Thresholds (the usual credit-scoring reading of PSI): below 0.1 no change; 0.1 to 0.25 moderate (reported);
0.25 or more a major shift: the column is flagged as drifted. A categorical column with a chi-square p-value
below 0.001 is flagged too, but only when its PSI is at least 0.1 (with thousands of rows a tiny, harmless
shift is "significant").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

BINS = 10
EPSILON = 1e-4
# The champion's decay is scored through its endpoint on at most this many of the new rows (a seeded uniform
# sample): the accuracy's 95 % interval is then at most +-1 point, whatever the table's size, and the requests
# sent stay bounded (a million new rows would otherwise be 31,000 requests).
MAX_DECAY_ROWS = 10_000
MODERATE_PSI = 0.1
MAJOR_PSI = 0.25
CHI2_ALPHA = 0.001


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    kind: str  # numeric | categorical
    psi: float
    p_value: float | None  # chi-square test (categorical only)
    reference_mean: float | None
    current_mean: float | None
    level: str  # none | moderate | major
    drifted: bool


@dataclass(frozen=True)
class DriftReport:
    reference_rows: int
    current_rows: int
    columns: tuple[ColumnDrift, ...]

    @property
    def drifted(self) -> tuple[str, ...]:
        return tuple(c.column for c in self.columns if c.drifted)

    def rows_for_table(self) -> list[dict[str, Any]]:
        return [
            {"column": c.column, "kind": c.kind, "psi": round(c.psi, 4),
             "chi2_p_value": None if c.p_value is None else float(f"{c.p_value:.3g}"),
             "reference_mean": None if c.reference_mean is None else round(c.reference_mean, 4),
             "current_mean": None if c.current_mean is None else round(c.current_mean, 4),
             "level": c.level, "drifted": c.drifted}
            for c in sorted(self.columns, key=lambda c: -c.psi)
        ]

    def summary_markdown(self) -> str:
        flagged = ", ".join(f"`{c}`" for c in self.drifted) or "none"
        lines = [
            f"# Data drift: {len(self.drifted)} of {len(self.columns)} columns drifted",
            "",
            f"Reference: the champion's training data ({self.reference_rows} rows). New data: {self.current_rows} rows.",
            f"Drifted (PSI >= {MAJOR_PSI}, or categorical chi-square p < {CHI2_ALPHA} with PSI >= {MODERATE_PSI}): {flagged}.",
            "",
            "| column | kind | PSI | chi-square p | mean before | mean now | level |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in self.rows_for_table():
            mark = "**" if row["drifted"] else ""
            lines.append(
                f"| {mark}{row['column']}{mark} | {row['kind']} | {row['psi']:.4f} | "
                f"{'' if row['chi2_p_value'] is None else row['chi2_p_value']} | {row['reference_mean']} | "
                f"{row['current_mean']} | {row['level']} |"
            )
        return "\n".join(lines)


def _psi(reference: np.ndarray, current: np.ndarray) -> float:
    ref = np.maximum(reference / max(reference.sum(), 1), EPSILON)
    cur = np.maximum(current / max(current.sum(), 1), EPSILON)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def numeric_psi(reference: pd.Series, current: pd.Series, bins: int = BINS) -> float:
    """PSI with bins cut at the reference's quantiles; missing values left out on both sides."""
    ref = reference.astype(float).to_numpy()
    cur = current.astype(float).to_numpy()
    ref, cur = ref[~np.isnan(ref)], cur[~np.isnan(cur)]  # empty cells (imputed by the model) are no bin
    if not len(ref) or not len(cur):
        return 0.0
    inner = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    edges = np.concatenate(([-np.inf], inner, [np.inf]))
    # right-closed bins, so a value equal to an edge falls in the same bin in both tables
    ref_counts = np.histogram(ref, edges)[0] if len(edges) > 2 else np.array([len(ref)])
    cur_counts = np.histogram(cur, edges)[0] if len(edges) > 2 else np.array([len(cur)])
    return _psi(ref_counts.astype(float), cur_counts.astype(float))


def categorical_drift(reference: pd.Series, current: pd.Series) -> tuple[float, float | None]:
    """(PSI over the categories, chi-square p-value of the 2 x k table; None when it has one category)."""
    categories = sorted(set(reference.tolist()) | set(current.tolist()), key=str)
    ref_counts = reference.value_counts().reindex(categories, fill_value=0).to_numpy(dtype=float)
    cur_counts = current.value_counts().reindex(categories, fill_value=0).to_numpy(dtype=float)
    p_value: float | None = None
    if len(categories) > 1:
        from scipy.stats import chi2_contingency

        table = np.vstack([ref_counts, cur_counts])
        table = table[:, table.sum(axis=0) > 0]
        p_value = float(chi2_contingency(table, correction=False)[1])
    return _psi(ref_counts, cur_counts), p_value


def _level(psi: float) -> str:
    return "major" if psi >= MAJOR_PSI else "moderate" if psi >= MODERATE_PSI else "none"


def compare(reference: pd.DataFrame, current: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]) -> DriftReport:
    """Drift of every named column present in both tables."""
    results = []
    for column in numeric:
        if column in reference and column in current:
            psi = numeric_psi(reference[column], current[column])
            results.append(ColumnDrift(column, "numeric", psi, None, float(reference[column].mean()),
                                       float(current[column].mean()), _level(psi), psi >= MAJOR_PSI))
    for column in categorical:
        if column in reference and column in current:
            psi, p = categorical_drift(reference[column], current[column])
            drifted = psi >= MAJOR_PSI or (p is not None and p < CHI2_ALPHA and psi >= MODERATE_PSI)
            results.append(ColumnDrift(column, "categorical", psi, p, None, None, _level(psi), drifted))
    return DriftReport(len(reference), len(current), tuple(results))


def _all_numbers(column: pd.Series) -> bool:
    """Every filled cell reads as a number ("63", 63.0 and 63 alike)."""
    return bool(pd.to_numeric(column, errors="coerce").notna().sum() == column.notna().sum())


def _row_keys(frame: pd.DataFrame, numeric: set[str]) -> list[tuple[str, ...]]:
    """Each row as a tuple of comparable texts: numbers through float (so 63 and "63.0" match), everything
    else (text categories, text labels) as its text; an empty cell is one value whatever its spelling."""
    columns = []
    for name in frame.columns:
        column = frame[name]
        if name in numeric:
            column = pd.to_numeric(column, errors="coerce").astype(float)
        columns.append(["<empty>" if pd.isna(value) else str(value) for value in column.tolist()])
    return list(zip(*columns, strict=True)) if columns else []


def unseen_rows(frame: pd.DataFrame, reference: pd.DataFrame | None) -> pd.DataFrame:
    """Rows of ``frame`` that are not rows of ``reference`` (the champion never trained on them). Works on
    users' tables: text columns are compared as text, numbers as numbers."""
    if reference is None or not set(frame.columns) <= set(reference.columns):
        return frame
    reference = reference.loc[:, list(frame.columns)]
    numeric = {c for c in frame.columns if _all_numbers(frame[c]) and _all_numbers(reference[c])}
    seen = set(_row_keys(reference, numeric))
    keep = [key not in seen for key in _row_keys(frame, numeric)]
    return frame.loc[keep].reset_index(drop=True)


def decay_sample(rows: pd.DataFrame, seed: int, max_rows: int = MAX_DECAY_ROWS) -> pd.DataFrame:
    """At most ``max_rows`` of ``rows``: all of them, or a seeded uniform sample in their order."""
    if len(rows) <= max_rows:
        return rows
    chosen = np.sort(np.random.default_rng(seed).choice(len(rows), size=max_rows, replace=False))
    return rows.iloc[chosen].reset_index(drop=True)
