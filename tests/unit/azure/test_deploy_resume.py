"""A network blip while a deployment is being created does not lose it: the poll is retried by reading the
deployment itself, nothing is deleted for a failure of the connection, and a retried stage waits on the
deployment its first attempt left instead of writing it again (the service refuses that with 409). The fake
keeps a deployment "Creating" for some reads, drops connections as azure-core reports it
(ServiceResponseError), and answers a PUT during an operation as the SDK's generated client maps the
service's 409 (ResourceExistsError)."""

from __future__ import annotations

import pytest
from azure.core.exceptions import ResourceNotFoundError

from backends.azure import AzureBackend
from backends.azure.deployment_state import asset_ref, state_of
from backends.azure.naming import workspace_endpoint_name
from backends.azure.resilience import RetryPolicy
from backends.azure.settings import AzureSettings
from backends.base import ModelVersion
from backends.domain.spec import DeploySpec
from backends.errors import DeploymentError, TransientBackendError
from tests.unit.azure.fakes import FakeAzure

ENDPOINT = workspace_endpoint_name("00000000-0000-0000-0000-000000000000", "rg-heartflow", "ws-heartflow")
ATTEMPTS = 3


def make(settings: AzureSettings, fake: FakeAzure) -> AzureBackend:
    return AzureBackend(settings, ml_client=fake, blob_service=object(), trial_reader=fake.trial_reader,
                        retry=RetryPolicy(attempts=ATTEMPTS, initial_s=0, max_s=0, sleep=lambda s: None),
                        sleep=lambda s: None)


def registered(fake: FakeAzure) -> ModelVersion:
    from azure.ai.ml.entities import Model

    fake.models.create_or_update(Model(name="heart-classifier", path="azureml://jobs/j_1/outputs/artifacts/paths/outputs/m/"))
    return ModelVersion(name="heart-classifier", version="1", source_run_id="j_1", sweep_id="j", metric_name="accuracy",
                        metric_value=0.85, data_sha256="ab" * 32, uri="azureml:heart-classifier:1")


def puts(fake: FakeAzure) -> int:
    return fake.online_deployments.begin_create_or_update.call_count


def test_a_dropped_poll_waits_on_the_deployment_instead_of_failing(settings: AzureSettings) -> None:
    fake = FakeAzure(creating_polls=3, poll_outage=1)
    backend = make(settings, fake)
    endpoint = backend.deploy(registered(fake), DeploySpec())
    assert (endpoint.deployment, dict(endpoint.traffic)) == ("blue", {"blue": 100})
    assert puts(fake) == 1 and fake.online_deployments.begin_delete.call_count == 0
    assert state_of(fake.deployments[(ENDPOINT, "blue")].properties) == "succeeded"


def test_a_retried_stage_waits_on_the_deployment_its_first_attempt_left(settings: AzureSettings) -> None:
    # The poll drops, then every read of the deployment fails too (ATTEMPTS retries): the stage fails
    # transiently and the deployment Azure goes on creating is left alone.
    fake = FakeAzure(creating_polls=4, poll_outage=1 + ATTEMPTS)
    backend = make(settings, fake)
    model = registered(fake)
    with pytest.raises(TransientBackendError):
        backend.deploy(model, DeploySpec())
    assert (ENDPOINT, "blue") in fake.deployments and fake.online_deployments.begin_delete.call_count == 0
    assert (ENDPOINT, "blue") in fake.creating  # still being created on Azure
    # Prefect's retry of the stage: the deployment is read, waited on and kept; no second PUT (a 409).
    endpoint = make(settings, fake).deploy(model, DeploySpec())
    assert (endpoint.deployment, dict(endpoint.traffic)) == ("blue", {"blue": 100})
    assert puts(fake) == 1


def test_a_deployment_already_serving_the_model_is_kept_and_another_is_rewritten(settings: AzureSettings) -> None:
    fake = FakeAzure()
    backend = make(settings, fake)
    model = registered(fake)
    backend.deploy(model, DeploySpec())
    endpoints = backend.rollout_policy()
    endpoints.put_deployment(ENDPOINT, "blue", model, DeploySpec())  # e.g. a retry after traffic failed
    assert puts(fake) == 1
    endpoints.put_deployment(ENDPOINT, "blue", model, DeploySpec(instance_count=2))  # another size: written
    assert puts(fake) == 2


def test_a_put_refused_with_409_waits_on_the_operation_under_way(settings: AzureSettings) -> None:
    fake = FakeAzure(creating_polls=2)
    backend = make(settings, fake)
    model = registered(fake)
    endpoints = backend.rollout_policy()
    endpoints.prepare(ENDPOINT, DeploySpec(), model)
    # a race: the first read finds nothing, then another attempt's PUT lands before this one
    real_get = fake.online_deployments.get.side_effect
    calls = {"n": 0}

    def racing_get(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 1:
            other = fake.online_deployments.begin_create_or_update.side_effect
            from backends.azure import entities

            other(entities.build_deployment(settings, DeploySpec(), name="blue", endpoint_name=ENDPOINT,
                                            model="azureml:heart-classifier:1",
                                            environment=backend.provisioner.ensure_environment(fake)))
            raise ResourceNotFoundError("deployment blue not found")  # what this read saw, just before
        return real_get(*args, **kwargs)

    fake.online_deployments.get.side_effect = racing_get
    endpoints.put_deployment(ENDPOINT, "blue", model, DeploySpec())
    assert state_of(fake.deployments[(ENDPOINT, "blue")].properties) == "succeeded"
    assert puts(fake) == 1  # this attempt's PUT (the other one went past the mock), refused with 409, then waited on
    assert calls["n"] >= 2  # after the refusal, the deployment's state was read until it succeeded
    assert fake.online_deployments.begin_delete.call_count == 0


def test_a_deployment_that_stays_creating_past_the_deadline_is_not_deleted(settings: AzureSettings) -> None:
    fake = FakeAzure(creating_polls=10**6, poll_outage=1)
    ticks = iter(range(0, 10**6, 600))
    backend = AzureBackend(settings.model_copy(update={"deployment_timeout_s": 1200}), ml_client=fake, blob_service=object(),
                           retry=RetryPolicy(attempts=ATTEMPTS, initial_s=0, max_s=0, sleep=lambda s: None),
                           sleep=lambda s: None, clock=lambda: float(next(ticks)))
    with pytest.raises(DeploymentError, match="still creating"):
        backend.deploy(registered(fake), DeploySpec())
    assert (ENDPOINT, "blue") in fake.deployments and fake.online_deployments.begin_delete.call_count == 0


@pytest.mark.parametrize(("value", "ref"), [
    ("azureml:heart-classifier:3", ("heart-classifier", "3")),
    ("/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws/models/heart-classifier/versions/3",
     ("heart-classifier", "3")),
    ("/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws/environments/hf/versions/ab12",
     ("hf", "ab12")),
    ("", None),
])
def test_asset_refs_as_sent_and_as_answered(value: str, ref: tuple[str, str] | None) -> None:
    assert asset_ref(value) == ref
