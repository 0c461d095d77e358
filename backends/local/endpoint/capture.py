"""Capture: what each deployment of the local endpoint was asked and what it answered.

Every ``POST /score`` gets a request id (the client's ``x-request-id`` when it is a plain token of at most
128 characters, else a new one), returned in the ``x-request-id`` response header. A sampled 200 (settings
``rate``, default 1.0) is recorded with its validated rows, predictions and positive-class probabilities;
a refused request (4xx) is recorded with its status and a coarse reason, never its body; a failure (5xx)
with its status. Records are JSON lines under ``<endpoint>/capture/``, one file per worker process at a time,
rotated at ``max_file_bytes``; files older than ``retention_days`` are deleted. Headers (the key among
them) are never recorded.

Writing is off the request path: a request puts one tuple on a queue; a daemon thread serializes and
appends in batches, at most ``FLUSH_S`` after the request, and re-reads ``capture.json`` when it changes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import random
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from src.request_validation import loads
from src.scoring import Scored, dumps

logger = logging.getLogger(__name__)

CAPTURE_DIR = "capture"
FEEDBACK_DIR = "feedback"
SETTINGS_FILE = "capture.json"
REQUEST_ID_HEADER = b"x-request-id"
FLUSH_S = 0.2
_TOKEN = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")


@dataclass(frozen=True)
class CaptureSettings:
    """How much is captured and for how long it is kept (``<endpoint>/capture.json``)."""

    rate: float = 1.0  # share of successful requests recorded with their rows (refusals are always counted)
    max_file_bytes: int = 16 * 1024 * 1024  # a file is closed and a new one started past this size
    retention_days: float = 30.0  # files last written longer ago are deleted

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"capture rate must be between 0 and 1, got {self.rate}")
        if self.max_file_bytes < 1024:
            raise ValueError(f"capture max_file_bytes must be at least 1024, got {self.max_file_bytes}")
        if self.retention_days <= 0:
            raise ValueError(f"capture retention_days must be positive, got {self.retention_days}")


def read_capture_settings(root: Path) -> CaptureSettings:
    """The endpoint's settings; the defaults when the file is missing or unreadable (logged)."""
    try:
        raw = json.loads((Path(root) / SETTINGS_FILE).read_text(encoding="utf-8"))
        return CaptureSettings(**{k: v for k, v in raw.items() if k in CaptureSettings.__dataclass_fields__})
    except FileNotFoundError:
        return CaptureSettings()
    except (OSError, ValueError, TypeError) as exc:
        logger.error("cannot read %s, capturing with the defaults: %s", Path(root) / SETTINGS_FILE, exc)
        return CaptureSettings()


def write_capture_settings(root: Path, settings: CaptureSettings) -> None:
    from backends.fileio import write_atomic

    write_atomic(Path(root) / SETTINGS_FILE, json.dumps(asdict(settings), indent=2).encode("utf-8"))


def set_capture_rate(root: Path, rate: float) -> None:
    """Keep the other settings, change the sampling rate (a running host follows within a moment)."""
    current = read_capture_settings(root)
    if current.rate != rate or not (Path(root) / SETTINGS_FILE).exists():
        write_capture_settings(root, replace(current, rate=float(rate)))


def request_id_of(headers: list[tuple[bytes, bytes]]) -> bytes:
    """The client's ``x-request-id`` when it is a plain token, else a new random id."""
    for key, value in headers:
        if key == REQUEST_ID_HEADER:
            value = value.strip()
            if _TOKEN.match(value):
                return value
            break
    return uuid.uuid4().hex.encode()


_REASONS = (
    ("not valid JSON", "invalid JSON"), ("body is empty", "empty body"), ("must be a JSON object", "not a JSON object"),
    ('no "data" field', 'no "data" field'), ('"data" must be', '"data" not an array of objects'),
    ('"data" is empty', '"data" empty'), ("must be an object", "record not an object"),
    ("more than this endpoint accepts", "too many records"), ("return_probabilities", "bad return_probabilities"),
    ("too large to be a number", "number too large"),
)
_COLUMN = re.compile(r"^data\[\d+\]\.([^ ]+) must be")


