"""Issue 8, item 9 (defaults that bite) and item 12 (fakes that behave like the SDK)."""

from __future__ import annotations

import re

from azure.ai.ml.constants._deployment import SmallSKUs
from azure.ai.ml.entities import EndpointAuthKeys, ManagedOnlineEndpoint, OnlineDeployment

from backends.azure import AzureBackend
from backends.azure.resilience import RetryPolicy
from backends.azure.settings import AzureSettings
from backends.domain.spec import DeploySpec, PipelineSpec
from tests.contract.harnesses import report_for, sweep_of
from tests.unit.azure.fakes import FakeAzure

# Azure ML's rule for endpoint names: 3 to 32 characters, letters, digits and '-', starting with a letter.
ENDPOINT_RULE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,30}[A-Za-z0-9]$")


def make(settings: AzureSettings, fake: FakeAzure) -> AzureBackend:
    return AzureBackend(settings, ml_client=fake, blob_service=object(), trial_reader=fake.trial_reader,
                        retry=RetryPolicy(attempts=2, initial_s=0, max_s=0, sleep=lambda s: None), sleep=lambda s: None)


def test_the_default_endpoint_name_is_derived_from_the_workspace(settings: AzureSettings) -> None:
    fake = FakeAzure()
    backend = make(settings, fake)
    model = backend.register(sweep_of("sweep_1", 1, 0.8))
    endpoint = backend.deploy(model, DeploySpec())  # the CLI's default name: heart-classify-endpoint
    assert endpoint.name != "heart-classify-endpoint" and ENDPOINT_RULE.match(endpoint.name)
    assert list(fake.endpoints) == [endpoint.name]
    # stable: a second backend on the same workspace finds the same endpoint
    assert make(settings, fake).deploy(model, DeploySpec()).name == endpoint.name
    other = settings.model_copy(update={"workspace_name": "another-workspace"})
    assert make(other, FakeAzure()).deploy(model, DeploySpec()).name != endpoint.name
    # the plan says which name it will use, and why
    text = make(settings, FakeAzure()).plan(PipelineSpec(backend="azure", dry_run=True)).render()
    assert f"endpoint         {endpoint.name}" in text and "derived from the workspace" in text


def test_a_chosen_endpoint_name_is_kept(settings: AzureSettings) -> None:
    fake = FakeAzure()
    backend = make(settings, fake)
    endpoint = backend.deploy(backend.register(sweep_of("sweep_1", 1, 0.8)), DeploySpec(endpoint_name="my-scoring"))
    assert endpoint.name == "my-scoring" and list(fake.endpoints) == ["my-scoring"]


def test_mixed_case_deployment_names_never_overwrite_the_serving_one(settings: AzureSettings) -> None:
    """The SDK lowercases traffic keys: a deployment called Blue would look idle and be replaced."""
    fake = FakeAzure()
    backend = make(settings.model_copy(update={"blue_deployment": "Blue", "green_deployment": "Green"}), fake)
    spec = DeploySpec(endpoint_name="cased")
    first = backend.register(sweep_of("sweep_1", 1, 0.8))
    served = backend.deploy(first, spec)
    backend.promote(served, first, report_for("cased", served.deployment, first, 0.9))
    second = backend.register(sweep_of("sweep_2", 2, 0.8))
    candidate = backend.deploy(second, spec)
    assert candidate.deployment != served.deployment
    assert fake.deployment("cased", served.deployment).model == f"azureml:{first.name}:{first.version}"
    assert {k: v for k, v in fake.traffic("cased").items() if v} == {served.deployment: 100}
    assert {d for (_, d) in fake.deployments} == {"blue", "green"}


def test_the_default_instance_type_is_one_the_sdk_does_not_warn_about() -> None:
    assert DeploySpec().instance_type.lower() not in SmallSKUs


def test_the_fake_endpoint_write_does_what_the_sdk_does(settings: AzureSettings) -> None:
    fake = FakeAzure()
    backend = make(settings, fake)
    backend.deploy(backend.register(sweep_of("sweep_1", 1, 0.8)), DeploySpec(endpoint_name="e-1"))
    endpoint = fake.online_endpoints.get("e-1")
    assert isinstance(endpoint, ManagedOnlineEndpoint)
    endpoint.traffic = {"BLUE": 100, "green": 0}
    answer = fake.online_endpoints.begin_create_or_update(endpoint).result()
    # the caller's entity is changed in place, as the SDK does (pinned in test_sdk_traffic_rule.py)
    assert endpoint.traffic == {"blue": 100}
    assert isinstance(answer, ManagedOnlineEndpoint) and answer.traffic == {"blue": 100}
    assert isinstance(fake.online_deployments.list(endpoint_name="e-1").__next__(), OnlineDeployment)
    assert isinstance(fake.online_endpoints.get_keys("e-1"), EndpointAuthKeys)
    assert fake.online_endpoints.get("e-1").scoring_uri.endswith("/score")
