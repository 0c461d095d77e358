"""The line format of the local endpoint's capture files: how the writer encodes a tick's answered requests
and how every reader gets one record per request back, whatever format wrote the file.

A capture file holds JSON lines of these kinds:

- ``scored-batch`` (format 2, written since the capture got cheaper): up to ``LINE_RECORDS`` answered
  requests of one writer tick, as columns: ``request_id``, ``time`` (epoch seconds), ``deployment``,
  ``model_name``, ``model_version``, ``latency_ms``, ``predictions`` (a list per request), ``rows`` (rows per
  request), ``probabilities`` (P(positive) of every row, requests one after the other; null where the model
  gives none), ``classes`` (a list per request) and ``requests`` (the validated request bodies as they came,
  only the signature's columns). One serialization a line, of lists and numpy columns, and the bodies
  spliced in unparsed: a record costs the writer a few list appends instead of a dict and a JSON encoding.
- ``scored`` (format 1), ``error``, ``rejected``, ``unsampled``: one record a line.

``expand`` turns a ``scored-batch`` line back into format 1's ``scored`` records; ``read_records`` yields those,
so monitoring and feedback read old and new files alike.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from src.request_validation import JSON_ERRORS, dumps, loads

try:  # orjson writes numpy columns without a list of Python floats in between
    import orjson

    def _dumps_columns(payload: dict[str, Any]) -> bytes:
        return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
except ImportError:  # pragma: no cover - the standard library's fallback

    def _dumps_columns(payload: dict[str, Any]) -> bytes:
        return dumps({k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in payload.items()})

BATCH_KIND = "scored-batch"
# Requests per batch line: large enough that the per-line cost vanishes, small enough that a line (about
# 5 kB a 31-row request) stays a few hundred kB: larger lines cost more in memory copies than they save.
LINE_RECORDS = 64
_LINE_BREAKS = (b"\n", b"\r")


class Ticket(Protocol):
    """What the writer reads of one answered request (``capture.Ticket``)."""

    request_id: bytes
    started: float
    deployment: str
    model_name: str
    model_version: str
    latency_ms: float
    scored: Any  # src.scoring.Scored


def batch_line(endpoint: str, tickets: Sequence[Ticket]) -> bytes:
    """One ``scored-batch`` line (without its newline) for answered requests (status 200, ``scored`` set)."""
    ids: list[str] = []
    times: list[float] = []
    deployments: list[str] = []
    names: list[str] = []
    versions: list[str] = []
    latency: list[float] = []
    predictions: list[Any] = []
    counts: list[int] = []
    proba: list[Any] = []
    classes: list[Any] = []
    bodies: list[bytes] = []
    for ticket in tickets:
        scored = ticket.scored
        assert scored is not None
        ids.append(ticket.request_id.decode("latin-1"))
        times.append(ticket.started)
        deployments.append(ticket.deployment)
        names.append(ticket.model_name)
        versions.append(ticket.model_version)
        latency.append(round(ticket.latency_ms, 3))
        predictions.append(scored.predictions)
        n = len(scored.predictions)
        counts.append(n)
        proba.append(scored.positive_proba if scored.positive_proba is not None else np.full(n, np.nan))
        classes.append(scored.classes)
        bodies.append(_request_json(scored))
    head = _dumps_columns({
        "kind": BATCH_KIND, "endpoint": endpoint, "request_id": ids, "time": times, "deployment": deployments,
        "model_name": names, "model_version": versions, "latency_ms": latency, "predictions": predictions,
        "rows": counts, "probabilities": np.concatenate(proba) if proba else [], "classes": classes,
    })
    return head[:-1] + b',"requests":[' + b",".join(bodies) + b"]}"


def _request_json(scored: Any) -> bytes:
    """The validated request as one line of JSON: the body as it came when it is that (the common case, no
    parsing), else re-encoded (a body with line breaks, one whose records carried other columns)."""
    if scored.rows is not None:
        return dumps({"data": scored.rows})  # the signature's columns only: what else a client sent is not kept
    body = scored.body if isinstance(scored.body, bytes) else scored.body.encode("utf-8")
    if _LINE_BREAKS[0] in body or _LINE_BREAKS[1] in body:  # pretty-printed JSON would break the line
        return dumps(loads(body))
    return body.strip()


def expand(batch: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Format 1's ``scored`` records of a ``scored-batch`` line, in order."""
    proba = batch.get("probabilities") or []
    requests = batch.get("requests") or []
    at = 0
    for i, (rid, n) in enumerate(zip(batch["request_id"], batch["rows"], strict=True)):
        mine = proba[at:at + n]
        at += n
        request = requests[i] if i < len(requests) else None
        yield {
            "kind": "scored", "request_id": rid, "time": iso(float(batch["time"][i])), "endpoint": batch.get("endpoint"),
            "deployment": batch["deployment"][i], "model_name": batch["model_name"][i],
            "model_version": batch["model_version"][i], "status": 200, "latency_ms": batch["latency_ms"][i],
            "predictions": batch["predictions"][i],
            "probabilities": None if all(p is None for p in mine) else mine,
            "classes": batch["classes"][i],
            "rows": (request.get("data") or []) if isinstance(request, dict) else [],
        }


def read_records(root: Path, since: datetime | None = None, folder: str = "capture") -> Iterator[dict[str, Any]]:
    """The records under ``<root>/<folder>`` at or after ``since`` (all when None), file by file, one per
    request whichever format wrote them. A line cut short by a crash is skipped."""
    floor = since.timestamp() if since else None
    start = iso(floor) if floor is not None else ""
    for path in sorted((Path(root) / folder).glob("*.jsonl")):
        try:
            if floor is not None and path.stat().st_mtime < floor:
                continue
            raw = path.read_bytes()
        except FileNotFoundError:  # rotated away by retention meanwhile
            continue
        for line in raw.splitlines():
            if not line:
                continue
            try:
                record = loads(line)
            except JSON_ERRORS:
                continue
            if not isinstance(record, dict):
                continue
            if record.get("kind") == BATCH_KIND:
                try:
                    yield from (r for r in expand(record) if r["time"] >= start)
                except (KeyError, TypeError, ValueError, IndexError):  # a line no writer of ours wrote
                    continue
                continue
            if str(record.get("time", "")) >= start:
                request = record.pop("request", None)
                if isinstance(request, dict) and "rows" not in record:
                    record["rows"] = request.get("data") or []
                yield record


_SECOND: list[Any] = [None, ""]  # the last whole second formatted (the writer stamps thousands a second)


def iso(seconds: float) -> str:
    """``2026-12-03T10:00:00.123456Z``: the records' time, which sorts as text."""
    whole = int(seconds)
    if _SECOND[0] != whole:
        _SECOND[:] = [whole, datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")]
    return f"{_SECOND[1]}.{int((seconds - whole) * 1e6):06d}Z"
