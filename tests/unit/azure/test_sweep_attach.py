"""A retried sweep stage never starts a second sweep: the job is named from the sweep key and an earlier
job of that name is followed (running), read (completed) or replaced by a named new attempt (failed)."""

from __future__ import annotations

import functools

import pytest

from backends.azure import AzureBackend
from backends.azure.resilience import RetryPolicy
from backends.azure.settings import AzureSettings
from backends.azure.sweeps import sweep_job_name
from backends.base import DataRef
from backends.domain.identity import training_code_hash
from backends.errors import SweepError, TransientBackendError
from backends.domain.spec import SweepSpec
from src.features import HEART_SCHEMA
from tests.unit.azure.fakes import FakeAzure

SHA = "7a" * 32
DATA = DataRef(uri=f"https://heartacct.blob.core.windows.net/data4ml/heartflow/train/{SHA}.csv", sha256=SHA, rows=272)
SPEC = SweepSpec(sampling="grid", max_total_trials=3, max_concurrent_trials=2)


def make(settings: AzureSettings, fake: FakeAzure) -> AzureBackend:
    return AzureBackend(settings, ml_client=fake, blob_service=object(), trial_reader=fake.trial_reader,
                        retry=RetryPolicy(attempts=3, initial_s=0, max_s=0, sleep=lambda s: None), sleep=lambda s: None)


@functools.cache
def default_backend() -> AzureBackend:
    """One backend with default settings (its Environment's pins are read once)."""
    return make(AzureSettings(_env_file=None), FakeAzure())  # type: ignore[call-arg]


def expected_name(attempt: int = 1, spec: SweepSpec = SPEC, sha: str = SHA, settings: AzureSettings | None = None) -> str:
    """The job name of a sweep: its identity, as Prefect's cache key reads it (``Backend.sweep_identity``)."""
    backend = default_backend() if settings is None else make(settings, FakeAzure())
    data = DataRef(uri=DATA.uri, sha256=sha, rows=DATA.rows)
    return sweep_job_name(backend.sweep_identity(data, spec, HEART_SCHEMA.to_json()), attempt)


def test_the_job_name_is_the_sweep_identity_prefect_caches_by(settings: AzureSettings) -> None:
    fake = FakeAzure()
    backend = make(settings, fake)
    result = backend.sweep(DATA, SPEC)
    identity = backend.sweep_identity(DATA, SPEC, HEART_SCHEMA.to_json())
    assert result.sweep_id == sweep_job_name(identity) == expected_name(settings=settings)
    assert fake.jobs.create_or_update.call_count == 1
    # same inputs -> same name; any input that changes the result -> another name; speed alone -> the same
    assert expected_name() == expected_name()
    assert expected_name(spec=SPEC.model_copy(update={"max_total_trials": 4})) != expected_name()
    assert expected_name(spec=SPEC.model_copy(update={"max_concurrent_trials": 1})) == expected_name()
    assert expected_name(sha="8b" * 32) != expected_name()
    environment = backend.sweep_environment()
    assert environment["environment"].startswith("azureml:") and environment["trained_as"] == "heart-classifier"


def test_the_identity_holds_the_environment_and_the_model_folder(settings: AzureSettings) -> None:
    """Azure's inputs beyond the interpreter's: the Environment (image + pins) and where trials save the model."""
    base = make(settings, FakeAzure())
    other_image = make(settings.model_copy(update={"environment_image": "mcr.microsoft.com/azureml/openmpi5.0-ubuntu24.04:latest"}),
                       FakeAzure())
    other_name = AzureBackend(settings, ml_client=FakeAzure(), blob_service=object(), model_name="another-model")
    schema = HEART_SCHEMA.to_json()
    ids = {b.sweep_identity(DATA, SPEC, schema) for b in (base, other_image, other_name)}
    assert len(ids) == 3


def test_a_package_upgrade_trains_a_new_sweep_instead_of_reusing_the_old(settings: AzureSettings) -> None:
    """The Environment's version follows its pins and image; a completed sweep trained on the old one is
    not reused (its model would be deployed on the new Environment)."""
    fake = FakeAzure()
    first = make(settings, fake).sweep(DATA, SPEC)
    upgraded = settings.model_copy(update={"environment_image": "mcr.microsoft.com/azureml/openmpi5.0-ubuntu24.04:latest"})
    second = make(upgraded, fake).sweep(DATA, SPEC)
    assert second.sweep_id != first.sweep_id and fake.jobs.create_or_update.call_count == 2


def test_the_code_hash_follows_the_training_code(tmp_path) -> None:
    (tmp_path / "model_train.py").write_text("print(1)\n")
    first = training_code_hash(tmp_path)
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.pyc").write_bytes(b"cache")
    assert training_code_hash(tmp_path) == first  # caches do not count
    (tmp_path / "model_train.py").write_text("print(2)\n")
    assert training_code_hash(tmp_path) != first


