"""What both backends record about promotions: the history log (JSON lines), the model-version tags
that say a version's status, and who triggered a change."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Protocol

# The model-version tags live in backends.domain.lineage; named here too for the modules that read history.
from backends.domain.lineage import TAG_HOLDOUT_ACCURACY as TAG_HOLDOUT_ACCURACY
from backends.domain.lineage import TAG_REASON as TAG_REASON
from backends.domain.lineage import TAG_STATUS as TAG_STATUS
from backends.domain.lineage import recorded_holdout_accuracy as recorded_holdout_accuracy
from backends.results import HistoryEntry


def who() -> str:
    """user@host of this process, for the history's "triggered by"."""
    import getpass
    import socket

    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except (KeyError, OSError):
        return "unknown"


class HistoryStore(Protocol):
    """Where promotion history is kept: a JSON-lines file (HistoryLog) or a shared MLflow store."""

    def append(self, entry: HistoryEntry) -> None: ...

    def read(self, endpoint_name: str | None = None) -> tuple[HistoryEntry, ...]: ...


class HistoryLog:
    def __init__(self, path: Path) -> None:
        self._path = path

    def append(self, entry: HistoryEntry) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(dataclasses.asdict(entry), sort_keys=True) + "\n"
        # One write of a whole line with O_APPEND: concurrent writers never interleave within a line.
        fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self, endpoint_name: str | None = None) -> tuple[HistoryEntry, ...]:
        if not self._path.exists():
            return ()
        entries = []
        for line in self._path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                entry = HistoryEntry.from_record(json.loads(line))
                if endpoint_name is None or entry.endpoint == endpoint_name:
                    entries.append(entry)
        return tuple(entries)
