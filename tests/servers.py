"""Start a server process for a test, wait until it answers, stop it: one way for every server the tests
start on 127.0.0.1 (azmlinfsrv, Azurite).

The server writes to a log file, never to a pipe: a pipe nobody reads fills up and blocks a chatty server,
and reading a live process's pipe waits for it to exit. The log's tail is in every failure message. The
server runs in its own session, so stopping it stops what it started (workers) too.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
import requests

STOP_GRACE_S = 10.0


def log_tail(log: Path, lines: int = 60) -> str:
    """The last ``lines`` lines of a server's log (empty when it wrote none)."""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""


def answers_http(url: str, timeout_s: float = 3.0) -> Callable[[], bool]:
    """Ready when GET ``url`` answers 200."""

    def ready() -> bool:
        try:
            return requests.get(url, timeout=timeout_s).status_code == 200
        except (requests.ConnectionError, requests.Timeout):
            return False

    return ready


def accepts_connections(port: int, host: str = "127.0.0.1") -> Callable[[], bool]:
    """Ready when ``host:port`` accepts a TCP connection."""

    def ready() -> bool:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            return False

    return ready


def wait_until_ready(
    process: subprocess.Popen[Any], ready: Callable[[], bool], *, what: str, log: Path, timeout_s: float,
    poll_s: float = 0.2,
) -> None:
    """Return once ``ready()``; fail the test (with the log's tail) when the process exits first or the
    timeout passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            pytest.fail(f"{what} exited with code {process.returncode} while starting:\n{log_tail(log)}")
        if ready():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not answer within {timeout_s:.0f} s:\n{log_tail(log)}")
        time.sleep(poll_s)


def stop(process: subprocess.Popen[Any], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the server's process group, SIGKILL it after ``grace_s``; the group's leader is reaped."""
    if process.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace_s)
    with suppress(ProcessLookupError):  # the group may outlive its leader
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=5)


@contextmanager
def running_server(
    command: Sequence[str], *, ready: Callable[[], bool], what: str, log: Path, timeout_s: float,
    poll_s: float = 0.2, env: dict[str, str] | None = None, cwd: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``command`` (output to ``log``, its own session), wait until ``ready()``, yield the process,
    then stop it (also when the start failed)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        process = subprocess.Popen(list(command), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, cwd=cwd, start_new_session=True)
    try:
        wait_until_ready(process, ready, what=what, log=log, timeout_s=timeout_s, poll_s=poll_s)
        yield process
    finally:
        stop(process)
