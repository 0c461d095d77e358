"""Every entity the Azure backend builds survives the SDK's own serialisation (to_dict -> schema load, and
the REST body and back) with the fields that matter intact."""

from __future__ import annotations

from pathlib import Path

import io
from importlib.metadata import version

import yaml
from azure.ai.ml import load_compute, load_environment, load_job, load_model, load_online_deployment, load_online_endpoint
from azure.ai.ml.entities import ManagedOnlineDeployment, ManagedOnlineEndpoint
from azure.ai.ml.entities._job.sweep.sweep_job import SweepJob

from backends.azure import entities
from backends.azure.plan import REST_LOCATION, sdk_round_trip, to_plain
from backends.azure.settings import AzureSettings
from backends.domain.spec import Choice, DeploySpec, EarlyTermination, LogUniform, QUniform, SweepSpec, Uniform

DATA = "azureml://datastores/heartflowdata/paths/heartflow/train/abc.csv"
ENV = "azureml:heartflow-sklearn:0123456789abcdef"


def _assert_the_code_folder_holds_src_alone(code: object) -> None:
    """The uploaded folder holds the package src/ and nothing else: the trial runs ``python -m src.model_train``
    and the scoring script is src/score.py, importing src as the package it is here."""
    from backends.azure.code import source_dir

    folder = Path(str(code))
    assert [p.name for p in folder.iterdir()] == ["src"]
    copied = sorted(p.relative_to(folder / "src").as_posix() for p in (folder / "src").rglob("*.py"))
    assert copied == sorted(p.relative_to(source_dir()).as_posix() for p in source_dir().rglob("*.py"))


def _sweep(settings: AzureSettings, spec: SweepSpec) -> SweepJob:
    node = entities.build_sweep(settings, spec, data_path=DATA, model_name="heart-classifier", environment=ENV)
    return node._to_job()


def _reload(job: SweepJob) -> tuple[SweepJob, SweepJob]:
    _, from_schema = sdk_round_trip(job, load_job)
    from_rest = SweepJob._from_rest_object(job._to_rest_object())
    return from_schema, from_rest


def test_grid_sweep_keeps_command_inputs_space_limits_objective_code_environment(settings: AzureSettings) -> None:
    spec = SweepSpec(sampling="grid", max_total_trials=20, max_concurrent_trials=2, timeout_s=3600, trial_timeout_s=600)
    for job in _reload(_sweep(settings, spec)):
        assert job.trial.command.startswith("python -m src.model_train --input_data ${{inputs.input_data}}")
        for name in ("n_estimators", "max_depth", "criterion", "max_features"):
            assert f"--{name} ${{{{search_space.{name}}}}}" in job.trial.command
        assert job.inputs["input_data"].path == DATA and job.inputs["input_data"].type == "uri_file"
        assert {n: d.values for n, d in job.search_space.items()} == {
            "n_estimators": [10, 50, 100, 125, 150], "max_depth": [4, 6, 8, 10, -1],
            "criterion": ["gini", "entropy"], "max_features": ["sqrt", "log2"]}
        assert (job.limits.max_total_trials, job.limits.max_concurrent_trials, job.limits.timeout, job.limits.trial_timeout) == (20, 2, 3600, 600)
        assert job.objective.primary_metric == "accuracy" and job.objective.goal.lower() == "maximize"
        assert str(job.sampling_algorithm).lower().endswith("grid") or getattr(job.sampling_algorithm, "type", "") == "grid"
        _assert_the_code_folder_holds_src_alone(job.trial.code)
        assert str(job.trial.environment).endswith("heartflow-sklearn:0123456789abcdef")
        assert job.compute.endswith(settings.compute)


def test_bayesian_and_random_spaces_translate_with_their_meaning(settings: AzureSettings) -> None:
    spec = SweepSpec(sampling="bayesian", search_space={
        "n_estimators": QUniform(min_value=10, max_value=200, q=10), "min_weight_fraction_leaf": Uniform(min_value=0.0, max_value=0.2),
        "criterion": Choice(values=["gini", "entropy"])}, metric="log_loss")
    schema_job, rest_job = _reload(_sweep(settings, spec))
    for job in (schema_job, rest_job):
        space = job.search_space
        assert (space["n_estimators"].type, space["n_estimators"].q) == ("quniform", 10)
        assert (space["min_weight_fraction_leaf"].min_value, space["min_weight_fraction_leaf"].max_value) == (0.0, 0.2)
        assert job.objective.primary_metric == "log_loss" and job.objective.goal.lower() == "minimize"
        assert "--extra_params_json '{\"min_weight_fraction_leaf\": ${{search_space.min_weight_fraction_leaf}}}'" in job.trial.command

    random = SweepSpec(sampling="random", seed=7, search_space={"max_samples": LogUniform(min_value=-3, max_value=0)},
                       early_termination=EarlyTermination(slack_factor=0.2, delay_evaluation=3))
    job, _ = _reload(_sweep(settings, random))
    assert job.sampling_algorithm.seed == 7
    assert job.search_space["max_samples"].type == "loguniform"
    assert job.early_termination.slack_factor == 0.2 and job.early_termination.delay_evaluation == 3


