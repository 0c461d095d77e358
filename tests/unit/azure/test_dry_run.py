"""The dry run validates every object, refuses each violated limit by field and rule, and calls nothing."""

from __future__ import annotations

from typing import Any

import pytest

from backends.azure import AzureBackend
from backends.azure.limits import check_traffic
from backends.azure.settings import AzureSettings
from backends.errors import ConfigurationError
from backends.domain.spec import Choice, DeploySpec, LogUniform, PipelineSpec, SweepSpec, Uniform
from tests.unit.azure.fakes import FakeAzure


def _backend(settings: AzureSettings) -> tuple[AzureBackend, FakeAzure]:
    fake = FakeAzure()
    return AzureBackend(settings, ml_client=fake, blob_service=object(), trial_reader=fake.trial_reader), fake


def _calls(fake: FakeAzure) -> list[Any]:
    ops = (fake.jobs, fake.models, fake.online_endpoints, fake.online_deployments, fake.compute,
           fake.environments, fake.datastores, fake.workspaces)
    return [call for op in ops for call in op.method_calls]


def test_valid_plan_renders_every_object_and_calls_nothing(settings: AzureSettings) -> None:
    backend, fake = _backend(settings)
    plan = backend.plan(PipelineSpec(backend="azure", dry_run=True), data_sha256="ab" * 32)
    text = plan.render()
    for expected in ("compute cluster  heartclassifycluster", "0..4 nodes", "maximize accuracy",
                     "max_total_trials=25", "n_estimators", "choice(values=[10, 50, 100, 125, 150])",
                     "-m src.model_train --input_data", "mlflow_model", "/outputs/artifacts/paths/outputs/heart-classifier/",
                     "auth_mode key", "Standard_DS3_v2", "timeout 5000 ms", "{'blue': 100}", "score.py",
                     f"heartflow/train/{'ab' * 32}.csv", "scikit-learn=="):
        assert expected in text, expected
    assert "c2VjcmV0" not in text and "<secret>" in str(plan.datastore)
    assert _calls(fake) == []


def _refused(settings: AzureSettings, spec: PipelineSpec) -> str:
    backend, fake = _backend(settings)
    with pytest.raises(ConfigurationError) as caught:
        backend.plan(spec)
    assert _calls(fake) == []
    return str(caught.value)


# Specs built with model_construct skip pydantic's checks, as a spec edited by hand or by a later
# version could: the plan validates the spec's values again, by the spec's own rules for Azure.
@pytest.mark.parametrize(
    ("change", "field", "rule"),
    [
        ({"deploy": DeploySpec.model_construct(**{**DeploySpec().model_dump(), "endpoint_name": "x" * 33})},
         "deploy.endpoint_name", "3 to 32 characters"),
        ({"deploy": DeploySpec.model_construct(**{**DeploySpec().model_dump(), "endpoint_name": "9lives"})},
         "deploy.endpoint_name", "starting with a letter"),
        ({"deploy": DeploySpec.model_construct(**{**DeploySpec().model_dump(), "request_timeout_ms": 180_001})},
         "deploy.request_timeout_ms", "less than or equal to 180000"),
        ({"sweep": SweepSpec.model_construct(**{**SweepSpec().model_dump(), "sampling": "grid",
                                                "search_space": {"max_samples": Uniform(min_value=0.1, max_value=0.9)}})},
         "sweep.search_space.max_samples", "grid sampling accepts only choice"),
        ({"sweep": SweepSpec.model_construct(**{**SweepSpec().model_dump(), "sampling": "bayesian",
                                                "search_space": {"max_samples": LogUniform(min_value=-2, max_value=0)}})},
         "sweep.search_space.max_samples", "bayesian sampling accepts only choice, quniform, uniform"),
        ({"sweep": SweepSpec.model_construct(**{**SweepSpec().model_dump(), "max_total_trials": 0,
                                                "search_space": {"n_estimators": Choice(values=[10])}})},
         "sweep.max_total_trials", "greater than or equal to 1"),
        ({"sweep": SweepSpec.model_construct(**{**SweepSpec().model_dump(), "max_total_trials": 1001,
                                                "search_space": {"n_estimators": Choice(values=[10])}})},
         "sweep.max_total_trials", "less than or equal to 1000"),
    ],
)
def test_each_violated_limit_is_refused_by_field_and_rule(settings: AzureSettings, change: dict, field: str, rule: str) -> None:
    spec = PipelineSpec.model_construct(**{**PipelineSpec().__dict__, **change})
    message = _refused(settings, spec)
    assert field in message and rule in message


def test_bad_settings_are_refused_too(settings: AzureSettings) -> None:
    bad = settings.model_copy(update={"green_deployment": "blue", "endpoint_name": "-bad"})
    message = _refused(bad, PipelineSpec())
    assert "settings.green_deployment" in message and "deploy.endpoint_name" in message


def test_several_violations_are_reported_at_once(settings: AzureSettings) -> None:
    deploy = DeploySpec.model_construct(**{**DeploySpec().model_dump(), "endpoint_name": "ab", "request_timeout_ms": 0})
    message = _refused(settings, PipelineSpec.model_construct(**{**PipelineSpec().__dict__, "deploy": deploy}))
    assert "2 documented limit(s)" in message


def test_traffic_must_sum_to_0_or_100() -> None:
    assert check_traffic({"blue": 100, "green": 0}) == [] and check_traffic({}) == []
    (violation,) = check_traffic({"blue": 50, "green": 0})
    assert violation.field == "traffic" and "sum to 0 or 100" in violation.rule


def test_dry_run_without_settings_names_every_missing_variable(clean_env: Any) -> None:
    from backends.azure import create_azure_backend

    with pytest.raises(ConfigurationError) as caught:
        create_azure_backend({}, env_file=None).plan(PipelineSpec())
    assert all(v in str(caught.value) for v in ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE_NAME"))
