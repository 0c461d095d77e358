"""What a worker of the local host records of live traffic: the shadow's mirror and the watch's figures.

One hook in the request path, ``LiveRecorder.after_score``, called once a request was scored:

- **mirror** (state.json ``mirror``): a copy of the request (not one that names a deployment, as on Azure),
  with the request id (``x-request-id``) and the champion's answer, is queued; the recorder's thread sends a
  tick's copies in a few datagrams to this worker's mirror process (``mirror_process``), which scores them
  with the candidate and writes both answers to ``live/<session>/<pid>.jsonl``. The request path makes no
  system call: when the process is behind, copies are dropped (counted), never the request; the candidate
  never runs in the worker.
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

from backends.local.endpoint.mirror_process import encode, pack, score_safely
from backends.local.endpoint.state import EndpointPaths, LiveConfig

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = b"x-request-id"  # the header the host's request capture uses too (issue 19)
# The mirror process's share of a core at most: after each batch of copies it rests in proportion. A host with
# idle time mirrors every request; a saturated one drops copies (counted), never slows a request
# (docs/benchmarks.md, "Endpoint: the shadow's mirror").
MIRROR_SHARE = 0.1
FLUSH_S = 0.2
DATAGRAM_BYTES = 64 * 1024  # a few datagrams a tick, each well inside the socket's buffer
MAX_PENDING = 20_000  # copies queued between two ticks at most; beyond, a copy is dropped (counted)

Headers = list[tuple[bytes, bytes]]


def request_id_of(headers: Headers, fallback: str) -> str:
    for key, value in headers:
        if key == REQUEST_ID_HEADER:
            return value.decode("latin-1").strip()[:128] or fallback
    return fallback


class _Mirror:
    """One mirror session's process and the worker's end of its socket. The request path only appends a copy
    to a deque; the recorder's thread encodes a tick's copies and sends them in datagrams of up to
    DATAGRAM_BYTES, so a request costs no system call."""

    def __init__(self, config: LiveConfig, folder: Path, model_dir: str, max_rows: int, pid: int) -> None:
        self.key = (config.session, config.deployment)
        self._pending: deque[tuple[str, int, float, bytes, bytes]] = deque()
        self.overflow = 0  # copies the request path did not queue (the thread is behind): request path only
        self._reported = 0  # of those, told to the process already (thread only)
        self._unsent = 0  # copies whose datagram the socket refused, not told yet (thread only)
        self._flushing = threading.Lock()  # the thread's ticks, and the close at a session's end
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
        """Queue a copy (the request path)."""
        if len(self._pending) >= MAX_PENDING:
            self.overflow += 1
        else:
            self._pending.append((request_id, status, ms, payload, body))

    def flush(self) -> None:
        """Send the queued copies (the recorder's thread). A datagram the socket refuses (the process is behind)
        is dropped and counted, never retried: the copies were of requests long answered."""
        with self._flushing:
            self._flush()

    def _flush(self) -> None:
        pending = self._pending
        copies = [pending.popleft() for _ in range(len(pending))]
        chunk: list[tuple[str, int, float, bytes, bytes]] = []
        size = 0
        for copy in copies:
            weight = len(copy[0]) + len(copy[3]) + len(copy[4]) + 32
            if chunk and size + weight > DATAGRAM_BYTES:
                self._send(chunk)
                chunk, size = [], 0
            chunk.append(copy)
            size += weight
        if chunk:
            self._send(chunk)

    def _untold(self) -> int:
        return self.overflow - self._reported + self._unsent

    def _send(self, chunk: list[tuple[str, int, float, bytes, bytes]]) -> None:
        overflow = self.overflow
        told = overflow - self._reported + self._unsent  # the first copy carries the count dropped before it
        encoded = [encode(rid, status, ms, told if i == 0 else 0, payload, body)
                   for i, (rid, status, ms, payload, body) in enumerate(chunk)]
        try:
            self.sock.send(pack(encoded))
        except (BlockingIOError, OSError):  # the process is behind (or a body too large for one datagram)
            self._unsent += len(chunk)
            return
        self._reported, self._unsent = overflow, 0

    def close(self) -> None:
        self.flush()
        self.sock.close()  # the process writes what it has and exits on the end of its socket
        if self._untold():  # the copies dropped after the last one sent
            _append(self._dropped_file, b'{"side":"dropped","n":%d}\n' % self._untold())


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
            self._ensure_thread()
        return status, payload

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="live-recorder", daemon=True)
            self._thread.start()

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
            self._ensure_thread()
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
            mirror = self._mirror
            if mirror is not None:
                with contextlib.suppress(OSError):  # a socket closed by a session that just ended
                    mirror.flush()
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
