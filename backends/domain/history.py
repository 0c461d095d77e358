"""What both backends record about promotions: the history log (JSON lines), the model-version tags
that say a version's status, and who triggered a change."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Protocol

from backends.results import HistoryEntry, ModelVersion

# Model-version tags, the same on both backends.
TAG_STATUS = "heartflow.status"  # candidate | champion | rejected | retired
TAG_HOLDOUT_ACCURACY = "heartflow.holdout_accuracy"
TAG_REASON = "heartflow.reason"


def recorded_holdout_accuracy(model: ModelVersion | None) -> float | None:
    """The holdout accuracy tagged on ``model`` when it was last evaluated for a gate, if any."""
    if model is None or TAG_HOLDOUT_ACCURACY not in model.tags:
        return None
    return float(model.tags[TAG_HOLDOUT_ACCURACY])


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
