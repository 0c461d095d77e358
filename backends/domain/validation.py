"""Checking a user's table against its schema: every problem at once, each with its column, row, value and
what to do, and the table turned into what the model trains on (the target as 0/1, booleans as 0/1,
missing cells of imputing columns kept as missing for the pipeline to fill).

Pure pandas. Row numbers count data rows from 1 (the header is line 1 of the file, so row N is line N+1).
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from backends.errors import DataValidationError
from src.features import DatasetSchema, coerce_categoricals

MIN_ROWS_PER_CLASS = 10
MAX_PROBLEMS_SHOWN = 20
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})
TRUE_WORDS = frozenset({"true", "yes", "y", "t"})
FALSE_WORDS = frozenset({"false", "no", "n", "f"})
POSITIVE_WORDS = frozenset({"1", "yes", "y", "true", "t", "presence", "present", "positive", "pos", "disease",
                            "sick", "abnormal", "malignant", "case"})
_INTEGER = re.compile(r"^[+-]?\d+(\.0*)?$")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the table: where, what and what to do."""

    column: str
    row: int | None
    value: str | None
    message: str
    fix: str

    def __str__(self) -> str:
        where = f"column {self.column!r}" + (f", row {self.row} (line {self.row + 1})" if self.row else "")
        shown = "" if not self.value else f" {self.value!r}"
        return f"{where}: {self.message}{shown}; {self.fix}"


@dataclass(frozen=True)
class ValidatedTable:
    frame: pd.DataFrame
    schema: DatasetSchema
    missing_cells: dict[str, int]  # per feature column, the cells the pipeline will impute


def is_missing(text: pd.Series) -> pd.Series:
    return text.str.lower().isin(MISSING_TOKENS)


def _cells(problems: list[Problem], column: str, mask: pd.Series, text: pd.Series, message: str, fix: str) -> None:
    for position in np.flatnonzero(mask.to_numpy())[:MAX_PROBLEMS_SHOWN]:
        problems.append(Problem(column, int(position) + 1, str(text.iloc[position]), message, fix))
    extra = int(mask.sum()) - MAX_PROBLEMS_SHOWN
    if extra > 0:
        problems.append(Problem(column, None, None, f"{extra} more such cell(s)", fix))


def _number_column(column: str, text: pd.Series, missing: pd.Series, problems: list[Problem]) -> pd.Series:
    lowered = text.str.lower()
    present = lowered[~missing]
    if len(present) and present.isin(TRUE_WORDS | FALSE_WORDS).all():
        return pd.Series(np.where(missing, np.nan, lowered.isin(TRUE_WORDS).astype(float)), index=text.index)
    values = pd.to_numeric(text.where(~missing), errors="coerce")
    bad = values.isna() & ~missing
    _cells(problems, column, bad, text, "is not a number:",
           "fix the value, or list the column under categorical (text values) or drop in the schema")
    infinite = np.isinf(values.fillna(0))
    _cells(problems, column, infinite, text, "is not a finite number:", "fix the value")
    return values.where(~infinite)


def target_labels(values: list[str], positive_class: str | None, target: str) -> tuple[tuple[Any, Any] | None, Problem | None]:
    """(negative, positive) from the target's two distinct values, or the problem that stops it."""
    if len(values) != 2:
        shown = sorted(values)[:10]
        return None, Problem(target, None, None, f"the target must have exactly two values; found {len(values)}: {shown}",
                             "a binary classifier needs two classes: merge the labels or pick another target column")
    if positive_class is not None:
        match = [v for v in values if v == positive_class] or [v for v in values if v.lower() == positive_class.lower()]
        if not match:
            return None, Problem(target, None, positive_class, f"positive_class is not one of the target's values {sorted(values)}:",
                                 "set positive_class (--positive-class) to one of them")
        positive = match[0]
    elif all(_INTEGER.match(v) for v in values) and {int(float(v)) for v in values} == {0, 1}:
        positive = next(v for v in values if int(float(v)) == 1)
    else:
        words = [v for v in values if v.lower() in POSITIVE_WORDS]
        if len(words) != 1:
            return None, Problem(target, None, None, f"cannot tell which of {sorted(values)} is the positive class",
                                 "set positive_class in the schema (or --positive-class LABEL)")
        positive = words[0]
    negative = next(v for v in values if v != positive)
    if all(_INTEGER.match(v) for v in values):
        return (int(float(negative)), int(float(positive))), None
    return (negative, positive), None


