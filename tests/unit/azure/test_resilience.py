"""One retry layer: requests' own network errors are transient, pagers are read inside the retry,
Retry-After is honoured, the clients heartflow builds do not retry underneath, a trial whose metrics could
not be read because of a blip is never dropped, and the pick is cross-checked with Azure's best trial."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import requests

from backends.azure import AzureBackend
from backends.azure.resilience import RetryPolicy, is_transient, retry_after_s
from backends.azure.settings import AzureSettings
from backends.azure.trials import TrialData, read_trial
from backends.base import DataRef, TrialStatus
from backends.errors import SweepError, TransientBackendError
from backends.domain.spec import SweepSpec
from tests.unit.azure.fakes import FakeAzure, http_error

SHA = "3c" * 32
DATA = DataRef(uri=f"https://heartacct.blob.core.windows.net/data4ml/heartflow/train/{SHA}.csv", sha256=SHA, rows=272)
SPEC = SweepSpec(sampling="grid", max_total_trials=3, max_concurrent_trials=2)


def no_sleep_policy(attempts: int = 3, slept: list[float] | None = None) -> RetryPolicy:
    return RetryPolicy(attempts=attempts, initial_s=0, max_s=0, sleep=(slept.append if slept is not None else lambda s: None))


def make(settings: AzureSettings, fake: FakeAzure, reader: Any = None) -> AzureBackend:
    return AzureBackend(settings, ml_client=fake, blob_service=object(), trial_reader=reader or fake.trial_reader,
                        retry=no_sleep_policy(), sleep=lambda s: None)


@pytest.mark.parametrize("exc", [requests.ConnectionError("reset"), requests.Timeout("slow"),
                                 requests.exceptions.ReadTimeout("slow read"), http_error(503), ConnectionResetError()])
def test_network_failures_of_every_library_are_transient(exc: BaseException) -> None:
    assert is_transient(exc)
    calls = {"n": 0}

    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] == 1:
            raise exc
        return "ok"

    assert no_sleep_policy().call("read", flaky) == "ok" and calls["n"] == 2


def test_retry_after_is_honoured() -> None:
    error = http_error(429)
    error.response = SimpleNamespace(headers={"Retry-After": "7"}, status_code=429)
    assert retry_after_s(error) == 7.0
    slept: list[float] = []
    calls = {"n": 0}

    def throttled() -> str:
        calls["n"] += 1
        if calls["n"] == 1:
            raise error
        return "ok"

    assert no_sleep_policy(slept=slept).call("read", throttled) == "ok"
    assert slept == [7.0]
    millis = http_error(503)
    millis.response = SimpleNamespace(headers={"x-ms-retry-after-ms": "1500"}, status_code=503)
    assert retry_after_s(millis) == 1.5 and retry_after_s(http_error(503)) is None


def test_a_pager_that_fails_on_a_later_page_is_retried_whole() -> None:
    attempts = {"n": 0}

    def pager() -> Iterator[int]:
        attempts["n"] += 1
        yield 1
        if attempts["n"] == 1:
            raise requests.ConnectionError("dropped on page two")
        yield 2

    assert no_sleep_policy().listing("list", pager) == [1, 2] and attempts["n"] == 2


def test_the_clients_heartflow_builds_do_not_retry_underneath(settings: AzureSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    import azure.ai.ml

    seen: dict[str, Any] = {}

    class Recorder:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            seen.update(kwargs)

    monkeypatch.setattr(azure.ai.ml, "MLClient", Recorder)
    AzureBackend(settings, credential=object()).client("sweep")
    assert seen["retry_total"] == 0
    backend = AzureBackend(settings, credential=object())
    assert backend.blob_store().service._config.retry_policy.total_retries == 0


def test_a_blip_while_reading_a_trial_is_retried_not_a_failed_trial(settings: AzureSettings) -> None:
    fake = FakeAzure()
    failures = {"sweep_1": 2}

    def blippy(run_id: str) -> TrialData:
        run = run_id.replace(fake.sweep_name or "", "sweep")
        if failures.get(run, 0):
            failures[run] -= 1
            raise requests.ConnectionError("connection reset by peer")
        return fake.trial_reader(run_id)

    backend = make(settings, fake, reader=lambda run_id: backend.retry.call("read trial", blippy, run_id))
    result = backend.sweep(DATA, SPEC)
    assert [t.status for t in result.trials] == [TrialStatus.COMPLETED] * 3
    assert result.best.number == 1  # trial 1 (0.85, lowest number) was not dropped


def test_a_trial_that_stays_unreadable_fails_the_stage_instead_of_being_dropped() -> None:
    job = SimpleNamespace(name="sweep_1", status="Completed", studio_url=None, inputs={})

    def down(run_id: str) -> TrialData:
        raise requests.ConnectionError("still down")

    with pytest.raises(TransientBackendError, match="sweep_1"):
        read_trial(job, down, {"n_estimators"})
    # a trial that truly has no data (not found) is still kept, marked failed
    missing = read_trial(job, lambda run_id: (_ for _ in ()).throw(KeyError("no run")), {"n_estimators"})
    assert missing.status is TrialStatus.FAILED and "could not be read" in (missing.error or "")


def test_azures_best_trial_must_be_one_heartflow_read(settings: AzureSettings) -> None:
    fake = FakeAzure(trials={0: ("Completed", {"n_estimators": 10}, {"accuracy": 0.80}),
                             1: ("Completed", {"n_estimators": 50}, {"accuracy": 0.85})})
    fake.best_child = lambda name: f"{name}_1"
    assert make(settings, fake).sweep(DATA, SPEC).best.number == 1  # agreement: fine

    other = FakeAzure(trials={0: ("Completed", {"n_estimators": 10}, {"accuracy": 0.80}),
                              1: ("Completed", {"n_estimators": 50}, {"accuracy": 0.85})})
    # Azure names a trial heartflow did not read: heartflow's pick may be worse, so the run stops
    other.best_child = lambda name: f"{name}_7"
    with pytest.raises(SweepError, match="could not read"):
        make(settings, other).sweep(DATA, SPEC)


def test_a_tie_broken_differently_is_only_a_warning(settings: AzureSettings, caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeAzure()  # trials 1 and 2 both 0.85
    fake.best_child = lambda name: f"{name}_2"
    result = make(settings, fake).sweep(DATA, SPEC)
    assert result.best.number == 1 and "ties -> lower trial number" in caplog.text


def test_azure_best_strictly_better_than_the_pick_is_an_error() -> None:
    from backends.azure.sweeps import check_best_trial
    from backends.base import TrialResult

    ours = TrialResult(number=0, run_id="s_0", params={}, metrics={"accuracy": 0.8}, status=TrialStatus.COMPLETED)
    theirs = TrialResult(number=1, run_id="s_1", params={}, metrics={"accuracy": 0.9}, status=TrialStatus.COMPLETED)
    with pytest.raises(SweepError, match="better than"):
        check_best_trial("s_1", ours, (ours, theirs), "accuracy", "maximize", "s")
    check_best_trial("s_0", ours, (ours, theirs), "accuracy", "maximize", "s")  # agreement
