"""Text categories as numbers, so the compiled forest can serve tables whose categories are words.

A fitted OneHotEncoder knows each text column's categories in order (``categories_``: strings, then NaN
last when training saw empty cells: scikit-learn 1.9 makes a missing value a category of its own). A value
becomes its position there as a float (0.0, 1.0, ...), the one-hot program compares with those positions,
and the result is exactly the encoder's: a known string sets its own column, a string the encoder never saw
sets none (``UNSEEN``, counted as unseen like today), and a null sets the missing category's column when
the encoder has one, else none (NaN: not unseen). A number sent for a text column is read as the table
would have written it (``category_text``) before it is looked up, as the DataFrame path does.

This module runs on Azure's compute as part of a copy of src/, so it imports only third-party packages.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


UNSEEN = -1.0  # matches no category: every code is a position, 0.0 or more


def category_text(value: int | float) -> str:
    """A number sent for a text category, written as the table would have it (3, not 3.0)."""
    if type(value) is int:
        return str(value)
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass(frozen=True)
class TextColumn:
    """One text column's codes: each known string's position in the encoder's categories, and the code of
    a null (the missing category's position, or NaN when training saw no empty cell)."""

    levels: tuple[str, ...]
    codes: dict[str, float]
    missing: float

    @classmethod
    def from_categories(cls, categories: Sequence[Any]) -> TextColumn | None:
        """From one column of ``OneHotEncoder.categories_``: strings, optionally a float NaN last. None for
        anything else (numbers, None as a category, a missing marker elsewhere, repeated strings)."""
        values = list(categories)
        missing = math.nan
        if values and isinstance(values[-1], float) and math.isnan(values[-1]):
            missing = float(len(values) - 1)
            values = values[:-1]
        if not all(type(v) is str for v in values) or len(set(values)) != len(values):
            return None
        return cls(tuple(values), {v: float(n) for n, v in enumerate(values)}, missing)

    @property
    def size(self) -> int:
        """How many one-hot columns the encoder gives this column (the missing category included)."""
        return len(self.levels) + (0 if math.isnan(self.missing) else 1)

    def code(self, value: Any) -> float:
        """The code of a checked request value: a string, a number for a text column, or NaN/None (null)."""
        if type(value) is str:
            return self.codes.get(value, UNSEEN)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return self.missing
        return self.codes.get(category_text(value), UNSEEN)
