"""The holdout split by a stable hash of each row's content.

A row's side (training or holdout) is a function of its values alone: not of the seed, not of the other
rows, not of the order of rows or columns. So a row keeps its side forever as the data grows, and a model
trained on an older table never saw a row that is on the holdout side today (with the same fraction).

The rule (``RULE``): a row's key is the sha256 of its ``column=value`` pairs, columns sorted by name and
every value written as the float it parses to (so ``3``, ``3.0`` and ``3.00`` are one value); its
position is the key's first 64 bits divided by 2**64, uniform on [0, 1); it is held out when its position
is below the holdout fraction. Identical rows share a key, so a duplicated row never sits on both sides.

Which columns a key hashes (``RULE_COLUMNS``): those the model is trained on (its features and target),
recorded with the model; the next run keys its rows by the champion's recorded columns, so a column added
to the table later moves no row between training and holdout. A champion split by the first rule (every
column of its table) is followed by keying on every column of the table, recorded by name from then on.

The trade-off: stability rules out an exact, stratified quota. Each class holds out the fraction only in
expectation (binomially: 303 rows at 10 % give 30 +- 5 holdout rows), and a row's side never depends on
its class's count. ``SplitInfo`` reports the realised sizes per class, and the split refuses a table on
which a side would miss a class.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from backends.domain.lineage import TAG_SPLIT as TAG_SPLIT  # the rule and its tag go together
from backends.errors import DataValidationError

RULE = "row-sha256-v1"  # keys over every column of the table (read from older models)
RULE_COLUMNS = "row-sha256-v2"  # keys over the columns named in the tag
ROW_KEY = "row_key"  # the name of the holdout's index: each row's content key
_SCALE = float(2**64)


def _value_text(value: object) -> str:
    try:
        return format(float(value), ".17g")  # type: ignore[arg-type] # any cell: float() decides, errors fall through
    except (TypeError, ValueError):
        return str(value)


def row_keys(frame: pd.DataFrame, columns: Iterable[str] | None = None) -> list[str]:
    """The content key (sha256 hex) of every row of ``frame``, in order, over ``columns`` (default: all)."""
    named = frame.set_axis(list(map(str, frame.columns)), axis=1)
    columns = sorted(map(str, frame.columns) if columns is None else columns)
    ordered = named.loc[:, columns]
    keys = []
    for values in ordered.itertuples(index=False, name=None):
        text = "\x1f".join(f"{c}={_value_text(v)}" for c, v in zip(columns, values, strict=True))
        keys.append(hashlib.sha256(text.encode("utf-8")).hexdigest())
    return keys


def position(key: str) -> float:
    """Where a row falls on [0, 1): the first 64 bits of its key."""
    return int(key[:16], 16) / _SCALE


def is_holdout(key: str, fraction: float) -> bool:
    return position(key) < fraction


def split_tag(fraction: float, key_columns: Sequence[str] | None = None) -> str:
    """The value recorded with a model: the rule, the fraction and the key columns that chose its training rows."""
    if key_columns is None:
        return f"{RULE};holdout_fraction={fraction!r}"
    return f"{RULE_COLUMNS};holdout_fraction={fraction!r};columns={json.dumps(sorted(key_columns))}"


@dataclass(frozen=True)
class SplitRecord:
    """A split tag read back: its fraction and its key columns (None: every column of the table, the first rule)."""

    fraction: float
    columns: tuple[str, ...] | None


def parse_split(value: str | None) -> SplitRecord | None:
    """A split tag written by either rule; None when absent or unreadable."""
    if not value:
        return None
    rule, _, rest = value.partition(";")
    fraction_part, _, columns_part = rest.partition(";")
    name, _, fraction = fraction_part.partition("=")
    if rule not in (RULE, RULE_COLUMNS) or name != "holdout_fraction":
        return None
    try:
        number = float(fraction)
    except ValueError:
        return None
    if rule == RULE:
        return SplitRecord(number, None)
    key, _, listed = columns_part.partition("=")
    try:
        columns = json.loads(listed) if key == "columns" else None
    except json.JSONDecodeError:
        return None
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        return None
    return SplitRecord(number, tuple(columns))


def parse_split_tag(value: str | None) -> float | None:
    """The holdout fraction of a split tag; None when absent or another rule."""
    record = parse_split(value)
    return None if record is None else record.fraction


def key_columns_for(champion_split: str | None, trained: Iterable[str], present: Iterable[str]) -> tuple[str, ...]:
    """The columns this run keys its rows by: the champion's when it recorded them and the table still has
    them all; every column of the table after a champion of the first rule (its own keys); else the columns
    the model is trained on (features and target)."""
    record, present = parse_split(champion_split), sorted(map(str, present))
    if record is not None and record.columns is not None and set(record.columns) <= set(present):
        return tuple(sorted(record.columns))
    if record is not None and record.columns is None:
        return tuple(present)
    return tuple(sorted(map(str, trained)))


def split_agrees(made_by: str | None, champion_split: str | None) -> bool:
    """Whether rows split by ``made_by`` (a split tag, made without knowing the champion) are keyed as
    ``key_columns_for`` would key them after the champion split by ``champion_split``: always without a
    champion record; never after a champion of the first rule (keyed by every column); else when both name
    the same columns."""
    record = parse_split(champion_split)
    if record is None:
        return True
    made = parse_split(made_by)
    return record.columns is not None and made is not None and made.columns == tuple(sorted(record.columns))


def unseen_rows(keys: Iterable[str], model_tags: Mapping[str, str],
                keys_split: str | None = None) -> tuple[frozenset[str], bool]:
    """The keys among ``keys`` that the model with ``model_tags`` cannot have trained on, and whether
    that is known. A model split by row hash trained only on rows at or above its own fraction, so a
    row below it was held out (or absent) when the model was trained. A model without the tag (trained
    before this rule), or whose key columns differ from those of ``keys`` (``keys_split``: the split tag
    the keys were made by), gives every key back with ``known=False``."""
    record = parse_split(model_tags.get(TAG_SPLIT))
    keys = frozenset(keys)
    ours = parse_split(keys_split)
    if record is None or (record.columns is not None and ours is not None and ours.columns != record.columns):
        return keys, False
    return frozenset(k for k in keys if is_holdout(k, record.fraction)), True


@dataclass(frozen=True)
class SplitInfo:
    rule: str
    fraction: float
    train_rows: int
    holdout_rows: int
    holdout_share_by_class: Mapping[int, float]  # class -> share of its rows held out
    tag: str = ""  # the split tag a model trained on these rows records (``split_tag``)

    def describe(self) -> str:
        shares = ", ".join(f"class {c}: {s:.1%}" for c, s in sorted(self.holdout_share_by_class.items()))
        return (f"{self.rule} at {self.fraction:.0%}: {self.holdout_rows} held out, {self.train_rows} for training "
                f"({shares} held out)")


def split_by_row_hash(
    frame: pd.DataFrame, target: str, fraction: float, key_columns: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, SplitInfo]:
    """(training rows, holdout rows indexed by their keys, what the split did). Rows keep their order; keys
    hash ``key_columns`` (default: every column)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"holdout fraction must be in (0, 1), not {fraction}")
    keys = row_keys(frame, key_columns)
    held = pd.Series([is_holdout(k, fraction) for k in keys], index=frame.index)
    train = frame.loc[~held].reset_index(drop=True)
    holdout = frame.loc[held].set_axis(pd.Index([k for k, h in zip(keys, held, strict=True) if h], name=ROW_KEY))
    labels = frame[target]
    shares = {int(c): float(held[labels == c].mean()) for c in sorted(labels.unique())}
    for side, part in (("holdout", holdout), ("training", train)):
        missing = sorted(set(shares) - set(part[target].unique().tolist()))
        if missing:
            raise DataValidationError(
                f"the {side} side of the {fraction:.0%} split by row hash has no row of class {missing}: "
                f"the table is too small for this holdout fraction; add rows or change the holdout fraction"
            )
    info = SplitInfo(RULE if key_columns is None else RULE_COLUMNS, fraction, len(train), len(holdout), shares,
                     split_tag(fraction, key_columns))
    return train, holdout, info
