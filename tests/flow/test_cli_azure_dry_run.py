"""`heartflow run --backend azure --dry-run` as a user types it: a plan, no Azure call, clear refusals.
Through typer's runner in this process (a fresh interpreter per call proved nothing more), with the Azure
variables of this process removed and the session's Prefect test harness as the API."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flows.cli import app

AZURE_ENV = {
    "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
    "AZURE_RESOURCE_GROUP": "rg-heartflow",
    "AZUREML_WORKSPACE_NAME": "ws-heartflow",
    "AZURE_STORAGE_ACCOUNT_URL": "https://heartflowdata.blob.core.windows.net",
}


@pytest.fixture
def cli(prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Runs `heartflow <args>` in ``tmp_path`` with no Azure variable but those given."""
    for name in [k for k in os.environ if k.startswith(("AZURE", "AZUREML"))]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)

    def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
        with monkeypatch.context() as scoped:
            for name, value in (env or {}).items():
                scoped.setenv(name, value)
            return CliRunner().invoke(app, list(args))

    return invoke


def _cli(cli: Any, *args: str, env: dict[str, str] | None = None) -> Any:
    return cli("run", "--backend", "azure", "--dry-run", *args, env=env)


def test_dry_run_prints_the_whole_plan_and_calls_nothing(cli: Any, tmp_path: Path) -> None:
    result = _cli(cli, "--trials", "30", "--compute", "cpu-cluster", env=AZURE_ENV)
    assert result.exit_code == 0, result.stderr
    for expected in ("nothing was called on Azure", "sweep", "max_total_trials=30", "cpu-cluster",
                     "derived from the workspace", "auth_mode key", "Standard_DS3_v2", "n_estimators", "score.py"):
        assert expected in result.stdout
    assert "Traceback" not in result.stderr


def test_missing_settings_are_named_all_at_once(cli: Any, tmp_path: Path) -> None:
    result = _cli(cli)
    assert result.exit_code == 1
    for variable in ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE_NAME"):
        assert variable in result.stderr
    assert "AZURE_STORAGE_" not in result.stderr  # a storage setting is an override, never required
    assert "Traceback" not in result.stderr


def test_a_broken_azure_limit_is_refused_before_any_call(cli: Any, tmp_path: Path) -> None:
    too_long = "e" * 33
    result = _cli(cli, "--endpoint-name", too_long, env=AZURE_ENV)
    assert result.exit_code == 1 and "endpoint_name" in result.stderr and "3 to 32 characters" in result.stderr
    result = _cli(cli, "--trials", "1001", env=AZURE_ENV)
    assert result.exit_code != 0 and "less than or equal to 1000" in result.stderr + result.stdout


WORKSPACE_ONLY = {k: v for k, v in AZURE_ENV.items() if not k.startswith("AZURE_STORAGE")}


def test_plan_dir_writes_cli_v2_yaml_that_the_sdk_loads(cli: Any, tmp_path: Path) -> None:
    """With only the three workspace variables: every object as an Azure ML CLI v2 YAML file with its
    $schema line, each loaded back with azure.ai.ml's load_* function (what `az ml ... create -f` parses)."""
    import yaml
    from azure.ai.ml import (load_compute, load_data, load_environment, load_job, load_online_deployment,
                             load_online_endpoint)

    from backends.azure.naming import workspace_endpoint_name

    plan_dir = tmp_path / "plan"
    result = _cli(cli, "--trials", "12", "--plan-dir", str(plan_dir), env=WORKSPACE_ONLY)
    assert result.exit_code == 0, result.stderr
    assert "workspaceblobstore" in result.stdout and "Traceback" not in result.stderr
    loaders = {"sweep-job.yml": load_job, "environment.yml": load_environment, "compute.yml": load_compute,
               "data.yml": load_data, "endpoint.yml": load_online_endpoint, "deployment.yml": load_online_deployment}
    assert {p.name for p in plan_dir.iterdir()} == {*loaders, "conda.yml"}  # no datastore: the workspace's default
    loaded = {}
    for name, loader in loaders.items():
        text = (plan_dir / name).read_text()
        first = next(line for line in text.splitlines() if not line.startswith("#"))
        assert first.startswith("$schema: https://azuremlschemas.azureedge.net/latest/") and first.endswith(".schema.json")
        loaded[name] = loader(source=plan_dir / name)

    job, env, data = loaded["sweep-job.yml"], loaded["environment.yml"], loaded["data.yml"]
    assert job.type == "sweep" and job.limits.max_total_trials == 12
    assert str(job.trial.environment).removeprefix("azureml:") == f"{env.name}:{env.version}"
    assert str(job.inputs["input_data"].path).removeprefix("azureml:") == f"{data.name}:{data.version}"
    assert data.path.startswith("azureml://datastores/workspaceblobstore/paths/") and data.type == "uri_file"
    assert (plan_dir / job.trial.code / "src" / "model_train.py").is_file()  # code path relative to the YAML file
    assert "python -m src.model_train --input_data ${{inputs.input_data}}" in job.trial.command
    conda = yaml.safe_load((plan_dir / "conda.yml").read_text())
    pins = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert env.conda_file == conda and any(p.startswith("azureml-mlflow==") for p in pins)
    assert all("==" in p for p in pins)
    deployment, endpoint = loaded["deployment.yml"], loaded["endpoint.yml"]
    # the CLI's default endpoint name is the tutorial's, which heartflow replaces by the workspace's own
    derived = workspace_endpoint_name(AZURE_ENV["AZURE_SUBSCRIPTION_ID"], AZURE_ENV["AZURE_RESOURCE_GROUP"],
                                      AZURE_ENV["AZUREML_WORKSPACE_NAME"])
    assert deployment.endpoint_name == endpoint.name == derived
    assert endpoint.name in result.stdout
    assert deployment.code_configuration.scoring_script == "src/score.py"
    assert loaded["compute.yml"].min_instances == 0


def test_plan_dir_with_a_storage_override_adds_its_datastore_and_never_a_secret(cli: Any, tmp_path: Path) -> None:
    key = "c2VjcmV0LWtleS1uZXZlci13cml0dGVu"
    env = {**WORKSPACE_ONLY, "AZURE_STORAGE_CONNECTION_STRING":
           f"DefaultEndpointsProtocol=https;AccountName=heartacct;AccountKey={key};EndpointSuffix=core.windows.net"}
    plan_dir = tmp_path / "plan"
    result = _cli(cli, "--plan-dir", str(plan_dir), env=env)
    assert result.exit_code == 0, result.stderr
    from azure.ai.ml import load_datastore

    store = load_datastore(source=plan_dir / "datastore.yml")
    assert store.account_name == "heartacct"
    assert all(key not in p.read_text() for p in plan_dir.iterdir()) and key not in result.stdout


def test_plan_dir_needs_an_azure_dry_run(cli: Any, tmp_path: Path) -> None:
    result = cli("run", "--plan-dir", str(tmp_path / "p"))
    assert result.exit_code == 1 and "--backend azure --dry-run" in result.stderr
    assert not (tmp_path / "p").exists()