def test_environment_pins_the_installed_versions(settings: AzureSettings) -> None:
    env = entities.build_environment(settings)
    as_dict, reloaded = sdk_round_trip(env, load_environment)
    pins = as_dict["conda_file"]["dependencies"][2]["pip"]
    for package in ("scikit-learn", "mlflow", "pandas", "numpy", "skops"):
        assert f"{package}=={version(package)}" in pins
    assert reloaded.image == settings.environment_image and reloaded.version == env.version
    assert entities.build_environment(settings).version == env.version  # content-addressed: stable


def test_compute_scales_to_zero(settings: AzureSettings) -> None:
    _, reloaded = sdk_round_trip(entities.build_compute(settings), load_compute)
    assert (reloaded.min_instances, reloaded.max_instances, reloaded.size) == (0, settings.compute_max_nodes, settings.compute_size)


def test_model_points_at_the_best_trials_output_folder(settings: AzureSettings) -> None:
    model = entities.build_model("heart-classifier", "sweep_3", "heart-classifier", {"heartflow.trial_run": "sweep_3"})
    _, reloaded = sdk_round_trip(model, load_model)
    expected = "azureml://jobs/sweep_3/outputs/artifacts/paths/outputs/heart-classifier/"
    assert reloaded.path == expected and reloaded.type == "mlflow_model"
    assert reloaded.tags["heartflow.trial_run"] == "sweep_3"
    rest = model._to_rest_object().properties  # the body the registry receives
    assert (rest.model_uri, rest.model_type, rest.tags["heartflow.trial_run"]) == (expected, "mlflow_model", "sweep_3")


def test_endpoint_uses_key_auth_and_keeps_traffic(settings: AzureSettings) -> None:
    endpoint = entities.build_endpoint("heart-classify-endpoint")
    _, reloaded = sdk_round_trip(endpoint, load_online_endpoint)
    assert reloaded.auth_mode == "key" and reloaded.name == "heart-classify-endpoint"
    endpoint.traffic = {"blue": 100, "green": 0}
    rest = endpoint._to_rest_online_endpoint(REST_LOCATION)
    back = ManagedOnlineEndpoint._from_rest_object(rest)
    assert back.traffic == {"blue": 100, "green": 0} and back.auth_mode.lower() == "key"


def test_deployment_keeps_model_code_environment_instance_and_request_settings(settings: AzureSettings) -> None:
    spec = DeploySpec(instance_type="Standard_DS2_v2", instance_count=2, request_timeout_ms=90_000)
    deployment = entities.build_deployment(settings, spec, name="green", endpoint_name="heart-classify-endpoint",
                                           model="azureml:heart-classifier:3", environment=ENV)
    as_dict, reloaded = sdk_round_trip(deployment, load_online_deployment)
    rest = deployment._to_rest_object(location=REST_LOCATION)
    rest.id = ("/subscriptions/0/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws/"
               "onlineEndpoints/heart-classify-endpoint/deployments/green")  # assigned by Azure on create
    rest_back = ManagedOnlineDeployment._from_rest_object(rest)
    for candidate in (reloaded, rest_back):
        assert candidate.instance_type == "Standard_DS2_v2"
        assert candidate.request_settings.request_timeout_ms == 90_000
        assert candidate.liveness_probe.failure_threshold == 30 and candidate.readiness_probe.period == 10
    assert reloaded.instance_count == 2 and str(reloaded.model).removeprefix("azureml:") == "heart-classifier:3"
    assert reloaded.code_configuration.scoring_script == "src/score.py"
    _assert_the_code_folder_holds_src_alone(reloaded.code_configuration.code)
    assert str(reloaded.environment).endswith("heartflow-sklearn:0123456789abcdef")
    assert as_dict["endpoint_name"] == "heart-classify-endpoint"


def test_settings_override_the_instance_type(settings: AzureSettings) -> None:
    custom = settings.model_copy(update={"instance_type": "Standard_F2s_v2"})
    deployment = entities.build_deployment(custom, DeploySpec(), name="blue", endpoint_name="e-1x",
                                           model="azureml:m:1", environment=ENV)
    assert to_plain(deployment._to_dict())["instance_type"] == "Standard_F2s_v2"
    assert yaml.safe_load(io.StringIO(yaml.safe_dump(to_plain(deployment._to_dict()))))["name"] == "blue"


def test_deployment_collects_inputs_and_outputs_at_the_capture_rate(settings: AzureSettings) -> None:
    spec = DeploySpec(capture_rate=0.25)
    deployment = entities.build_deployment(settings, spec, name="blue", endpoint_name="heart-classify-endpoint",
                                           model="azureml:heart-classifier:3", environment=ENV)
    first = deployment._to_rest_object(location=REST_LOCATION)
    second = deployment._to_rest_object(location=REST_LOCATION)  # the plan, then the create: both serialize
    for rest in (first, second):
        collections = rest.properties.data_collector.collections
        assert sorted(collections) == ["model_inputs", "model_outputs"]
        assert all(c.sampling_rate == 0.25 and c.data_collection_mode.lower() == "enabled" for c in collections.values())
