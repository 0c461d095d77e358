"""Retries and the rollout slot with Prefect's real engine and the session's server (in this process)."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pandas as pd
import pytest
from prefect import flow, task
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import VariableCreate
from prefect.settings import PREFECT_API_URL, temporary_settings

from backends.base import DataRef
from backends.domain.rollout_holder import HolderRecord, slot_name
from backends.errors import DataValidationError, DeploymentError, EvaluationError, TransientBackendError
from backends.local.backend import LocalBackend
from backends.domain.spec import DataSpec
from tasks import stages
from tasks.retries import is_transient, retry_only_transient
from tasks.rollout import rollout_slot
from tests.integration.prefect.server import REPO, PrefectServer


@pytest.fixture
def on_test_server(prefect_server: PrefectServer) -> Iterator[None]:
    with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}):
        yield


def _dropped_connection() -> EvaluationError:
    try:
        raise ConnectionResetError("connection reset by peer")
    except ConnectionResetError as exc:
        try:
            raise EvaluationError("endpoint did not answer") from exc
        except EvaluationError as wrapped:
            return wrapped


def test_transient_means_throttling_or_a_dropped_connection_anywhere_in_the_cause_chain() -> None:
    assert is_transient(TransientBackendError("429"))
    assert is_transient(_dropped_connection())
    assert not is_transient(DataValidationError("column 'age' has an empty cell"))
    assert not is_transient(EvaluationError("endpoint answered HTTP 400"))
    assert not is_transient(ValueError("bad"))
    assert not is_transient(None)


class FlakyUploads(LocalBackend):
    """A real local backend whose first ``failures`` uploads drop the connection, as a network blip would."""

    def __init__(self, home: Path, failures: int) -> None:
        super().__init__(home)
        self.failures = failures
        self.attempts = 0

    def upload(self, train: pd.DataFrame) -> DataRef:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise _dropped_connection()
        return super().upload(train)


def test_the_upload_stage_retries_a_dropped_connection_and_validation_fails_at_once(
    on_test_server: None, api: SyncPrefectClient, tmp_path: Path,
) -> None:
    backend = FlakyUploads(tmp_path / "home", failures=2)
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("age,output\nabc,1\n")

    @flow(name="stage-retry-check")
    def check() -> tuple[DataRef, Any]:
        prepared = stages.validate_data(DataSpec()).prepared
        uploaded = stages.upload_data.with_options(retry_delay_seconds=0, refresh_cache=True)(backend, prepared)
        invalid = stages.validate_data(DataSpec(path=str(bad_csv)), return_state=True)
        return uploaded, invalid

    uploaded, invalid = check()
    assert backend.attempts == 3 and uploaded.rows > 0  # two dropped connections, then the upload
    assert invalid.is_failed() and "DataValidationError" in (invalid.message or "")
    task_run_id = invalid.state_details.task_run_id
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # Prefect 3 records task runs through events, asynchronously
        run = api.read_task_run(task_run_id)
        if run.state and run.state.is_final():
            break
        time.sleep(0.5)
    assert run.run_count == 1, f"a validation error was retried ({run.run_count} attempts)"


def test_prefect_retries_a_transient_failure_and_not_a_validation_error(on_test_server: None) -> None:
    attempts = {"flaky": 0, "invalid": 0}

    @task(retries=3, retry_delay_seconds=0, retry_condition_fn=retry_only_transient)
    def flaky() -> int:
        attempts["flaky"] += 1
        if attempts["flaky"] < 3:
            raise _dropped_connection()
        return attempts["flaky"]

    @task(retries=3, retry_delay_seconds=0, retry_condition_fn=retry_only_transient)
    def invalid() -> None:
        attempts["invalid"] += 1
        raise DataValidationError("column 'age' has an empty cell at row 3")

    @flow(name="retry-check")
    def check() -> tuple[int, bool, str]:
        ok = flaky(return_state=True)
        bad = invalid(return_state=True)
        return ok.result(), bad.is_failed(), bad.message or ""

    value, failed, message = check()
    assert value == 3 and attempts["flaky"] == 3
    assert failed and attempts["invalid"] == 1 and "DataValidationError" in message


def test_the_rollout_slot_admits_one_run_at_a_time(prefect_server: PrefectServer, api: SyncPrefectClient) -> None:
    spans: list[tuple[float, float]] = []
    errors: list[BaseException] = []

    def rollout() -> None:
        try:
            # Settings live in a context variable: each thread (like each run) brings its own.
            with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}), \
                    rollout_slot("local", "slot-check", timeout_s=60):
                started = time.monotonic()
                time.sleep(1.5)
                spans.append((started, time.monotonic()))
        except BaseException as exc:  # noqa: BLE001 - collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=rollout) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert not errors, errors
    assert len(spans) == 2
    (first_start, first_end), (second_start, _) = sorted(spans)
    assert second_start >= first_end - 0.05, f"rollouts overlapped: {spans}"
    assert api.read_variable_by_name(slot_name("local", "slot-check")) is None, "the slot was not released"


def test_a_run_that_cannot_get_the_slot_from_a_live_holder_fails_naming_it(prefect_server: PrefectServer) -> None:
    held = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}), \
                rollout_slot("local", "slot-busy", timeout_s=30, holder="the first rollout"):
            held.set()
            release.wait(30)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(30)
        with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}):
            with pytest.raises(DeploymentError, match="not free within 1 s: the first rollout"), \
                    rollout_slot("local", "slot-busy", timeout_s=1):
                pytest.fail("the slot was granted twice")
    finally:
        release.set()
        thread.join(timeout=30)


HOLDER_SCRIPT = """
import sys, time
from prefect import flow
from tasks.rollout import rollout_slot

