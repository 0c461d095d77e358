"""Parsing and checking a ``POST /score`` body against the model's features.

Every refusal is a RequestError with an HTTP status and a message naming the record and the column. The
rows come back as one float64 array when every feature is a number (NaN where a nullable column was
null) or when the reader has codes for every text feature (text_codes.py: the compiled forest's), else as
a DataFrame when some feature is text (categories as strings). Both refuse the same requests, alike.

This module runs on Azure's compute as part of a copy of src/, so it imports only third-party packages.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from src.model_files import Feature
from src.text_codes import TextColumn, category_text

try:  # orjson is faster; the standard library is the fallback on machines without it
    import orjson

    def loads(body: bytes | str) -> Any:
        return orjson.loads(body)

    def dumps(payload: Any) -> bytes:
        """Serialize a response payload to JSON bytes."""
        return orjson.dumps(payload)

    JSON_ERRORS: tuple[type[Exception], ...] = (orjson.JSONDecodeError, UnicodeDecodeError)
except ImportError:  # pragma: no cover - exercised only where orjson is missing

    def _reject_constant(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    def loads(body: bytes | str) -> Any:
        return json.loads(body, parse_constant=_reject_constant)

    def dumps(payload: Any) -> bytes:
        """Serialize a response payload to JSON bytes."""
        return json.dumps(payload, separators=(",", ":")).encode()

    JSON_ERRORS = (ValueError, UnicodeDecodeError)

_NON_JSON_TOKENS: dict[type, tuple[Any, ...]] = {bytes: (b"NaN", b"Infinity"), str: ("NaN", "Infinity")}


class RequestError(Exception):
    """A request the endpoint refuses: an HTTP status and a message naming the problem."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        shown = value if len(value) <= 20 else value[:17] + "..."
        return f"a string ({json.dumps(shown)})"
    if isinstance(value, (dict, list)):
        return "a nested " + ("object" if isinstance(value, dict) else "array")
    return type(value).__name__


def json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def parse(body: bytes | str) -> dict[str, Any]:
    if not body or (isinstance(body, (bytes, str)) and not body.strip()):
        raise RequestError(400, 'the request body is empty: send {"data": [{...}, ...]}')
    try:
        request = loads(body)
    except JSON_ERRORS as exc:
        hint = ""
        if isinstance(body, (bytes, str)) and any(t in body for t in _NON_JSON_TOKENS[type(body)]):
            hint = " (NaN and Infinity are not JSON numbers; send finite numbers)"
        raise RequestError(400, f"the request body is not valid JSON{hint}: {exc}") from None
    if type(request) is not dict:
        raise RequestError(400, f'the request body must be a JSON object {{"data": [...]}}, got {json_type(request)}')
    if "data" not in request:
        keys = ", ".join(sorted(map(str, request))) or "none"
        raise RequestError(400, f'the request body has no "data" field (fields: {keys})')
    return request


def wants_proba(request: dict[str, Any]) -> bool:
    flag = request.get("return_probabilities", False)
    if type(flag) is not bool:
        raise RequestError(400, f"return_probabilities must be true or false, got {describe(flag)}")
    return flag


