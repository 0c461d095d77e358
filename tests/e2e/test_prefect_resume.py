"""Kill and resume: the flow is SIGKILLed during the sweep, then rerun. The rerun finishes with every trial
recorded exactly once in MLflow, the trials that had finished before the kill are reused (same run, same
end time, same metrics), and the upload comes from Prefect's cache."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from backends.local.backend import LocalBackend
from tests.integration.prefect.server import REPO, PrefectServer, running_server

pytestmark = pytest.mark.slow

TRIALS = 8
ENDPOINT = "e2e-resume"
RUN_FLOW = """
import json, sys
from backends.domain.spec import PipelineSpec
from flows.train_and_deploy import train_and_deploy
state = train_and_deploy(spec=PipelineSpec.model_validate_json(sys.argv[1]), return_state=True)
print(json.dumps({"flow_run_id": str(state.state_details.flow_run_id), "state": state.type.value}))
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    with running_server(tmp_path_factory.mktemp("prefect-resume")) as running:
        yield running


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "home"
    LocalBackend(tmp_path / "home").teardown(ENDPOINT)


def _spec(home: Path) -> str:
    return json.dumps({
        "backend": "local", "home": str(home),
        # One trial at a time, so the kill lands between finished and unfinished trials.
        "sweep": {"max_total_trials": TRIALS, "max_concurrent_trials": 1, "seed": 7},
        "deploy": {"endpoint_name": ENDPOINT, "stop_endpoint": True},
    })


def _start(server: PrefectServer, home: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", RUN_FLOW, _spec(home)], cwd=REPO, env=server.env, stdout=open(log, "wb"),
        stderr=subprocess.STDOUT, start_new_session=True,
    )


def _trial_runs(home: Path) -> list[dict[str, Any]]:
    """Every trial run in the MLflow store, read straight from SQLite (deleted ones included)."""
    database = home / "mlflow.db"
    if not database.exists():
        return []
    query = """
        SELECT CAST(n.value AS INTEGER) AS number, r.run_uuid, r.status, r.lifecycle_stage, r.end_time,
               (SELECT value FROM metrics m WHERE m.run_uuid = r.run_uuid AND m.key = 'accuracy') AS accuracy
        FROM runs r
        JOIN tags n ON n.run_uuid = r.run_uuid AND n.key = 'heartflow.trial_number'
        JOIN tags k ON k.run_uuid = r.run_uuid AND k.key = 'heartflow.kind' AND k.value = 'trial'
    """
    for _ in range(50):
        try:
            with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as connection:
                connection.row_factory = sqlite3.Row
                return [dict(row) for row in connection.execute(query)]
        except sqlite3.OperationalError:  # the schema is being created, or a writer holds the lock
            time.sleep(0.2)
    raise AssertionError(f"could not read {database}")


def test_a_sweep_killed_midway_resumes_and_records_every_trial_once(server: PrefectServer, home: Path, tmp_path: Path) -> None:
    first = _start(server, home, tmp_path / "first.log")
    deadline = time.monotonic() + 180
    finished_before: list[dict[str, Any]] = []
    try:
        while time.monotonic() < deadline and first.poll() is None:
            finished_before = [r for r in _trial_runs(home) if r["status"] == "FINISHED"]
            if len(finished_before) >= 2:
                break
            time.sleep(0.2)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)  # the flow and its trial workers, mid-sweep
        first.wait(timeout=30)
    log = (tmp_path / "first.log").read_text(errors="replace")
    assert first.returncode == -signal.SIGKILL, f"the first run was not killed mid-sweep:\n{log[-3000:]}"
    finished_before = [r for r in _trial_runs(home) if r["status"] == "FINISHED"]
    assert 2 <= len(finished_before) < TRIALS, finished_before

    rerun = subprocess.run(
        [sys.executable, "-c", RUN_FLOW, _spec(home)], cwd=REPO, env=server.env, capture_output=True, text=True,
        timeout=300, check=False,
    )
    assert rerun.returncode == 0, f"{rerun.stdout[-3000:]}\n{rerun.stderr[-5000:]}"
    outcome = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert outcome["state"] == "COMPLETED"

    runs = _trial_runs(home)
    active = [r for r in runs if r["lifecycle_stage"] == "active"]
    numbers = sorted(r["number"] for r in active)
    assert numbers == list(range(TRIALS)), f"each trial once: {numbers}"
    assert all(r["status"] == "FINISHED" for r in active)
    # A trial cut off by the kill was deleted and run again; nothing that had finished was.
    by_id = {r["run_uuid"]: r for r in active}
    for before in finished_before:
        after = by_id.get(before["run_uuid"])
        assert after is not None, f"trial {before['number']} was recomputed"
        assert (after["end_time"], after["accuracy"]) == (before["end_time"], before["accuracy"])
    assert len(active) - len(finished_before) == TRIALS - len(finished_before)

    with SyncPrefectClient(api=server.api_url) as client:
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[outcome["flow_run_id"]]))
        )
    states = {t.name: t.state.name for t in task_runs if t.state is not None}
    upload = [state for name, state in states.items() if name.startswith("upload-data-")]
    sweep = [state for name, state in states.items() if name.startswith("run-sweep-")]
    assert upload == ["Cached"], states  # finished before the kill: not redone
    assert sweep == ["Completed"], states  # cut off by the kill: resumed, not cached