def rejection_reason(status: int, message: str) -> str:
    """A short reason for a refused request, naming a column (a schema name) but never a value sent."""
    if status == 401:
        return "missing or wrong key"
    if "is missing" in message and "column(s)" in message:
        return "missing column(s)"
    column = _COLUMN.match(message)
    if column:
        return f"bad value in {column.group(1)}"
    for marker, reason in _REASONS:
        if marker in message:
            return reason
    return {404: "unknown deployment", 408: "timed out", 413: "body too large"}.get(status, f"status {status}")


class Ticket:
    """One sampled request on its way: filled by the scoring hook, recorded after the response is sent."""

    __slots__ = ("request_id", "started", "deployment", "model_name", "model_version", "scored")

    def __init__(self, request_id: bytes) -> None:
        self.request_id = request_id
        self.started = time.time()
        self.deployment = ""
        self.model_name = ""
        self.model_version = ""
        self.scored: Scored | None = None


class CaptureLog:
    """The capture of one worker process: sampling on the request path, writing in a daemon thread."""

    def __init__(self, root: Path, endpoint: str, settings: CaptureSettings | None = None) -> None:
        self.root = Path(root)
        self.folder = self.root / CAPTURE_DIR
        self.endpoint = endpoint
        self.settings = settings or read_capture_settings(self.root)
        self._settings_stamp = _stamp(self.root / SETTINGS_FILE)
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._file: Any = None
        self._file_bytes = 0
        self._sequence = 0
        self._unsampled: Counter[tuple[str, str]] = Counter()
        self._last_sweep = 0.0

    # -- request path (event loop) ------------------------------------------------------------------------

    def sampled(self) -> bool:
        rate = self.settings.rate
        return rate >= 1.0 or (rate > 0.0 and random.random() < rate)

    def scored(self, ticket: Ticket, status: int, latency_ms: float) -> None:
        self._put(("scored", ticket, status, latency_ms))

    def unsampled(self, deployment: str, model_version: str) -> None:
        self._put(("unsampled", deployment, model_version))

    def rejected(self, request_id: bytes, status: int, reason: str, deployment: str) -> None:
        self._put(("rejected", request_id, status, reason, deployment, time.time()))

    def _put(self, item: tuple[Any, ...]) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
            self._thread.start()
        self._queue.put(item)

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is queued and stop the writer (worker shutdown)."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout_s)
            self._thread = None
        else:
            self._close_file()

    # -- writer thread ------------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            batch: list[tuple[Any, ...]] = []
            try:
                first = self._queue.get(timeout=FLUSH_S)
            except queue.Empty:
                first = ()
            stop = first is None
            if first:
                batch.append(first)
            time.sleep(0 if stop else FLUSH_S / 2)  # let a burst gather into one write
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                else:
                    batch.append(item)
            try:
                self._write(batch)
            except OSError as exc:  # a full or removed disk must never fail requests; the loss is logged
                logger.error("capture: %d record(s) not written to %s: %s", len(batch), self.folder, exc)
            if stop:
                self._close_file()
                return

    def _write(self, batch: list[tuple[Any, ...]]) -> None:
        self._follow_settings()
        lines = [line for line in (self._line(item) for item in batch) if line]
        if self._unsampled:
            now = _iso(time.time())
            for (deployment, version), count in self._unsampled.items():
                lines.append(dumps({"kind": "unsampled", "time": now, "endpoint": self.endpoint,
                                    "deployment": deployment, "model_version": version, "count": count}))
            self._unsampled.clear()
        chunk: list[bytes] = []
        size = 0
        for line in lines:  # a file never grows past max_file_bytes (unless one line is larger)
            if chunk and self._file_bytes + size + len(line) + 1 > self.settings.max_file_bytes:
                self._append(chunk, size)
                self._close_file()
                chunk, size = [], 0
            chunk.append(line)
            size += len(line) + 1
        if chunk:
            self._append(chunk, size)
        if time.monotonic() - self._last_sweep > 600:
            self._last_sweep = time.monotonic()
            sweep_expired(self.folder, self.settings.retention_days)

    def _line(self, item: tuple[Any, ...]) -> bytes | None:
        kind = item[0]
        if kind == "unsampled":
            self._unsampled[(item[1], item[2])] += 1
            return None
        if kind == "rejected":
            _, request_id, status, reason, deployment, at = item
            return dumps({"kind": "rejected" if status < 500 else "error", "request_id": request_id.decode("latin-1"), "time": _iso(at),
                          "endpoint": self.endpoint, "deployment": deployment or None, "status": status,
                          "reason": reason})
        _, ticket, status, latency_ms = item
        record: dict[str, Any] = {
            "kind": "scored" if status == 200 else "error", "request_id": ticket.request_id.decode("latin-1"),
            "time": _iso(ticket.started), "endpoint": self.endpoint, "deployment": ticket.deployment,
            "model_name": ticket.model_name, "model_version": ticket.model_version, "status": status,
            "latency_ms": latency_ms,
        }
        scored = ticket.scored
        if scored is None or status != 200:
            return dumps(record)
        proba = scored.positive_proba
        record.update(predictions=scored.predictions, probabilities=None if proba is None else proba.tolist(),
                      classes=scored.classes)
        if scored.rows is not None or not isinstance(scored.body, bytes):
            # the signature's columns only: what else a client sent is not kept
            record["rows"] = scored.rows if scored.rows is not None else loads(scored.body)["data"]
            return dumps(record)
        # The validated body as it came (only the signature's columns): spliced in, not parsed and re-encoded.
        return dumps(record)[:-1] + b',"request":' + scored.body.strip() + b"}"

    def _append(self, lines: list[bytes], size: int) -> None:
        handle = self._open(size)
        handle.write(b"\n".join(lines) + b"\n")
        handle.flush()
        self._file_bytes += size

    def _open(self, incoming: int) -> Any:
        if self._file is not None and self._file_bytes + incoming > self.settings.max_file_bytes:
            self._close_file()
        if self._file is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._sequence += 1
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
            path = self.folder / f"{stamp}-{os.getpid()}-{self._sequence:04d}.jsonl"
            self._file = open(path, "ab")  # noqa: SIM115 - kept open across batches, closed on rotation
            self._file_bytes = 0
        return self._file

    def _close_file(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    def _follow_settings(self) -> None:
        stamp = _stamp(self.root / SETTINGS_FILE)
        if stamp != self._settings_stamp:
            self._settings_stamp = stamp
            self.settings = read_capture_settings(self.root)
            logger.info("capture settings now %s", self.settings)


def sweep_expired(folder: Path, retention_days: float, now: float | None = None) -> int:
    """Delete capture files last written more than ``retention_days`` ago; how many were deleted."""
    limit = (now or time.time()) - retention_days * 86400
    deleted = 0
    for path in sorted(Path(folder).glob("*.jsonl")):
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < limit:
                path.unlink()
                deleted += 1
    if deleted:
        logger.info("capture: deleted %d file(s) older than %.1f days", deleted, retention_days)
    return deleted


def read_records(root: Path, since: datetime | None = None, folder: str = CAPTURE_DIR) -> Iterator[dict[str, Any]]:
    """The records under ``<root>/<folder>`` at or after ``since`` (all when None), file by file. A line
    cut short by a crash is skipped."""
    from src.request_validation import JSON_ERRORS

    floor = since.timestamp() if since else None
    start = _iso(floor) if floor is not None else ""
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
            if isinstance(record, dict) and str(record.get("time", "")) >= start:
                request = record.pop("request", None)
                if isinstance(request, dict) and "rows" not in record:
                    record["rows"] = request.get("data") or []
                yield record


def append_feedback(root: Path, labels: list[tuple[str, Any]], source: str) -> Path:
    """Store outcomes (request id, label) as one new JSON-lines file under ``<root>/feedback/``, written
    whole (temp file + rename), so a reader never sees half a batch. Every label is kept, matched or not."""
    from backends.fileio import write_atomic

    now = _iso(time.time())
    lines = [dumps({"request_id": rid, "label": label, "time": now, "source": source}) for rid, label in labels]
    folder = Path(root) / FEEDBACK_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.jsonl"
    write_atomic(path, b"\n".join(lines) + b"\n")
    return path


def captured_ids(root: Path) -> set[str]:
    """Request ids of every captured 200 still kept (to tell a label's id is known)."""
    return {str(r["request_id"]) for r in read_records(root) if r.get("kind") == "scored" and "request_id" in r}


_SECOND: list[Any] = [None, ""]  # the last whole second formatted (the writer stamps thousands a second)


def _iso(seconds: float) -> str:
    whole = int(seconds)
    if _SECOND[0] != whole:
        _SECOND[:] = [whole, datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")]
    return f"{_SECOND[1]}.{int((seconds - whole) * 1e6):06d}Z"


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns)