def check_table(raw: pd.DataFrame, schema: DatasetSchema, source: str) -> ValidatedTable:
    """Check ``raw`` (every cell text) against ``schema``; raise one DataValidationError listing every problem."""
    if raw.empty:
        raise DataValidationError(f"{source}: no data rows, only a header")
    columns = [str(c).strip() for c in raw.columns]
    raw = raw.set_axis(columns, axis=1).reset_index(drop=True)
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise DataValidationError(f"{source}: duplicated column names {dupes}: rename them so each is unique")
    problems: list[Problem] = []
    for column in [c for c in schema.columns if c not in columns]:
        problems.append(Problem(column, None, None, "is in the schema but not in the file",
                                "fix the name in the schema (names are case-sensitive) or add the column"))
    for column in [c for c in columns if c not in schema.columns and c not in schema.drop]:
        problems.append(Problem(column, None, None, "is in the file but in no group of the schema",
                                "add it to numeric, categorical, passthrough or drop"))
    if problems:
        _raise(source, problems, f"expected columns {list(schema.columns)} (use --schema or --target to describe another table)")
    out = pd.DataFrame(index=raw.index)
    missing_cells: dict[str, int] = {}
    for column in schema.features:
        text = raw[column].astype(str).str.strip()
        missing = is_missing(text)
        if missing.any():
            if schema.policy(column) == "reject":
                _cells(problems, column, missing, text, "is empty",
                       "fill the cell, remove the row, or set missing: impute for this column in the schema")
            else:
                missing_cells[column] = int(missing.sum())
        if column in schema.categorical:
            out[column] = text.where(~missing, np.nan)
        else:
            out[column] = _number_column(column, text, missing, problems)
    target_text = raw[schema.target].astype(str).str.strip()
    target_missing = is_missing(target_text)
    _cells(problems, schema.target, target_missing, target_text, "the label is empty",
           "fill in the label or remove the row (a missing label cannot be imputed)")
    labels, problem = target_labels(sorted(set(target_text[~target_missing])), schema.positive_class, schema.target)
    if problem is not None:
        problems.append(problem)
    if problems:
        _raise(source, problems)
    assert labels is not None
    positive = str(labels[1])
    present = target_text[~target_missing]
    positive_text = next(v for v in present.unique() if v == positive or _same_number(v, positive))
    out[schema.target] = (target_text == positive_text).astype(int)
    for label, count in sorted(Counter(out[schema.target]).items()):
        if count < MIN_ROWS_PER_CLASS:
            raise DataValidationError(
                f"{source}: target {schema.target!r} has only {count} row(s) of class {labels[label]!r}; "
                f"at least {MIN_ROWS_PER_CLASS} per class are needed to train, validate and hold out"
            )
    for column in schema.numeric + schema.passthrough:
        values = out[column]
        if not values.isna().any() and (values % 1 == 0).all():
            out[column] = values.astype("int64")
    out = coerce_categoricals(out, schema)
    resolved = dataclasses.replace(schema, labels=labels)
    return ValidatedTable(out.loc[:, list(schema.columns)], resolved, missing_cells)


def _same_number(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return False


def _raise(source: str, problems: list[Problem], hint: str = "") -> None:
    shown = problems[:MAX_PROBLEMS_SHOWN]
    lines = [f"{source}: {len(problems)} problem(s) in the table" + (f" (the first {len(shown)} shown)" if len(problems) > len(shown) else "")]
    lines += [f"  - {p}" for p in shown]
    if hint:
        lines.append(hint)
    error = DataValidationError("\n".join(lines))
    error.problems = tuple(problems)
    raise error
