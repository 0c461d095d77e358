"""The operation sequence of whole runs against a fake control plane built on the SDK's operations
classes: success, throttling, failed trials, a failed deployment, promotion, rejection, teardown."""

from __future__ import annotations

import logging

import pytest

from backends.azure import AzureBackend
from backends.azure.resilience import RetryPolicy
from backends.azure.settings import AzureSettings
from backends.base import TrialStatus
from backends.errors import DeploymentError, SweepError
from backends.domain.spec import DeploySpec, SweepSpec
from tests.unit.azure.builders import DATA, ENDPOINT, SHA, SPEC, make, report
from tests.unit.azure.fakes import FakeAzure, http_error

def test_whole_run_succeeds_in_order(settings: AzureSettings, caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeAzure()
    backend = make(settings, fake)
    seen: list[tuple[int, int, int]] = []
    with caplog.at_level(logging.INFO):
        sweep = backend.sweep(DATA, SPEC, progress=lambda t, done, total: seen.append((t.number, done, total)))
    # get-or-create of what the sweep needs, then the submit with the datastore path of the upload
    fake.compute.begin_create_or_update.assert_called_once()
    fake.datastores.create_or_update.assert_called_once()
    fake.environments.create_or_update.assert_called_once()
    submitted = fake.jobs.create_or_update.call_args.args[0]
    # the trials read the split as a versioned data asset on the datastore path of the upload (lineage)
    assert submitted.inputs["input_data"].path == f"azureml:heartflow-train:{SHA[:16]}"
    asset = fake.data_assets[("heartflow-train", SHA[:16])]
    assert asset.path == f"azureml://datastores/heartflowdata/paths/heartflow/train/{SHA}.csv"
    assert asset.tags["sha256"] == SHA and submitted.identity is None  # the datastore holds the account key
    fake.jobs.list.assert_called_with(parent_job_name=sweep.sweep_id)
    assert "https://ml.azure.com/runs/" in caplog.text  # the Studio URL is logged
    assert [t.number for t in sweep.trials] == [0, 1, 2] and sorted(seen)[-1][1] == 3
    assert sweep.best.number == 1  # 0.85 twice: the lower trial number wins
    assert sweep.best.params == {"n_estimators": 50}

    model = backend.register(sweep)
    assert (model.name, model.version, model.source_run_id) == ("heart-classifier", "1", f"{sweep.sweep_id}_1")
    assert model.tags["heartflow.data_sha256"] == SHA and model.tags["heartflow.status"] == "candidate"
    registered = fake.model_versions["heart-classifier"][0]
    assert registered.path == f"azureml://jobs/{sweep.sweep_id}_1/outputs/artifacts/paths/outputs/heart-classifier/"
    assert backend.register(sweep).version == "1"  # registering the same trial again is a no-op

    endpoint = backend.deploy(model, DeploySpec())
    assert (endpoint.deployment, dict(endpoint.traffic)) == ("blue", {"blue": 100})
    assert fake.endpoint(ENDPOINT).auth_mode == "key"
    assert backend.endpoint_key(endpoint) == f"k-{ENDPOINT}"
    assert f"k-{ENDPOINT}" not in caplog.text
    promoted = backend.promote(endpoint, model, report(0.9))
    assert dict(promoted.traffic) == {"blue": 100}
    assert backend.champion("heart-classifier").version == "1"
    (entry,) = backend.history(ENDPOINT)
    assert (entry.event, entry.model_version, entry.accuracy) == ("promoted", "1", 0.9)

    # the next run deploys green beside blue with no traffic, then promotes it
    second = backend.register(sweep.__class__(**{**sweep.__dict__, "best": sweep.trials[2]}))
    candidate = backend.deploy(second, DeploySpec())
    assert candidate.deployment == "green" and fake.traffic(ENDPOINT) == {"blue": 100, "green": 0}
    backend.promote(candidate, second, report(0.92, "green"))
    assert fake.traffic(ENDPOINT) == {"blue": 0, "green": 100} or fake.traffic(ENDPOINT) == {"green": 100}
    assert (ENDPOINT, "blue") not in fake.deployments
    assert backend.champion("heart-classifier").version == "2"
    assert fake.model_versions["heart-classifier"][0].tags["heartflow.status"] == "retired"
    assert [e.model_version for e in backend.history(ENDPOINT)] == ["1", "2"]

    backend.teardown(ENDPOINT)
    backend.teardown(ENDPOINT)  # idempotent
    assert ENDPOINT not in fake.endpoints


def test_throttling_is_retried_then_succeeds(settings: AzureSettings, caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeAzure(throttle=("jobs.create_or_update", "jobs.get", "online_deployments.begin_create_or_update"))
    backend = make(settings, fake)
    with caplog.at_level(logging.WARNING):
        sweep = backend.sweep(DATA, SPEC)
        endpoint = backend.deploy(backend.register(sweep), DeploySpec())
    assert fake.jobs.create_or_update.call_count == 2
    # the retried submit names the same job, so it cannot start a second sweep
    names = {call.args[0].name for call in fake.jobs.create_or_update.call_args_list}
    assert len(names) == 1
    assert endpoint.deployment == "blue" and "429" in caplog.text


def test_throttling_that_never_stops_is_a_transient_error(settings: AzureSettings) -> None:
    from backends.errors import TransientBackendError

    fake = FakeAzure()
    fake.jobs.create_or_update.side_effect = http_error(503, "Service Unavailable")
    with pytest.raises(TransientBackendError, match="submitting the sweep"):
        make(settings, fake).sweep(DATA, SPEC)
    assert fake.jobs.create_or_update.call_count == 3


def test_failed_trials_are_recorded_and_the_best_completed_wins(settings: AzureSettings) -> None:
    fake = FakeAzure(sweep_statuses=("Running", "Running", "Failed"), trials={
        0: ("Failed", {}, {}), 1: ("Completed", {"n_estimators": 10}, {"accuracy": 0.7}),
        2: ("Canceled", {}, {}), 3: ("Completed", {"n_estimators": 150}, {"accuracy": 0.75})})
    sweep = make(settings, fake).sweep(DATA, SPEC)
    assert [t.status for t in sweep.trials] == [TrialStatus.FAILED, TrialStatus.COMPLETED, TrialStatus.FAILED, TrialStatus.COMPLETED]
    assert "Failed" in sweep.trials[0].error and sweep.best.number == 3


def test_a_sweep_without_a_completed_trial_is_a_sweep_error(settings: AzureSettings) -> None:
    fake = FakeAzure(sweep_statuses=("Failed",), trials={0: ("Failed", {}, {}), 1: ("Failed", {}, {})})
    with pytest.raises(SweepError, match=r"az ml job stream"):
        make(settings, fake).sweep(DATA, SPEC)


def test_an_overdue_sweep_is_cancelled(settings: AzureSettings) -> None:
    fake = FakeAzure(sweep_statuses=("Running",))
    clock = iter(range(0, 10**6, 1000))
    backend = AzureBackend(settings, ml_client=fake, trial_reader=fake.trial_reader, sleep=lambda s: None,
                           clock=lambda: float(next(clock)), retry=RetryPolicy(attempts=2, initial_s=0, max_s=0))
    with pytest.raises(SweepError, match="cancelled"):
        backend.sweep(DATA, SweepSpec(max_total_trials=3, timeout_s=60))
    fake.jobs.begin_cancel.assert_called_once()


def test_failed_deployment_keeps_traffic_and_says_where_the_logs_are(settings: AzureSettings) -> None:
    fake = FakeAzure()
    backend = make(settings, fake)
    sweep = backend.sweep(DATA, SPEC)
    model = backend.register(sweep)
    endpoint = backend.deploy(model, DeploySpec())
    backend.promote(endpoint, model, report(0.9))
    fake.deployment_error = http_error(400, "ResourceNotReady: User container has crashed or terminated")
    with pytest.raises(DeploymentError) as caught:
        backend.deploy(model, DeploySpec())
    message = str(caught.value)
    assert "deployment green" in message and "az ml online-deployment get-logs --name green" in message
    assert "keeps its previous traffic {'blue': 100}" in message and "model folder not found" in message
    assert fake.traffic(ENDPOINT) == {"blue": 100}
    assert (ENDPOINT, "green") not in fake.deployments  # the failed deployment was removed (it would bill)


def test_reject_removes_the_candidate_and_keeps_the_champion_serving(settings: AzureSettings) -> None:
    fake = FakeAzure()
    backend = make(settings, fake)
    sweep = backend.sweep(DATA, SPEC)
    first = backend.register(sweep)
    backend.promote(backend.deploy(first, DeploySpec()), first, report(0.9))
    second = backend.register(sweep.__class__(**{**sweep.__dict__, "best": sweep.trials[2]}))
    candidate = backend.deploy(second, DeploySpec())
    backend.reject(candidate, second, "holdout accuracy 0.80 < champion 0.90", report=report(0.8, "green"))
    assert fake.traffic(ENDPOINT) == {"blue": 100} and (ENDPOINT, "green") not in fake.deployments
    assert fake.model_versions["heart-classifier"][1].tags["heartflow.status"] == "rejected"
    assert backend.champion("heart-classifier").version == "1"
    events = [(e.event, e.model_version, e.reason) for e in backend.history(ENDPOINT)]
    assert events[-1] == ("rejected", "2", "holdout accuracy 0.80 < champion 0.90")


def test_provision_is_get_or_create_and_teardown_all_removes_what_heartflow_created(settings: AzureSettings) -> None:
    from unittest.mock import create_autospec

    from azure.storage.blob import BlobServiceClient, ContainerClient

    blob = create_autospec(BlobServiceClient, instance=True)
    blob.account_name = "heartacct"  # set by the real client's constructor, so not on the autospec
    blob.get_container_client.return_value = create_autospec(ContainerClient, instance=True)
    fake = FakeAzure(existing=("workspace", "environment"))
    backend = AzureBackend(settings, ml_client=fake, blob_service=blob, trial_reader=fake.trial_reader,
                           retry=RetryPolicy(attempts=2, initial_s=0, max_s=0))
    first = backend.provision(create_workspace=False)
    assert "compute heartclassifycluster" in first.created and "workspace ws-heartflow" in first.existing
    assert "container data4ml" in first.created and "datastore heartflowdata" in first.created
    again = AzureBackend(settings, ml_client=fake, blob_service=blob).provision()
    assert "compute heartclassifycluster" in again.existing
    assert fake.compute.begin_create_or_update.call_count == 1

    preview = backend.teardown_all(yes=False)
    assert not preview.confirmed and "compute heartclassifycluster" in preview.planned
    fake.compute.begin_delete.assert_not_called()
    done = backend.teardown_all(yes=True)
    assert set(done.deleted) >= {"compute heartclassifycluster", "datastore heartflowdata", "container data4ml"}
    fake.workspaces.begin_delete.assert_not_called()  # heartflow did not create the workspace
    assert backend.teardown_all(yes=False).planned == ()


def test_workspace_is_created_only_when_asked(settings: AzureSettings) -> None:
    from backends.errors import ConfigurationError

    fake = FakeAzure()
    backend = AzureBackend(settings.model_copy(update={"location": "westeurope"}), ml_client=fake,
                           blob_service=None, trial_reader=fake.trial_reader)
    with pytest.raises(ConfigurationError, match="--create-workspace"):
        backend.provision(create_workspace=False)
    fake.workspaces.begin_create.assert_not_called()


def test_auth_failure_says_what_to_check(settings: AzureSettings) -> None:
    from azure.core.exceptions import ClientAuthenticationError

    from backends.errors import ConfigurationError

    fake = FakeAzure()
    fake.compute.get.side_effect = ClientAuthenticationError("DefaultAzureCredential failed to retrieve a token")
    with pytest.raises(ConfigurationError, match="az login"):
        make(settings, fake).sweep(DATA, SPEC)
    fake.jobs.create_or_update.assert_not_called()


def test_quota_failure_is_terminal_and_named(settings: AzureSettings) -> None:
    fake = FakeAzure()
    fake.deployment_error = http_error(400, "Not enough quota available for Standard_DS1_v2 (QuotaExceeded)")
    backend = make(settings, fake)
    model = backend.register(backend.sweep(DATA, SPEC))
    with pytest.raises(DeploymentError, match="quota"):
        backend.deploy(model, DeploySpec())
    assert fake.online_deployments.begin_create_or_update.call_count == 1  # not retried
    assert ENDPOINT in fake.endpoints and fake.traffic(ENDPOINT) == {}


def test_an_emptied_endpoint_gets_its_champion_back_before_a_candidate(settings: AzureSettings) -> None:
    fake = FakeAzure()
    backend = make(settings, fake)
    sweep = backend.sweep(DATA, SPEC)
    first = backend.register(sweep)
    backend.promote(backend.deploy(first, DeploySpec()), first, report(0.9))
    backend.teardown(ENDPOINT)  # e.g. an operator deleted the endpoint to stop billing
    second = backend.register(sweep.__class__(**{**sweep.__dict__, "best": sweep.trials[2]}))
    candidate = backend.deploy(second, DeploySpec())
    # the champion serves again on blue; the candidate waits beside it with no traffic
    assert candidate.deployment == "green" and fake.traffic(ENDPOINT) == {"blue": 100, "green": 0}
    assert fake.deployment(ENDPOINT, "blue").model == "azureml:heart-classifier:1"
    backend.reject(candidate, second, "worse", report=report(0.5, "green"))
    assert fake.traffic(ENDPOINT) == {"blue": 100}


def test_history_outlives_the_endpoint_on_this_machine(settings: AzureSettings) -> None:
    fake = FakeAzure()
    backend = make(settings, fake)
    sweep = backend.sweep(DATA, SPEC)
    first = backend.register(sweep)
    backend.promote(backend.deploy(first, DeploySpec()), first, report(0.9), reason="first champion")
    assert [(e.event, e.reason) for e in backend.history(ENDPOINT)] == [("promoted", "first champion")]
    backend.teardown(ENDPOINT)
    assert [(e.event, e.model_version) for e in backend.history(ENDPOINT)] == [("promoted", "1")]
