"""`heartflow history --json` and `heartflow status --json`: one JSON object per line, for scripts and alerts.

A history line holds the entry's fields (``gate``: the gate's figures, or null) plus what the model version
was trained on (``data_sha256``) and what was read for it (``source_uri``, ``source_version``,
``source_sha256``, ``source_rows``) when recorded.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence
from typing import Any

from backends.base import Backend, Endpoint, HistoryEntry, ModelVersion
from backends.errors import HeartflowError

SOURCE_FIELDS = ("source_uri", "source_version", "source_sha256", "source_rows")


def _lineage(model: ModelVersion | None) -> dict[str, Any]:
    if model is None:
        return {"data_sha256": None, **{f: None for f in SOURCE_FIELDS}}
    record: dict[str, Any] = {"data_sha256": model.data_sha256 or None}
    for field in SOURCE_FIELDS:
        value = model.tags.get(f"heartflow.{field}")
        record[field] = int(value) if field == "source_rows" and value is not None else value
    return record


def history_records(backend: Backend, entries: Sequence[HistoryEntry]) -> Iterator[str]:
    models: dict[tuple[str, str], ModelVersion | None] = {}
    for entry in entries:
        key = (entry.model_name, entry.model_version)
        if key not in models:
            try:
                models[key] = backend.get_model(*key)
            except HeartflowError:  # a version deleted from the registry still has its history line
                models[key] = None
        yield json.dumps({**dataclasses.asdict(entry), **_lineage(models[key])}, sort_keys=True)


def status_record(endpoint_name: str, endpoint: Endpoint | None, champion: ModelVersion | None,
                  problems: tuple[str, ...] = (), monitor: dict[str, Any] | None = None) -> str:
    """``problems``: what does not agree (``heartflow status``); ``monitor``: the last `heartflow monitor` figures
    (requests, drifted, realized, estimated...), or None."""
    record: dict[str, Any] = {
        "inconsistent": list(problems),
        "endpoint": endpoint_name, "serving": endpoint is not None,
        "deployment": endpoint.deployment if endpoint else None,
        "model": endpoint.model_name if endpoint else None,
        "model_version": endpoint.model_version if endpoint else None,
        "scoring_uri": endpoint.scoring_uri if endpoint else None,
        "traffic": dict(endpoint.traffic) if endpoint else {},
        "champion_version": champion.version if champion else None,
        "champion_serves": bool(endpoint and champion and endpoint.model_version == champion.version),
        **_lineage(champion),
        "monitor": None if monitor is None else {k: monitor.get(k) for k in (
            "until", "since", "model_version", "requests", "errors", "drifted", "prediction_drift", "realized",
            "estimated", "degraded")},
    }
    return json.dumps(record, sort_keys=True)
