"""What a worker of the local host records of live traffic: the shadow's mirror and the watch's figures.

One hook in the request path, ``LiveRecorder.after_score``, called once a request was scored:

- **mirror** (state.json ``mirror``): a copy of the request (not one that names a deployment, as on Azure) goes,
  with the request id (``x-request-id``) and the champion's answer, as one datagram to this worker's mirror
  process (``mirror_process``), which scores it with the candidate and writes both answers to
  ``live/<session>/<pid>.jsonl``. The request path only makes a non-blocking send: when the process is behind,
  the copy is dropped (counted), never the request; the candidate never runs in the worker.
- **watch** (state.json ``watch``): each answer of the watched deployment adds (status, scoring ms) to a
  buffer the same thread writes to ``live/<session>/watch-<pid>.txt``. An answer that failed (5xx) is given
  again by the previous champion, kept warm at 0 % for the window: the failure is counted for the watch, and
  the client gets the answer the old champion would have given.

Nothing here decides: ``backends.domain.shadow`` joins and judges what the workers wrote.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import random
import socket
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path
from typing import Any

from backends.local.endpoint.mirror_process import encode, score_safely
from backends.local.endpoint.state import EndpointPaths, LiveConfig

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = b"x-request-id"  # the header the host's request capture uses too (issue 19)
# The mirror process's share of a core at most: after each batch of copies it rests in proportion. A host with
# idle time mirrors every request; a saturated one drops copies (counted), never slows a request
# (docs/benchmarks.md, "Endpoint: the shadow's mirror").
MIRROR_SHARE = 0.1
FLUSH_S = 0.2

Headers = list[tuple[bytes, bytes]]


def request_id_of(headers: Headers, fallback: str) -> str:
    for key, value in headers:
        if key == REQUEST_ID_HEADER:
            return value.decode("latin-1").strip()[:128] or fallback
    return fallback


class _Mirror:
    """One mirror session's process and the worker's end of its socket."""

    def __init__(self, config: LiveConfig, folder: Path, model_dir: str, max_rows: int, pid: int) -> None:
        self.key = (config.session, config.deployment)
        self.dropped = 0
        self._dropped_file = folder / f"{pid}-dropped.jsonl"
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        self.sock = ours
        argv = [sys.executable, "-m", "backends.local.endpoint.mirror_process", "--fd", str(theirs.fileno()),
                "--model-dir", model_dir, "--out", str(folder / f"{pid}.jsonl"), "--max-rows", str(max_rows),
                "--share", str(MIRROR_SHARE)]
        self.process = subprocess.Popen(argv, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        theirs.close()

    def send(self, request_id: str, status: int, ms: float, payload: bytes, body: bytes) -> None:
        try:
            self.sock.send(encode(request_id, status, ms, self.dropped, payload, body))
            self.dropped = 0
        except (BlockingIOError, OSError):  # the process is behind (or the body is too large for one datagram)
            self.dropped += 1

    def close(self) -> None:
        self.sock.close()  # the process writes what it has and exits on the end of its socket
        if self.dropped:  # the copies dropped after the last one sent
            _append(self._dropped_file, b'{"side":"dropped","n":%d}\n' % self.dropped)


class LiveRecorder:
    """One per worker process; idle (one attribute test a request) while state.json asks for nothing."""

    def __init__(self, paths: EndpointPaths, pid: int) -> None:
        self._paths = paths
        self._pid = pid
        self._ids = itertools.count()
        self._mirror: _Mirror | None = None
        self._ended: list[_Mirror] = []
        self._refused: tuple[str, str] | None = None  # a session whose mirror could not start: not retried a request
        self._watch: deque[tuple[Path, int, float, bool]] = deque()
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
        if self._mirror is not None and (mirror is None or self._mirror.key != (mirror.session, mirror.deployment)):
            self._end_mirror()
        if mirror is None and watch is None or named:  # a request naming its deployment is evaluation, not live
            return status, payload
        if mirror is not None and name != mirror.deployment and (
                mirror.percent >= 100 or random.random() * 100 < mirror.percent):
            channel = self._mirror or self._start_mirror(mirror, deployments)
            if channel is not None:
                channel.send(request_id or request_id_of(headers, f"{self._pid}-{next(self._ids)}"), status, ms,
                             payload, body)
        if watch is not None and name == watch.deployment:
            fell_back = False
            if status >= 500:
                previous = deployments.get(watch.fallback)
                if previous is not None and previous.scorer is not None:
                    status, payload = score_safely(previous.scorer, body)
                    fell_back = True
            self._watch.append((self._paths.live(watch.session), status if not fell_back else 500, ms, fell_back))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="live-recorder", daemon=True)
                self._thread.start()
        return status, payload

    def _start_mirror(self, config: LiveConfig, deployments: Any) -> _Mirror | None:
        key = (config.session, config.deployment)
        if self._refused == key:
            return None
        candidate = deployments.get(config.deployment)
        folder = self._paths.live(config.session)
        try:
            if candidate is None or candidate.scorer is None or not folder.is_dir():
                raise OSError(f"deployment {config.deployment} is not loaded here, or {folder} is missing")
            self._mirror = _Mirror(config, folder, candidate.config.model_dir, candidate.config.max_rows, self._pid)
        except OSError as exc:
            logger.error("cannot start the mirror process for %s (nothing is mirrored from this worker): %s",
                         config.deployment, exc)
            self._refused = key
            return None
        return self._mirror

    def _end_mirror(self) -> None:
        if self._mirror is not None:
            self._mirror.close()
            self._ended.append(self._mirror)
            self._mirror = None
        self._ended = [m for m in self._ended if m.process.poll() is None]  # reap the ones that finished

    # -- the background thread (the watch's record) ------------------------------------------------------------
    def _run(self) -> None:
        while True:
            self._wake.wait(FLUSH_S)
            lines: dict[Path, list[str]] = {}
            while self._watch:
                folder, status, ms, fell_back = self._watch.popleft()
                lines.setdefault(folder, []).append(f"{status} {ms:.4f} {int(fell_back)}\n")
            for folder, text in lines.items():
                _append(folder / f"watch-{self._pid}.txt", "".join(text).encode())
            if self._closing:
                return

    def close(self) -> None:
        """Write what is pending and end the mirror process (worker shutdown)."""
        self._end_mirror()
        for mirror in self._ended:
            with contextlib.suppress(subprocess.TimeoutExpired):
                mirror.process.wait(timeout=5)
        if self._thread is not None:
            self._closing = True
            self._wake.set()
            self._thread.join(timeout=5)


def _append(path: Path, data: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except FileNotFoundError:  # the session's folder is gone: the session ended and was cleaned up
        return
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
