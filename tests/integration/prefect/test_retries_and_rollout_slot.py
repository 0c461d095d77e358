"""Retries and the rollout slot with Prefect's real engine and the session's server (in this process)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from prefect import flow, task
from prefect.client.orchestration import SyncPrefectClient
from prefect.settings import PREFECT_API_URL, temporary_settings

from backends.base import DataRef
from backends.errors import DataValidationError, DeploymentError, EvaluationError, TransientBackendError
from backends.local.backend import LocalBackend
from backends.domain.spec import DataSpec
from tasks import stages
from tasks.retries import is_transient, retry_only_transient
from tasks.rollout import deploy_limit_name, ensure_deploy_limit, rollout_slot
from tests.integration.prefect.server import PrefectServer


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
    name = deploy_limit_name("local", "slot-check")
    spans: list[tuple[float, float]] = []
    errors: list[BaseException] = []

    def rollout() -> None:
        try:
            # Settings live in a context variable: each thread (like each run) brings its own.
            with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}), rollout_slot(name, timeout_s=60):
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
    limit = api.read_global_concurrency_limit_by_name(name)
    assert limit.limit == 1 and limit.active and limit.active_slots == 0


def test_an_existing_limit_is_left_as_operators_set_it(on_test_server: None, api: SyncPrefectClient) -> None:
    name = deploy_limit_name("local", "ops-owned")
    api.upsert_global_concurrency_limit_by_name(name, limit=3)
    ensure_deploy_limit(name)
    assert api.read_global_concurrency_limit_by_name(name).limit == 3


def test_a_run_that_cannot_get_the_slot_in_time_fails_with_a_deployment_error(prefect_server: PrefectServer) -> None:
    name = deploy_limit_name("local", "slot-busy")
    held = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}), rollout_slot(name, timeout_s=30):
            held.set()
            release.wait(30)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(30)
        with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}):
            with pytest.raises(DeploymentError, match="was not free within 1 s"), rollout_slot(name, timeout_s=1):
                pytest.fail("the slot was granted twice")
    finally:
        release.set()
        thread.join(timeout=30)


def test_a_failed_stage_is_named_after_its_task_run() -> None:
    from types import SimpleNamespace

    from flows.train_and_deploy import _task_run_name

    backend = SimpleNamespace(name="local")
    prepared = SimpleNamespace(train_sha256="60723494135e7fe5")
    assert _task_run_name(stages.upload_data, (backend, prepared), {}) == "upload-data-local-60723494"
    spec = SimpleNamespace(path="/data/clinic.csv")
    assert _task_run_name(stages.validate_data, (spec,), {}) == "validate-data-clinic"
    assert _task_run_name(stages.upload_data, (), {}) == "upload-data"  # unbindable: the task's name
