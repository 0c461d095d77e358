"""Capture: what each deployment of the local endpoint was asked and what it answered.

Every ``POST /score`` gets a request id (the client's ``x-request-id`` when it is a plain token of at most
128 characters, else a new one), returned in the ``x-request-id`` response header. A sampled 200 (settings
``rate``, default 1.0) is recorded with its validated rows, predictions and positive-class probabilities;
a refused request (4xx) is recorded with its status and a coarse reason, never its body; a failure (5xx)
with its status. Records are JSON lines under ``<endpoint>/capture/``, one file per worker process at a time,
rotated at ``max_file_bytes``; files older than ``retention_days`` are deleted. Headers (the key among
them) are never recorded.

Writing is off the request path: a request appends what it already holds (its ticket) to a deque; a daemon
thread looks every ``FLUSH_S``, encodes the answered requests as ``scored-batch`` lines (``capture_format``:
columns, the bodies spliced in unparsed) and appends them, and re-reads ``capture.json`` when it changes.
Measured in docs/benchmarks.md, "Endpoint capture".
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import random
import re
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# read_records lives with the line format; monitoring and feedback import it from here as before
from backends.local.endpoint.capture_format import LINE_RECORDS, batch_line, iso, read_records
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
    """The client's ``x-request-id`` when it is a plain token, else a new id: 32 hex digits, a random prefix
    drawn once per process and a counter (unique like a uuid4, for a tenth of its cost)."""
    for key, value in headers:
        if key == REQUEST_ID_HEADER:
            value = value.strip()
            if _TOKEN.match(value):
                return value
            break
    return b"%s%016x" % (_IDS[0], next(_IDS[1]))


def _new_id_source() -> None:
    _IDS[:] = [uuid.uuid4().hex[:16].encode(), itertools.count(random.getrandbits(32))]


_IDS: list[Any] = []
_new_id_source()
os.register_at_fork(after_in_child=_new_id_source)  # a forked worker must not mint its parent's ids


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
    """One sampled request on its way: filled by the scoring hook, queued as it is once the response is sent."""

    __slots__ = ("request_id", "started", "deployment", "model_name", "model_version", "scored", "status", "latency_ms")

    def __init__(self, request_id: bytes) -> None:
        self.request_id = request_id
        self.started = time.time()
        self.deployment = ""
        self.model_name = ""
        self.model_version = ""
        self.scored: Scored | None = None
        self.status = 0
        self.latency_ms = 0.0


class CaptureLog:
    """The capture of one worker process: sampling on the request path, writing in a daemon thread.

    The request path appends to a deque (no lock, no wake-up: the writer looks every FLUSH_S) what it already
    has: the ticket itself, a refusal's tuple, or an unsampled request's deployment. The writer turns a tick's
    answered requests into ``scored-batch`` lines (``capture_format``) and appends them in one write."""

    def __init__(self, root: Path, endpoint: str, settings: CaptureSettings | None = None) -> None:
        self.root = Path(root)
        self.folder = self.root / CAPTURE_DIR
        self.endpoint = endpoint
        self.settings = settings or read_capture_settings(self.root)
        self._settings_stamp = _stamp(self.root / SETTINGS_FILE)
        self._pending: deque[Any] = deque()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._file: Any = None
        self._file_bytes = 0
        self._sequence = 0
        self._last_sweep = 0.0

    # -- request path (event loop) ------------------------------------------------------------------------

    def sampled(self) -> bool:
        rate = self.settings.rate
        return rate >= 1.0 or (rate > 0.0 and random.random() < rate)

    def scored(self, ticket: Ticket, status: int, latency_ms: float) -> None:
        ticket.status = status
        ticket.latency_ms = latency_ms
        self._pending.append(ticket)
        if self._thread is None:
            self._start()

    def unsampled(self, deployment: str, model_version: str = "") -> None:
        self._pending.append((deployment, model_version) if model_version else deployment)
        if self._thread is None:
            self._start()

    def rejected(self, request_id: bytes, status: int, reason: str, deployment: str) -> None:
        self._pending.append(("rejected", request_id, status, reason, deployment, time.time()))
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._thread.start()

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is queued and stop the writer (worker shutdown)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout_s)
            self._thread = None
        else:
            self._drain()
            self._close_file()

    # -- writer thread ------------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            stop = self._stop.wait(FLUSH_S)
            self._drain()
            if stop:
                self._close_file()
                return

    def _drain(self) -> None:
        pending = self._pending
        batch = [pending.popleft() for _ in range(len(pending))]  # what is there now; later appends wait a tick
        if not batch:
            return
        try:
            self._write(batch)
        except OSError as exc:  # a full or removed disk must never fail requests; the loss is logged
            logger.error("capture: %d record(s) not written to %s: %s", len(batch), self.folder, exc)

    def _write(self, batch: list[Any]) -> None:
        self._follow_settings()
        lines: list[bytes] = []
        answered: list[Ticket] = []
        unsampled: Counter[tuple[str, str]] = Counter()
        for item in batch:
            if type(item) is Ticket:
                if item.status == 200 and item.scored is not None:
                    answered.append(item)
                    continue
                lines.append(self._error_line(item))
            elif type(item) is str:
                unsampled[(item, "")] += 1
            elif len(item) == 2:
                unsampled[item] += 1
            else:
                lines.append(self._rejected_line(item))
        for start in range(0, len(answered), LINE_RECORDS):
            self._emit(answered[start:start + LINE_RECORDS])
        if unsampled:
            now = iso(time.time())
            for (deployment, version), count in unsampled.items():
                lines.append(dumps({"kind": "unsampled", "time": now, "endpoint": self.endpoint,
                                    "deployment": deployment, "model_version": version, "count": count}))
        for line in lines:
            self._append(line)
        if self._file is not None:
            self._file.flush()
        if time.monotonic() - self._last_sweep > 600:
            self._last_sweep = time.monotonic()
            sweep_expired(self.folder, self.settings.retention_days)

    def _emit(self, tickets: list[Ticket]) -> None:
        """A batch line of ``tickets``, split in halves while it would not fit in the current file's room, so a
        file never grows past max_file_bytes unless one request's line alone is larger."""
        line = batch_line(self.endpoint, tickets)
        room = self.settings.max_file_bytes - self._file_bytes
        if len(line) + 1 > room and len(tickets) > 1 and (self._file_bytes == 0 or len(line) + 1 > self.settings.max_file_bytes):
            half = len(tickets) // 2
            self._emit(tickets[:half])
            self._emit(tickets[half:])
            return
        self._append(line)

    def _error_line(self, ticket: Ticket) -> bytes:
        """A ticket without answer rows: a failure, or a 200 the warm previous champion gave in the new one's stead."""
        return dumps({
            "kind": "scored" if ticket.status == 200 else "error", "request_id": ticket.request_id.decode("latin-1"), "time": iso(ticket.started),
            "endpoint": self.endpoint, "deployment": ticket.deployment, "model_name": ticket.model_name,
            "model_version": ticket.model_version, "status": ticket.status, "latency_ms": round(ticket.latency_ms, 3),
        })

    def _rejected_line(self, item: tuple[Any, ...]) -> bytes:
        _, request_id, status, reason, deployment, at = item
        return dumps({"kind": "rejected" if status < 500 else "error", "request_id": request_id.decode("latin-1"),
                      "time": iso(at), "endpoint": self.endpoint, "deployment": deployment or None, "status": status,
                      "reason": reason})

    def _append(self, line: bytes) -> None:
        size = len(line) + 1
        if self._file is not None and self._file_bytes + size > self.settings.max_file_bytes:
            self._close_file()
        handle = self._open()
        handle.write(line)
        handle.write(b"\n")
        self._file_bytes += size

    def _open(self) -> Any:
        if self._file is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._sequence += 1
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
            path = self.folder / f"{stamp}-{os.getpid()}-{self._sequence:04d}.jsonl"
            # kept open across ticks, closed on rotation; a 1 MiB buffer makes a tick's lines few large writes
            self._file = open(path, "ab", buffering=1 << 20)  # noqa: SIM115
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


def append_feedback(root: Path, labels: list[tuple[str, Any]], source: str) -> Path:
    """Store outcomes (request id, label) as one new JSON-lines file under ``<root>/feedback/``, written
    whole (temp file + rename), so a reader never sees half a batch. Every label is kept, matched or not."""
    from backends.fileio import write_atomic

    now = iso(time.time())
    lines = [dumps({"request_id": rid, "label": label, "time": now, "source": source}) for rid, label in labels]
    folder = Path(root) / FEEDBACK_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.jsonl"
    write_atomic(path, b"\n".join(lines) + b"\n")
    return path


def captured_ids(root: Path) -> set[str]:
    """Request ids of every captured 200 still kept (to tell a label's id is known)."""
    return {str(r["request_id"]) for r in read_records(root) if r.get("kind") == "scored" and "request_id" in r}


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns)
