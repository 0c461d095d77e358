"""One exclusive file lock for the local backend's cross-process critical sections (store set-up,
endpoint state changes, rollouts). The kernel drops the lock when its holder dies, so a killed process
never blocks the next one."""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

POLL_S = 0.5


class LockBusy(TimeoutError):
    """The lock was not free within the time allowed."""


@contextmanager
def file_lock(path: Path, timeout_s: float | None = None) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created with its folder). Waits for ever when ``timeout_s`` is
    None, else raises LockBusy when the lock is not free within ``timeout_s`` seconds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        if timeout_s is None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        else:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LockBusy(f"{path} is held by another process") from None
                    time.sleep(POLL_S)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