def test_a_retry_while_following_attaches_to_the_running_sweep(settings: AzureSettings) -> None:
    fake = FakeAzure(sweep_statuses=("Running", "Running", "Completed"))
    backend = make(settings, fake)
    # the first attempt: a transient failure while following, after the submit
    original = fake.jobs.get.side_effect
    calls = {"n": 0}

    def flaky_get(name: str) -> object:
        calls["n"] += 1
        if calls["n"] == 2:  # the first poll after the submit: Azure keeps failing for this attempt
            from tests.unit.azure.fakes import http_error
            raise http_error(503)
        return original(name)

    fake.jobs.get.side_effect = flaky_get
    backend.retry = RetryPolicy(attempts=1, initial_s=0, max_s=0, sleep=lambda s: None)
    with pytest.raises(TransientBackendError):
        backend.sweep(DATA, SPEC)
    assert fake.jobs.create_or_update.call_count == 1
    # the task retries the whole stage: the same name is found running and followed, nothing submitted
    fake.jobs.get.side_effect = original
    result = make(settings, fake).sweep(DATA, SPEC)
    assert fake.jobs.create_or_update.call_count == 1
    assert result.sweep_id == expected_name() and result.best.number == 1


def test_a_completed_sweep_is_read_not_rerun(settings: AzureSettings) -> None:
    fake = FakeAzure(sweep_statuses=("Running",))  # would never end if it were followed
    fake.earlier_jobs[expected_name()] = "Completed"
    result = make(settings, fake).sweep(DATA, SPEC)
    fake.jobs.create_or_update.assert_not_called()
    assert result.sweep_id == expected_name() and len(result.trials) == 3


def test_a_failed_or_canceled_sweep_gets_a_new_named_attempt(settings: AzureSettings) -> None:
    fake = FakeAzure()
    fake.earlier_jobs[expected_name(1)] = "Failed"
    fake.earlier_jobs[expected_name(2)] = "Canceled"
    result = make(settings, fake).sweep(DATA, SPEC)
    assert fake.jobs.create_or_update.call_count == 1
    assert result.sweep_id == expected_name(3) and result.sweep_id.endswith("-a3")


def test_a_running_later_attempt_is_followed(settings: AzureSettings) -> None:
    fake = FakeAzure(sweep_statuses=("Running", "Completed"))
    fake.earlier_jobs[expected_name(1)] = "Failed"
    fake.earlier_jobs[expected_name(2)] = "Running"
    result = make(settings, fake).sweep(DATA, SPEC)
    fake.jobs.create_or_update.assert_not_called()
    assert result.sweep_id == expected_name(2)


def test_endless_failures_stop_with_a_clear_error(settings: AzureSettings) -> None:
    from backends.azure.sweeps import MAX_ATTEMPTS

    fake = FakeAzure()
    for attempt in range(1, MAX_ATTEMPTS + 1):
        fake.earlier_jobs[expected_name(attempt)] = "Failed"
    with pytest.raises(SweepError, match="failed or was canceled"):
        make(settings, fake).sweep(DATA, SPEC)
    fake.jobs.create_or_update.assert_not_called()


def test_a_submit_whose_answer_was_lost_attaches_instead_of_failing(settings: AzureSettings) -> None:
    """The submit reaches Azure but the connection drops before the answer: the retried submit of the
    same name meets the service's "A job with this name already exists" (a 400 UserError, as the fake answers
    it), and the run follows the job the first submit created."""
    from azure.core.exceptions import ServiceResponseError

    fake = FakeAzure()
    original = fake.jobs.create_or_update.side_effect
    calls = {"n": 0}

    def lossy(job: object, **kwargs: object) -> object:
        calls["n"] += 1
        created = original(job, **kwargs)
        if calls["n"] == 1:
            raise ServiceResponseError("connection closed before the response")
        return created

    fake.jobs.create_or_update.side_effect = lossy
    result = make(settings, fake).sweep(DATA, SPEC)
    assert calls["n"] == 2 and result.sweep_id == expected_name() and result.best.number == 1


def test_only_the_already_exists_answer_means_the_job_exists() -> None:
    from azure.core.exceptions import ResourceExistsError

    from backends.azure.sweeps import job_exists
    from tests.unit.azure.fakes import JOB_EXISTS_MESSAGE, http_error

    assert job_exists(http_error(400, JOB_EXISTS_MESSAGE)) and job_exists(ResourceExistsError("Conflict"))
    assert job_exists(http_error(409, "Conflict"))
    assert not job_exists(http_error(400, "(UserError) Compute heartclassifycluster not found"))
    assert not job_exists(http_error(500, "already exists"))
