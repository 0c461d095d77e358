"""What a worker of the local host records of live traffic: the shadow's mirror and the watch's figures.

One hook in the request path, ``LiveRecorder.after_score``, called once a request was scored:

- **mirror** (state.json ``mirror``): a copy of the request (not one that names a deployment, as on Azure) is
  queued for the candidate and the champion's answer kept beside it; a background thread scores the copy and
  writes both answers, each with the request id (``x-request-id``), to ``live/<session>/<pid>.jsonl``. The
  request path only appends to a bounded queue: a full queue drops the copy (counted), never the request.
- **watch** (state.json ``watch``): each answer of the watched deployment adds (status, scoring ms) to a
  buffer the same thread writes to ``live/<session>/watch-<pid>.txt``. An answer that failed (5xx) is given
  again by the previous champion, kept warm at 0 % for the window: the failure is counted for the watch, and
  the client gets the answer the old champion would have given.

Nothing here decides: ``backends.domain.shadow`` joins and judges what the workers wrote.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from backends.local.endpoint.state import EndpointPaths, LiveConfig
from src.scoring import Scorer, dumps
from src.request_validation import loads

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = b"x-request-id"  # the header the host's request capture uses too (issue 19)
MAX_PENDING = 512  # mirror copies waiting for the candidate; more are dropped, not queued without end
FLUSH_S = 0.2

Headers = list[tuple[bytes, bytes]]


def request_id_of(headers: Headers, fallback: str) -> str:
    for key, value in headers:
        if key == REQUEST_ID_HEADER:
            return value.decode("latin-1").strip()[:128] or fallback
    return fallback


def labels_of(payload: bytes) -> tuple[str, ...]:
    """The predicted labels of an answer body (a list, or {"predictions": [...]})."""
    try:
        body = loads(payload)
    except ValueError:
        return ()
    if isinstance(body, dict):
        body = body.get("predictions", [])
    return tuple(str(v) for v in body) if isinstance(body, list) else ()


class LiveRecorder:
    """One per worker process; idle (one attribute test a request) while state.json asks for nothing."""

    def __init__(self, paths: EndpointPaths, pid: int) -> None:
        self._paths = paths
        self._pid = pid
        self._ids = itertools.count()
        self._jobs: deque[tuple[Path, str, Scorer, bytes, int, float, bytes]] = deque()
        self._watch: deque[tuple[Path, int, float, bool]] = deque()
        self._dropped: dict[Path, int] = {}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closing = False

    # -- the request path ----------------------------------------------------------------------------------
    def after_score(
        self, state: Any, deployments: Any, name: str, named: bool, headers: Headers, body: bytes,
        status: int, payload: bytes, ms: float, request_id: str | None = None,
    ) -> tuple[int, bytes]:
        """Record what was asked; returns the answer to send (the fallback's when the watched one failed)."""
        mirror: LiveConfig | None = state.mirror if state is not None else None
        watch: LiveConfig | None = state.watch if state is not None else None
        if mirror is None and watch is None or named:  # a request naming its deployment is evaluation, not live
            return status, payload
        if mirror is not None and name != mirror.deployment and (
                mirror.percent >= 100 or random.random() * 100 < mirror.percent):
            candidate = deployments.get(mirror.deployment)
            folder = self._paths.live(mirror.session)
            if candidate is not None and candidate.scorer is not None:
                if len(self._jobs) < MAX_PENDING:
                    rid = request_id or request_id_of(headers, f"{self._pid}-{next(self._ids)}")
                    self._jobs.append((folder, rid, candidate.scorer, body, status, ms, payload))
                else:
                    self._dropped[folder] = self._dropped.get(folder, 0) + 1
                self._kick()
        if watch is not None and name == watch.deployment:
            fell_back = False
            if status >= 500:
                previous = deployments.get(watch.fallback)
                if previous is not None and previous.scorer is not None:
                    status, payload = _score_safely(previous.scorer, body)
                    fell_back = True
            self._watch.append((self._paths.live(watch.session), status if not fell_back else 500, ms, fell_back))
            self._kick()
        return status, payload

    def _kick(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="live-recorder", daemon=True)
            self._thread.start()
        if len(self._jobs) == 1:
            self._wake.set()

    # -- the background thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        lines: dict[Path, list[bytes]] = {}
        watch_lines: dict[Path, list[str]] = {}
        last_flush = time.monotonic()
        while True:
            self._wake.wait(FLUSH_S)
            self._wake.clear()
            budget = time.monotonic() + FLUSH_S  # under steady load the queue never empties: flush anyway
            while self._jobs and time.monotonic() < budget:
                folder, rid, scorer, body, status, ms, payload = self._jobs.popleft()
                cpu = time.thread_time()
                started = time.perf_counter()
                cand_status, cand_payload = _score_safely(scorer, body)
                # CPU time of this thread: what scoring cost, not how long it waited for the GIL behind live requests.
                cand_ms = min((time.thread_time() - cpu), time.perf_counter() - started) * 1000
                out = lines.setdefault(folder, [])
                out.append(dumps({"id": rid, "side": "champion", "status": status, "ms": round(ms, 4),
                                  "predictions": labels_of(payload) if status < 300 else []}))
                out.append(dumps({"id": rid, "side": "candidate", "status": cand_status, "ms": round(cand_ms, 4),
                                  "predictions": labels_of(cand_payload) if cand_status < 300 else []}))
            while self._watch:
                folder, status, ms, fell_back = self._watch.popleft()
                watch_lines.setdefault(folder, []).append(f"{status} {ms:.4f} {int(fell_back)}\n")
            now = time.monotonic()
            if now - last_flush >= FLUSH_S or self._closing:
                self._flush(lines, watch_lines)
                lines, watch_lines, last_flush = {}, {}, now
                if self._closing and not self._jobs and not self._watch:
                    return

    def _flush(self, lines: dict[Path, list[bytes]], watch_lines: dict[Path, list[str]]) -> None:
        dropped, self._dropped = self._dropped, {}
        for folder, count in dropped.items():
            lines.setdefault(folder, []).append(dumps({"side": "dropped", "n": count}))
        for folder, items in lines.items():
            _append(folder / f"{self._pid}.jsonl", b"\n".join(items) + b"\n")
        for folder, text in watch_lines.items():
            _append(folder / f"watch-{self._pid}.txt", "".join(text).encode())

    def close(self) -> None:
        """Write what is pending (worker shutdown)."""
        if self._thread is not None:
            self._closing = True
            self._wake.set()
            self._thread.join(timeout=5)


_failures: dict[str, int] = {}


def _score_safely(scorer: Scorer, body: bytes) -> tuple[int, bytes]:
    try:
        return scorer.score_json(body)
    except Exception as exc:  # noqa: BLE001 - a model that raises is a 500 for this request, not a dead thread
        seen = _failures[scorer.label] = _failures.get(scorer.label, 0) + 1
        if seen == 1 or seen % 1000 == 0:  # a model failing on a share of live traffic would flood the log
            logger.warning("deployment %s raised on a request (%d so far): %s: %s", scorer.label, seen,
                           type(exc).__name__, exc)
        return 500, dumps({"error": "the model failed on this request"})


def _append(path: Path, data: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except FileNotFoundError:  # the session's folder is gone: the session ended and was cleaned up
        return
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
