"""Outcomes that arrive after the prediction: (request id, label) pairs, read from a file or a request body,
checked once for both ``heartflow feedback FILE`` and ``POST /feedback``.

A label is given in the data's own labels (``Presence``, ``yes``, ``1``): the classes the serving model
answers with. Ids are joined to captured predictions later (``backends.domain.monitoring``); an id that
matches no captured prediction is kept and counted, never dropped.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends.errors import DataValidationError

_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
MAX_LABELS = 100_000


@dataclass(frozen=True)
class FeedbackReceipt:
    """What a batch of labels did: stored, matched to captured predictions, unknown ids (a sample)."""

    stored: int
    matched: int
    unknown: int
    unknown_ids: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"stored": self.stored, "matched": self.matched, "unknown": self.unknown,
                "unknown_ids": list(self.unknown_ids)}


def check_labels(items: Iterable[Any], classes: Sequence[Any] | None, origin: str) -> list[tuple[str, Any]]:
    """(request id, label) pairs from ``[{"request_id": ..., "label": ...}, ...]``; the label mapped onto the
    model's class of the same text (so "1" from a CSV is the class 1). One clear error for the first bad item."""
    known = {str(c): c for c in classes} if classes else None
    pairs: list[tuple[str, Any]] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise DataValidationError(f"{origin}: item {i} must be an object with request_id and label")
        rid, label = item.get("request_id"), item.get("label")
        if not isinstance(rid, str) or not _ID.match(rid.strip()):
            raise DataValidationError(f"{origin}: item {i} has no usable request_id (1-128 letters, digits, . _ : -)")
        if label is None or isinstance(label, (dict, list)) or (isinstance(label, str) and not label.strip()):
            raise DataValidationError(f"{origin}: item {i} ({rid}) has no label")
        if known is not None:
            text = str(label).strip()
            if text not in known:
                raise DataValidationError(f"{origin}: item {i} ({rid}) has label {text!r}, not one of the model's "
                                          f"classes {sorted(known)}: give labels as the data names them")
            label = known[text]
        pairs.append((rid.strip(), label))
        if len(pairs) > MAX_LABELS:
            raise DataValidationError(f"{origin}: more than {MAX_LABELS} labels in one batch: split the file")
    if not pairs:
        raise DataValidationError(f"{origin}: no labels found: give request_id and label per line")
    return pairs


def read_feedback_file(path: Path) -> list[dict[str, Any]]:
    """Items of a CSV (columns request_id, label) or JSON-lines file ({"request_id": ..., "label": ...} a line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DataValidationError(f"cannot read {path}: {exc.strerror or exc}") from exc
    stripped = text.lstrip()
    if stripped.startswith("{"):
        items = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    items.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DataValidationError(f"{path}: line {number} is not JSON ({exc.msg})") from exc
        return items
    reader = csv.DictReader(io.StringIO(text))
    fields = [f.strip() for f in reader.fieldnames or []]
    if "request_id" not in fields or "label" not in fields:
        raise DataValidationError(f"{path}: a CSV needs the columns request_id and label (found {', '.join(fields) or 'none'})")
    return [{(k or "").strip(): v for k, v in row.items()} for row in reader]


def receipt(pairs: Sequence[tuple[str, Any]], captured: set[str], sample: int = 20) -> FeedbackReceipt:
    unknown = [rid for rid, _ in pairs if rid not in captured]
    return FeedbackReceipt(len(pairs), len(pairs) - len(unknown), len(unknown), tuple(unknown[:sample]))
