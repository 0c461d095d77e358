"""A rich progress bar fed by the sweep's progress events (logger "heartflow.progress")."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn


class _ProgressHandler(logging.Handler):
    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self._progress = progress
        self._task: TaskID | None = None

    def emit(self, record: logging.LogRecord) -> None:
        total = getattr(record, "total", None)
        finished = getattr(record, "finished", None)
        if total is None or finished is None:
            return
        if self._task is None:
            self._task = self._progress.add_task("sweep trials", total=total)
        self._progress.update(self._task, completed=finished, total=total)


@contextmanager
def sweep_progress(console: Console) -> Iterator[None]:
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=False,
    )
    handler = _ProgressHandler(progress)
    logger = logging.getLogger("heartflow.progress")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(handler)
    try:
        with progress:
            yield
    finally:
        logger.removeHandler(handler)