@flow(name="slot-holder", flow_run_name="slot-holder-to-be-killed")
def hold() -> None:
    with rollout_slot("local", sys.argv[1], timeout_s=60):
        print("HELD", flush=True)
        time.sleep(600)

hold()
"""


def test_a_holder_killed_while_holding_the_slot_is_reclaimed_at_once(
    prefect_server: PrefectServer, api: SyncPrefectClient, caplog: pytest.LogCaptureFixture,
) -> None:
    """SIGKILL leaves no chance to release: the next run sees the holder's process gone, reclaims the slot,
    says so, and marks the holder's run Crashed (it stayed Running in the API)."""
    env = {**prefect_server.env, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER_SCRIPT, "slot-killed"], env=env, cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert holder.stdout is not None
        for line in holder.stdout:
            if line.strip() == "HELD":
                break
        else:
            pytest.fail("the holder never took the slot")
        record = HolderRecord.from_json(api.read_variable_by_name(slot_name("local", "slot-killed")).value)
        assert record is not None and record.pid == holder.pid and record.flow_run_id
    finally:
        holder.kill()
        holder.wait(30)
    asked = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="tasks.rollout"), \
            temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}), \
            rollout_slot("local", "slot-killed", timeout_s=60):
        waited = time.monotonic() - asked
    assert waited < 30, f"waited {waited:.0f} s for a dead holder"
    reclaimed = [r.getMessage() for r in caplog.records if "reclaimed" in r.getMessage()]
    assert reclaimed and reclaimed[0].startswith(
        "rollout slot of slot-killed was held by flow run slot-holder-to-be-killed (crashed "), reclaimed
    assert f"process {holder.pid}" in reclaimed[0]
    run = api.read_flow_run(UUID(record.flow_run_id))
    assert run.state is not None and run.state.type.value == "CRASHED"


def _foreign_holder(api: SyncPrefectClient, endpoint: str, *, heartbeat: datetime, flow_run_id: str | None) -> None:
    """A holder on another host (its process cannot be looked at), written as heartflow writes one."""
    record = HolderRecord(endpoint=endpoint, holder="flow run worker-on-another-host", host="another-host", pid=4242,
                          pid_started=0.0, acquired=heartbeat.isoformat(), heartbeat=heartbeat.isoformat(),
                          flow_run_id=flow_run_id)
    api.create_variable(VariableCreate(name=slot_name("local", endpoint), value=record.to_json()))


@pytest.mark.parametrize(("case", "age_s", "unknown_run", "why"), [
    ("unknown-run", 0, True, "unknown to the Prefect API"),
    ("stale", 3600, False, "no heartbeat since"),
])
def test_a_holder_on_another_host_is_reclaimed_when_its_run_is_unknown_or_its_heartbeat_stopped(
    prefect_server: PrefectServer, api: SyncPrefectClient, caplog: pytest.LogCaptureFixture,
    case: str, age_s: int, unknown_run: bool, why: str,
) -> None:
    endpoint = f"slot-{case}"
    _foreign_holder(api, endpoint, heartbeat=datetime.now(UTC) - timedelta(seconds=age_s),
                    flow_run_id=str(uuid4()) if unknown_run else None)
    with caplog.at_level(logging.WARNING, logger="tasks.rollout"), \
            temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}), \
            rollout_slot("local", endpoint, timeout_s=30):
        pass
    assert any(why in r.getMessage() and "reclaimed" in r.getMessage() for r in caplog.records), caplog.text


def test_the_holder_renews_its_heartbeat_while_it_holds_the_slot(
    prefect_server: PrefectServer, api: SyncPrefectClient,
) -> None:
    name = slot_name("local", "slot-beat")
    with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}), \
            rollout_slot("local", "slot-beat", timeout_s=30, heartbeat_s=0.5):
        first = HolderRecord.from_json(api.read_variable_by_name(name).value)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            time.sleep(1.1)  # the record's times are to the second
            now = HolderRecord.from_json(api.read_variable_by_name(name).value)
            if now is not None and first is not None and now.heartbeat > first.heartbeat:
                break
        else:
            pytest.fail("the heartbeat was never renewed")
        assert now.acquired == first.acquired and now.pid == first.pid
    assert api.read_variable_by_name(name) is None


def test_a_live_holder_on_another_host_is_waited_for(prefect_server: PrefectServer, api: SyncPrefectClient) -> None:
    _foreign_holder(api, "slot-live", heartbeat=datetime.now(UTC), flow_run_id=None)
    with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}):
        with pytest.raises(DeploymentError, match="worker-on-another-host on another-host"), \
                rollout_slot("local", "slot-live", timeout_s=2):
            pytest.fail("a live holder's slot was taken")
    assert api.read_variable_by_name(slot_name("local", "slot-live")) is not None
