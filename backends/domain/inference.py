"""Proposing a dataset schema from a table's types and cardinality, with the reason for each column.

``heartflow schema infer CSV --target COL`` prints it as commented YAML for the user to review and keep;
``heartflow run --data CSV --target COL`` without ``--schema`` uses it directly (and says so).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from backends.domain.metrics import ClassBalance, class_balance
from backends.domain.validation import FALSE_WORDS, TRUE_WORDS, is_missing, target_labels
from backends.errors import ConfigurationError
from src.features import DatasetSchema

MAX_INTEGER_LEVELS = 10  # whole-number columns with at most this many values are categories (codes)
MAX_TEXT_LEVELS = 50  # text columns with more distinct values than this (and than 5% of rows) are free text
ID_NAME = re.compile(r"(^|[^a-z])(id|uuid|guid|key|index|record|patient)([^a-z]|$)|_?id$", re.IGNORECASE)


@dataclass(frozen=True)
class ColumnDecision:
    column: str
    group: str  # numeric, categorical, passthrough, drop or target
    reason: str


@dataclass(frozen=True)
class InferredSchema:
    schema: DatasetSchema
    decisions: tuple[ColumnDecision, ...]
    balance: ClassBalance | None = None  # how the label splits, and the metric it calls for

    def to_yaml(self) -> str:
        """The schema as YAML, one comment per column saying why it is where it is."""
        return render_yaml(self)


def _decide(column: str, text: pd.Series) -> ColumnDecision:
    missing = is_missing(text)
    present = text[~missing]
    rows = len(text)
    distinct = present.nunique()
    gaps = f"; {int(missing.sum())} missing cell(s)" if missing.any() else ""
    if distinct == 0:
        return ColumnDecision(column, "drop", "every cell is empty")
    if distinct == 1:
        return ColumnDecision(column, "drop", f"constant: every filled cell is {present.iloc[0]!r}{gaps}")
    lowered = present.str.lower()
    if lowered.isin(TRUE_WORDS | FALSE_WORDS).all():
        return ColumnDecision(column, "categorical", f"text boolean ({', '.join(sorted(lowered.unique()))}){gaps}")
    numbers = pd.to_numeric(present, errors="coerce")
    numeric = bool(numbers.notna().all())
    whole = numeric and bool((numbers % 1 == 0).all())
    unique_per_row = distinct == rows and not missing.any()
    if unique_per_row and (not numeric or whole) and (ID_NAME.search(column) or not numeric or _is_sequence(numbers)):
        return ColumnDecision(column, "drop", f"ID-like: a different value in each of the {rows} rows")
    if whole and distinct <= MAX_INTEGER_LEVELS:
        return ColumnDecision(column, "categorical", f"whole numbers with {distinct} distinct values: codes{gaps}")
    if numeric:
        return ColumnDecision(column, "numeric", f"numbers, {distinct} distinct values{gaps}")
    if distinct <= max(MAX_TEXT_LEVELS, int(0.05 * rows)):
        return ColumnDecision(column, "categorical", f"text with {distinct} distinct values{gaps}")
    return ColumnDecision(column, "drop", f"free text: {distinct} distinct values in {rows} rows; too many to one-hot")


def _is_sequence(numbers: pd.Series) -> bool:
    ordered = numbers.sort_values().to_numpy()
    return len(ordered) > 1 and bool(((ordered[1:] - ordered[:-1]) == 1).all())


def infer_schema(raw: pd.DataFrame, target: str, positive_class: str | None = None) -> InferredSchema:
    """A schema for ``raw`` (every cell text, as read_table gives it) with ``target`` as the label."""
    columns = [str(c).strip() for c in raw.columns]
    raw = raw.set_axis(columns, axis=1)
    if target not in columns:
        close = [c for c in columns if c.lower() == target.lower()]
        hint = f" (did you mean {close[0]!r}? names are case-sensitive)" if close else ""
        raise ConfigurationError(f"target column {target!r} is not in the table{hint}; columns: {columns}")
    target_text = raw[target].astype(str).str.strip()
    values = sorted(set(target_text[~is_missing(target_text)]))
    labels, problem = target_labels(values, positive_class, target)
    if problem is not None:
        raise ConfigurationError(f"target {target!r}: {problem.message}; {problem.fix}")
    assert labels is not None
    decisions = [ColumnDecision(target, "target", f"the label: positive class {labels[1]!r}, negative {labels[0]!r}")]
    decisions += [_decide(c, raw[c].astype(str).str.strip()) for c in columns if c != target]
    groups = {g: tuple(d.column for d in decisions if d.group == g) for g in ("numeric", "categorical", "drop")}
    if not groups["numeric"] and not groups["categorical"]:
        raise ConfigurationError(f"no usable feature column in the table besides {target!r}: every other column would be dropped")
    schema = DatasetSchema(
        target=target, numeric=groups["numeric"], categorical=groups["categorical"], passthrough=(),
        drop=groups["drop"], positive_class=str(labels[1]),
    )
    labelled = target_text[~is_missing(target_text)]
    balance = class_balance(len(labelled), int((labelled == str(labels[1])).sum()), str(labels[1]))
    return InferredSchema(schema, tuple(decisions), balance)


def _wrap(text: str, width: int = 100) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width)


def _quote(name: str) -> str:
    import yaml

    return yaml.safe_dump(name, default_style=None).strip().removesuffix("...").strip()


def render_yaml(inferred: InferredSchema) -> str:
    schema = inferred.schema
    reasons = {d.column: d.reason for d in inferred.decisions}
    lines = [
        "# heartflow dataset schema, inferred from the table's types and cardinality: review it, then",
        "# `heartflow run --data CSV --schema THIS_FILE`. Groups: numeric (scaled), categorical (one-hot,",
        "# text or codes), passthrough (as they are), drop (ignored, such as IDs).",
        f"target: {_quote(schema.target)}  # {reasons[schema.target]}",
        f"positive_class: {_quote(str(schema.positive_class))}",
        "# missing cells: impute (inside the model: median for numbers, a category of their own for categories)",
        "# or reject (the file is refused); per group or column too, e.g. {default: impute, age: reject}",
        "missing: impute",
    ]
    if inferred.balance is not None:
        b = inferred.balance
        lines[4:4] = [
            f"# class balance: {b.positives} of {b.rows} labelled rows are {b.positive_label!r} ({b.share:.1%}); "
            f"recommended metric: {b.recommended}",
            *(f"#   {chunk}" for chunk in _wrap(b.why)),
        ]
    for group in ("numeric", "categorical", "passthrough", "drop"):
        names = getattr(schema, group)
        if not names:
            lines.append(f"{group}: []")
            continue
        lines.append(f"{group}:")
        lines += [f"  - {_quote(n)}  # {reasons.get(n, '')}" for n in names]
    return "\n".join(lines) + "\n"
