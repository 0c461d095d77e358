"""Two flow runs that start at once on a new heartflow home (two deployments' runs on one worker) both
open it: the MLflow store is set up by one process at a time."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow


def _open_home(home: str, barrier: Any, results: Any) -> None:
    from backends.local.backend import LocalBackend

    barrier.wait()
    try:
        LocalBackend(home)
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the test process
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_a_new_home_at_once_all_succeed(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(3), context.Queue()
    processes = [context.Process(target=_open_home, args=(str(tmp_path / "home"), barrier, results)) for _ in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [results.get(timeout=5) for _ in processes] == ["ok"] * 3