class RowReader:
    """Turns the records of ``"data"`` into the model's input, refusing what does not fit the features.
    With ``text_codes`` for every text feature (by position) the input is one float64 array, text as codes."""

    def __init__(self, features: Sequence[Feature], max_rows: int, text_codes: dict[int, TextColumn] | None = None) -> None:
        self.features = tuple(features)
        self.names = tuple(f.name for f in self.features)
        self.max_rows = max_rows
        self._name_set = frozenset(self.names)
        self._integer = [f.integer for f in self.features]
        self._text = [f.text for f in self.features]
        self._nullable = [f.nullable for f in self.features]
        self.any_text = any(self._text)
        self.extras: set[str] = set()
        codes = text_codes or {}
        coded = self.any_text and all(j in codes for j, text in enumerate(self._text) if text)
        self._coded = [(j, codes[j]) for j, text in enumerate(self._text) if text] if coded else None

    def read(self, data: Any) -> Any:
        if type(data) is not list:
            raise RequestError(400, f'"data" must be a non-empty array of objects, got {json_type(data)}')
        n = len(data)
        if n == 0:
            raise RequestError(400, '"data" is empty: send at least one record')
        if n > self.max_rows:
            raise RequestError(413, f'"data" has {n} records, more than this endpoint accepts ({self.max_rows})')
        names, width = self.names, len(self.names)
        rows = []
        for i, record in enumerate(data):
            if type(record) is not dict:
                raise RequestError(400, f"data[{i}] must be an object of column: value, got {json_type(record)}")
            try:
                row = [record[name] for name in names]
            except KeyError:
                missing = [name for name in names if name not in record]
                raise RequestError(400, f"data[{i}] is missing {len(missing)} column(s): {', '.join(missing)}") from None
            for j, value in enumerate(row):
                kind = type(value)
                if kind is int:
                    continue
                if kind is float:
                    # Checked here rather than on the finished array: a 1-row request then costs no numpy
                    # pass at all beyond building the array (JSON ints are whole and finite already).
                    if value - value != 0.0:  # inf or -inf (JSON has no NaN)
                        raise RequestError(400, f"data[{i}].{names[j]} must be a finite number")
                    if self._integer[j] and not value.is_integer():
                        raise RequestError(400, f"data[{i}].{names[j]} must be an integer, got {value!r}")
                    continue
                if value is None and self._nullable[j]:
                    row[j] = np.nan
                elif kind is str and self._text[j]:
                    continue
                else:
                    wanted = "text or a number" if self._text[j] else "a number"
                    nulls = " or null" if self._nullable[j] else ""
                    raise RequestError(400, f"data[{i}].{names[j]} must be {wanted}{nulls}, got {describe(value)}")
            if len(record) > width:
                self.extras.update(k for k in record if k not in self._name_set)
            rows.append(row)
        if self._coded is not None:
            for row in rows:
                for j, column in self._coded:
                    row[j] = column.code(row[j])
            return self._array(rows)
        return self._frame(rows) if self.any_text else self._array(rows)

    def text_column(self, data: list[Any], j: int) -> list[Any]:
        """Column ``j`` of records ``read`` accepted, as the DataFrame path has it: text (a number written as
        text), NaN for null."""
        name = self.names[j]
        return [v if type(v) is str else np.nan if v is None else category_text(v) for v in (r[name] for r in data)]

    def _array(self, rows: list[list[Any]]) -> np.ndarray:
        try:
            x = np.array(rows, dtype=np.float64)
        except OverflowError:  # a JSON integer beyond float64 (an infinite float is refused row by row above)
            raise RequestError(400, "a value is too large to be a number the model can use") from None
        return x

    def _frame(self, rows: list[list[Any]]) -> Any:
        import pandas as pd

        columns: dict[str, Any] = {}
        for j, feature in enumerate(self.features):
            values = [row[j] for row in rows]
            if feature.text:
                columns[feature.name] = np.array(
                    [v if type(v) is str or v is np.nan else category_text(v) for v in values], dtype=object
                )
                continue
            try:
                column = np.array(values, dtype=np.float64)
            except OverflowError:
                raise RequestError(400, "a value is too large to be a number the model can use") from None
            if np.isinf(column).any():
                i = int(np.flatnonzero(np.isinf(column))[0])
                raise RequestError(400, f"data[{i}].{feature.name} must be a finite number")
            if feature.integer:
                bad = (column != np.floor(column)) & ~np.isnan(column)
                if bad.any():
                    i = int(np.flatnonzero(bad)[0])
                    raise RequestError(400, f"data[{i}].{feature.name} must be an integer, got {float(column[i])!r}")
                if not np.isnan(column).any():
                    column = column.astype(np.int64)
            columns[feature.name] = column
        return pd.DataFrame(columns)
