"""The endpoint host as an operating-system process: start it detached, tell whether it runs, stop it.

psutil does the process handling (a zombie is not alive; a stop waits for the process, then kills its
group), so nothing here parses /proc.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

logger = logging.getLogger(__name__)


def pid_alive(pid: int | None) -> bool:
    """True when ``pid`` runs (a zombie counts as gone, and is reaped when it is our child)."""
    if not pid or pid <= 0:
        return False
    try:
        process = psutil.Process(pid)
        if process.status() != psutil.STATUS_ZOMBIE:
            return True
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    return False


def spawn_detached(argv: Sequence[str], log: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session (a Ctrl-C in the caller's terminal does not reach it), with stdout
    and stderr appended to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=dict(env),
        )


def stop_process(pid: int | None, timeout_s: float) -> bool:
    """SIGTERM ``pid`` and wait up to ``timeout_s`` for it to exit; then SIGKILL it (its whole process group
    when it leads one, so its worker processes go too). False when it had to be killed."""
    if not pid_alive(pid):
        return True
    assert pid is not None
    try:
        process = psutil.Process(pid)
        process.terminate()
        process.wait(timeout=timeout_s)
        return True
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError, PermissionError, psutil.NoSuchProcess):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            process.kill()
        process.wait(timeout=5)
    return False


def rss_bytes(pid: int, *, children: bool = False) -> int:
    """Resident memory of ``pid`` (and, with ``children``, of its descendants)."""
    process = psutil.Process(pid)
    processes = [process, *(process.children(recursive=True) if children else [])]
    total = 0
    for each in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += each.memory_info().rss
    return total


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text[-lines:])
