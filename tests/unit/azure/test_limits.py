"""The dry run refuses what Azure would refuse: bayesian sampling with early termination, compute names
outside AmlCompute's rule, VM sizes managed online endpoints do not offer, more concurrent trials than the
cluster has nodes (the real sweep re-reads an existing cluster's size)."""

from __future__ import annotations

import pytest

from backends.azure import AzureBackend
from backends.azure.limits import check_limits
from backends.azure.resilience import RetryPolicy
from backends.azure.settings import AzureSettings
from backends.base import DataRef
from backends.errors import ConfigurationError
from backends.domain.spec import DeploySpec, EarlyTermination, PipelineSpec, SweepSpec
from tests.unit.azure.fakes import FakeAzure


def fields(spec: PipelineSpec, settings: AzureSettings) -> dict[str, str]:
    return {v.field: v.rule for v in check_limits(spec, settings)}


def test_the_default_run_breaks_no_limit(settings: AzureSettings) -> None:
    assert fields(PipelineSpec(backend="azure"), settings) == {}


def test_bayesian_sampling_with_early_termination_is_refused(settings: AzureSettings) -> None:
    sweep = SweepSpec.model_construct(**{**SweepSpec(sampling="bayesian", search_space={
        "n_estimators": {"type": "choice", "values": [10, 50]}}).__dict__,
        "early_termination": EarlyTermination(policy="bandit", slack_factor=0.1)})
    found = fields(PipelineSpec.model_construct(**{**PipelineSpec(backend="azure").__dict__, "sweep": sweep}), settings)
    assert "bayesian" in found["sweep.early_termination"]
    random = sweep.model_copy(update={"sampling": "random"})
    found = fields(PipelineSpec.model_construct(**{**PipelineSpec(backend="azure").__dict__, "sweep": random}), settings)
    assert "sweep.early_termination" not in found


@pytest.mark.parametrize("name", ["cpu-cluster-with-a-very-long-name", "a" * 25, "1cluster", "ab", "my_cluster", "cluster-"])
def test_compute_names_outside_amlcompute_rule_are_refused(settings: AzureSettings, name: str) -> None:
    found = fields(PipelineSpec(backend="azure"), settings.model_copy(update={"compute": name}))
    assert "3 to 24 characters" in found["settings.compute"]


@pytest.mark.parametrize("name", ["cpu", "heartclassifycluster", "cpu-cluster-2", "A" * 24])
def test_compute_names_within_the_rule_pass(settings: AzureSettings, name: str) -> None:
    assert "settings.compute" not in fields(PipelineSpec(backend="azure"), settings.model_copy(update={"compute": name}))


@pytest.mark.parametrize(("instance_type", "ok"), [
    ("Standard_DS3_v2", True), ("Standard_F4s_v2", True), ("standard_d4as_v4", True), ("Standard_E8s_v3", True),
    ("Standard_NC6s_v3", True), ("Standard_B2s", False), ("Standard_D2_v5", False), ("Standard_DS3", False),
    ("Basic_A1", False),
])
def test_instance_types_must_be_offered_for_managed_online_endpoints(settings: AzureSettings, instance_type: str, ok: bool) -> None:
    found = fields(PipelineSpec(backend="azure", deploy=DeploySpec(instance_type=instance_type)), settings)
    assert ("deploy.instance_type" not in found) is ok


def test_more_concurrent_trials_than_nodes_is_refused_in_the_dry_run(settings: AzureSettings) -> None:
    spec = PipelineSpec(backend="azure", sweep=SweepSpec(max_concurrent_trials=6))
    assert "max nodes (4" in fields(spec, settings)["sweep.max_concurrent_trials"]
    assert "sweep.max_concurrent_trials" not in fields(spec, settings.model_copy(update={"compute_max_nodes": 6}))


def test_the_sweep_reads_an_existing_clusters_real_size(settings: AzureSettings) -> None:
    """The settings say 4 nodes, but the cluster that exists has 2: refused before any submit."""
    sha = "1d" * 32
    data = DataRef(uri=f"https://heartacct.blob.core.windows.net/data4ml/heartflow/train/{sha}.csv", sha256=sha, rows=10)
    fake = FakeAzure(existing=("compute",))
    fake.cluster_max_nodes = 2
    backend = AzureBackend(settings, ml_client=fake, blob_service=object(), trial_reader=fake.trial_reader,
                           retry=RetryPolicy(attempts=1, initial_s=0, max_s=0), sleep=lambda s: None)
    with pytest.raises(ConfigurationError, match="at most 2 nodes"):
        backend.sweep(data, SweepSpec(sampling="grid", max_total_trials=3, max_concurrent_trials=3))
    fake.jobs.create_or_update.assert_not_called()
    # without an explicit concurrency the sweep asks for the cluster's real size, not the settings'
    result = backend.sweep(data, SweepSpec(sampling="grid", max_total_trials=3))
    submitted = fake.jobs.create_or_update.call_args.args[0]
    assert submitted.limits.max_concurrent_trials == 2 and result.best.number == 1


def test_azure_rules_live_in_the_spec_and_refuse_an_azure_spec_at_construction() -> None:
    """The spec's own validation is the one place: an Azure spec that breaks a rule is never built; the same
    values are a valid local spec (locally, early termination is ignored and None may be a choice)."""
    from pydantic import ValidationError

    sweep = SweepSpec(sampling="bayesian", search_space={"n_estimators": {"type": "choice", "values": [10, 50]}},
                      early_termination=EarlyTermination(policy="bandit"))
    odd = SweepSpec(search_space={"max_depth": {"type": "choice", "values": [4, None]},
                                  "criterion": {"type": "choice", "values": ["gini", 1]}}, timeout_s=10, trial_timeout_s=20)
    assert PipelineSpec(backend="local", sweep=sweep, model_name="a name with spaces").sweep is sweep
    with pytest.raises(ValidationError) as caught:
        PipelineSpec(backend="azure", sweep=sweep, model_name="a name with spaces")
    text = str(caught.value)
    assert "early_termination: Azure ML refuses an early termination policy with bayesian" in text and "model_name" in text
    with pytest.raises(ValidationError) as caught:
        PipelineSpec(backend="azure", sweep=odd)
    text = str(caught.value)
    assert "search_space.max_depth: choice values must be numbers or strings" in text
    assert "search_space.criterion: choice values must be all numbers or all strings" in text
    assert "trial_timeout_s: must not exceed sweep.timeout_s" in text


def test_the_sweep_stage_validates_the_spec_it_is_given(settings: AzureSettings) -> None:
    """The Azure sweep validates the real spec (no spec built without validation): a SweepSpec changed after it
    was validated is refused before anything is called."""
    fake = FakeAzure()
    backend = AzureBackend(settings, ml_client=fake, blob_service=object(), trial_reader=fake.trial_reader,
                           retry=RetryPolicy(attempts=1, initial_s=0, max_s=0), sleep=lambda s: None)
    spec = SweepSpec(sampling="random", search_space={"n_estimators": {"type": "choice", "values": [10, 50]}})
    spec.max_total_trials = 5000  # assignment is not validated: the stage must catch it
    data = DataRef(uri="https://heartacct.blob.core.windows.net/data4ml/x.csv", sha256="1d" * 32, rows=10)
    with pytest.raises(ConfigurationError, match="sweep.max_total_trials = 5000: Input should be less than or equal to 1000"):
        backend.sweep(data, spec)
    assert fake.jobs.method_calls == [] and fake.compute.method_calls == []
