"""Builders of the Azure ML entities a run creates: pure functions from settings and specs to SDK objects.

Nothing here calls Azure. The same objects are submitted by ``AzureBackend`` and validated by the dry run.
"""

from __future__ import annotations


import base64
import hashlib
import json
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from azure.ai.ml import Input, command
from azure.ai.ml import sweep as az_sweep
from azure.ai.ml.entities import (
    AccountKeyConfiguration,
    AmlCompute,
    AzureBlobDatastore,
    CodeConfiguration,
    Data,
    DefaultScaleSettings,
    Environment,
    ManagedOnlineDeployment,
    ManagedOnlineEndpoint,
    Model,
    OnlineRequestSettings,
    ProbeSettings,
    UserIdentityConfiguration,
)

from backends.azure.code import SCORING_SCRIPT, TRAIN_COMMAND, code_root, source_dir  # noqa: F401 - source_dir: the code hash
from backends.azure.collector import build_data_collector
from backends.azure.settings import AzureSettings, storage_account
from backends.errors import ConfigurationError
from backends.azure import packages
from backends.domain.spec import DeploySpec, EarlyTermination, SweepSpec

# The packages training and serving import (the Environment pins them and everything they need).
PINNED_PACKAGES: tuple[str, ...] = packages.ENVIRONMENT_PACKAGES
# The arguments model_train.py takes directly (the tutorial's command line); other hyperparameters
# travel in --extra_params_json.
TRAIN_SCRIPT_PARAMS: tuple[str, ...] = ("n_estimators", "max_depth", "criterion", "max_features")
CREATED_BY_TAG = {"created-by": "heartflow"}


# --- environment ---------------------------------------------------------------------------------

def pinned_requirements(packages_: tuple[str, ...] = PINNED_PACKAGES, python: str | None = None) -> list[str]:
    """``name==version`` of each package and of all it needs, as installed here, so Azure runs what ran
    locally (the same scikit-learn, skops and mlflow, and azureml-mlflow for the job's tracking URI)."""
    return packages.requirement_closure(packages_, python)


def conda_specification(pins: list[str] | None = None, python: str | None = None) -> dict[str, Any]:
    """The Environment's conda file: Python and pip from conda-forge, every package pinned for pip."""
    python = python or f"{sys.version_info.major}.{sys.version_info.minor}"
    return {
        "name": "heartflow",
        "channels": ["conda-forge"],
        "dependencies": [f"python={python}", "pip", {"pip": list(pins if pins is not None else pinned_requirements(python=python))}],
    }


def environment_version(conda: Mapping[str, Any], image: str) -> str:
    """Content-addressed version: the same pins and image give the same version (get-or-create)."""
    digest = hashlib.sha256(json.dumps({"conda": conda, "image": image}, sort_keys=True).encode()).hexdigest()
    return digest[:16]


def build_environment(settings: AzureSettings, pins: list[str] | None = None) -> Environment:
    conda = conda_specification(pins)
    return Environment(
        name=settings.environment_name,
        version=environment_version(conda, settings.environment_image),
        image=settings.environment_image,
        conda_file=conda,
        description="heartflow: training and scoring with the project's pinned scikit-learn and mlflow",
        tags={**CREATED_BY_TAG, "pins": ";".join(packages.top_level(packages.pip_entries(conda)))[:256]},
    )


def environment_ref(environment: Environment) -> str:
    return f"azureml:{environment.name}:{environment.version}"


# --- compute and storage -------------------------------------------------------------------------

def build_compute(settings: AzureSettings) -> AmlCompute:
    """A cluster that scales to zero when idle, so it bills only while trials run."""
    return AmlCompute(
        name=settings.compute,
        size=settings.compute_size,
        min_instances=0,
        max_instances=settings.compute_max_nodes,
        idle_time_before_scale_down=settings.compute_idle_seconds,
        tier="dedicated",
        tags=dict(CREATED_BY_TAG),
        description="heartflow sweep cluster (min 0 nodes)",
    )


def build_datastore(settings: AzureSettings) -> AzureBlobDatastore:
    """The override container as a datastore. With a connection string its account key is stored in the
    workspace; with an account URL the datastore is identity-based (no secret stored), so the job reads it
    with the submitting user's identity (see ``build_sweep``'s ``user_identity``)."""
    account, key = storage_account(settings)
    if not account:
        raise ConfigurationError(
            "the storage override names no account: set AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT_URL, "
            "or unset both to use the workspace's default datastore"
        )
    credentials = AccountKeyConfiguration(account_key=key) if key else None
    return AzureBlobDatastore(
        name=settings.datastore_name,
        account_name=account,
        container_name=settings.container,
        credentials=credentials,
        description="heartflow training data (private container)",
        tags=dict(CREATED_BY_TAG),
    )


def datastore_uri(settings: AzureSettings | str, blob_name: str) -> str:
    """``azureml://datastores/<name>/paths/<blob>``; ``settings`` may be the datastore name itself."""
    name = settings if isinstance(settings, str) else settings.datastore_name
    return f"azureml://datastores/{name}/paths/{blob_name}"


DATA_ASSET_VERSION_CHARS = 16  # hex digits of the split's sha256 used as the data asset's version


def data_asset_version(sha256: str) -> str:
    """The data asset's version: the start of the split's sha256, so the same split is the same version."""
    return sha256[:DATA_ASSET_VERSION_CHARS]


def build_data_asset(settings: AzureSettings, *, path: str, sha256: str, rows: int) -> Data:
    """The training split as a versioned uri_file data asset (Studio then shows data -> sweep -> model)."""
    return Data(
        name=settings.data_asset_name,
        version=data_asset_version(sha256),
        type="uri_file",
        path=path,
        description=f"heartflow training split ({rows} rows), sha256 {sha256}",
        tags={**CREATED_BY_TAG, "sha256": sha256, "rows": str(rows)},
    )


def data_asset_ref(asset: Data) -> str:
    return f"azureml:{asset.name}:{asset.version}"


# --- sweep ---------------------------------------------------------------------------------------

def translate_distribution(dist: Any) -> Any:
    """One spec distribution as the ``azure.ai.ml.sweep`` expression of the same meaning (``Distribution.azure_form``)."""
    name, fields = dist.azure_form()
    return getattr(az_sweep, name)(**fields)


def _placeholder(dist: Any) -> Any:
    """A default for the command's input; the sweep replaces it with the sampled value."""
    return dist.placeholder()


def _quoted_in_json(dist: Any) -> bool:
    """A choice holding anything but numbers (text, None, booleans) is rendered as a JSON string, which
    model_train.py reads back with parse_param_text; numbers go bare (Azure renders them as JSON numbers)."""
    return dist.type == "choice" and any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in dist.values)


def training_command(spec: SweepSpec, schema_json: str | None = None) -> str:
    """The tutorial's command line with ``${{inputs.*}}``; other hyperparameters as a JSON object, the
    dataset schema (when it is not the heart schema the script defaults to) as a quoted JSON literal."""
    parts = [
        shlex.join(TRAIN_COMMAND),
        "--input_data ${{inputs.input_data}}",
        "--model_name ${{inputs.model_name}}",
        "--test_size ${{inputs.test_size}}",
        "--random_state ${{inputs.random_state}}",
        "--seed ${{inputs.seed}}",
        "--validation ${{inputs.validation}}",
        "--folds ${{inputs.folds}}",
    ]
    extra: list[str] = []
    for name, dist in spec.search_space.items():
        if name in TRAIN_SCRIPT_PARAMS:
            parts.append(f"--{name} ${{{{inputs.{name}}}}}")
        elif _quoted_in_json(dist):
            extra.append(f'"{name}": "${{{{inputs.{name}}}}}"')
        else:
            extra.append(f'"{name}": ${{{{inputs.{name}}}}}')
    if extra:
        parts.append("--extra_params_json " + shlex.quote("{" + ", ".join(extra) + "}"))
    if schema_json:  # a job input (base64 of the JSON), so no column name can break the command line
        parts.append("--schema_json ${{inputs.schema}}")
    if spec.threshold is not None:  # the decision threshold (issue 17); the default keeps the tutorial's line
        parts.append("--threshold ${{inputs.threshold}} --metric ${{inputs.metric}}")
    return " ".join(parts)



def build_sweep(
    settings: AzureSettings,
    spec: SweepSpec,
    *,
    data_path: str,
    model_name: str,
    environment: str | Environment,
    code: str | Path | None = None,
    schema_json: str | None = None,
    user_identity: bool = False,
) -> Any:
    """The command job (one trial) turned into a sweep over ``spec.search_space``. ``data_path`` is a data
    asset (``azureml:<name>:<version>``) or a datastore URI. ``user_identity``: the trials run with the
    submitting user's identity (``UserIdentityConfiguration``, as the azure-ai-ml docs prescribe for an
    identity-based datastore); that user needs Storage Blob Data Reader on the storage account."""
    folder = model_name  # model_train.py saves the model under outputs/<model_name>
    inputs: dict[str, Any] = {
        "input_data": Input(type="uri_file", path=data_path),
        "model_name": folder,
        "test_size": float(spec.validation.test_size),
        "random_state": int(spec.validation.random_state),
        "seed": int(spec.seed),
        "validation": spec.validation.method,
        "folds": int(spec.validation.folds),
    }
    inputs.update({name: _placeholder(dist) for name, dist in spec.search_space.items()})
    if spec.threshold is not None:
        inputs.update(threshold=str(spec.threshold), metric=spec.metric)
    if schema_json:
        inputs["schema"] = base64.urlsafe_b64encode(schema_json.encode("utf-8")).decode("ascii")
    trial = command(
        code=str(code or code_root()),
        command=training_command(spec, schema_json),
        inputs=inputs,
        environment=environment,
        compute=settings.compute,
        experiment_name=settings.experiment_name,
        display_name=f"{model_name}-trial",
        tags=dict(CREATED_BY_TAG),
        identity=UserIdentityConfiguration() if user_identity else None,
    )
    sampled = trial(**{name: translate_distribution(dist) for name, dist in spec.search_space.items()})
    sampling: Any = spec.sampling
    if spec.sampling == "random":
        sampling = az_sweep.RandomSamplingAlgorithm(seed=spec.seed)
    sweep_job = sampled.sweep(
        compute=settings.compute,
        sampling_algorithm=sampling,
        primary_metric=spec.primary_metric,
        goal="Maximize" if spec.goal == "maximize" else "Minimize",
        early_termination_policy=build_early_termination(spec.early_termination, interim_reports(spec)),
    )
    sweep_job.set_limits(
        max_total_trials=spec.max_total_trials,
        max_concurrent_trials=spec.max_concurrent_trials or settings.compute_max_nodes,
        timeout=spec.timeout_s,
        trial_timeout=spec.trial_timeout_s,
    )
    sweep_job.experiment_name = settings.experiment_name
    sweep_job.display_name = f"{model_name}-sweep"
    sweep_job.tags = {**CREATED_BY_TAG, "model": model_name}
    return sweep_job


def interim_reports(spec: SweepSpec) -> int:
    """How often a trial logs its metrics: once per fold (model_train.py, step = fold)."""
    return spec.validation.folds if spec.validation.method == "kfold" else 1


def build_early_termination(policy: EarlyTermination | None, reports: int) -> Any:
    """The policy, refused when it could not stop a trial before its last report: each logged value of the
    primary metric is one interval, and the first evaluation waits delay_evaluation + evaluation_interval."""
    if policy is None:
        return None
    first = policy.delay_evaluation + policy.evaluation_interval
    if first >= reports:
        fix = ("use validation kfold (one report per fold)" if reports == 1 else
               f"set delay_evaluation to at most {max(reports - policy.evaluation_interval - 1, 0)} or use more folds")
        raise ConfigurationError(
            f"early termination ({policy.policy}) would never stop a trial: a trial reports its metrics {reports} "
            f"time(s) (once per fold) and the policy first looks at report {first} "
            f"(delay_evaluation={policy.delay_evaluation} + evaluation_interval={policy.evaluation_interval}); "
            f"{fix}, or drop early_termination"
        )
    common = {"evaluation_interval": policy.evaluation_interval, "delay_evaluation": policy.delay_evaluation}
    if policy.policy == "bandit":
        return az_sweep.BanditPolicy(slack_factor=policy.slack_factor, **common)
    if policy.policy == "median_stopping":
        return az_sweep.MedianStoppingPolicy(**common)
    return az_sweep.TruncationSelectionPolicy(truncation_percentage=policy.truncation_percentage, **common)


# --- model, endpoint, deployment -----------------------------------------------------------------

def trial_model_path(run_id: str, folder: str) -> str:
    """The best trial's saved MLflow model: outputs/<folder> of that job."""
    return f"azureml://jobs/{run_id}/outputs/artifacts/paths/outputs/{folder}/"


def build_model(name: str, run_id: str, folder: str, tags: Mapping[str, str], description: str = "") -> Model:
    return Model(
        name=name,
        path=trial_model_path(run_id, folder),
        type="mlflow_model",
        tags=dict(tags),
        description=description or f"best trial {run_id} of a heartflow sweep",
    )


def build_endpoint(name: str, tags: Mapping[str, str] | None = None) -> ManagedOnlineEndpoint:
    """Key auth (the endpoint's keys come from ``online_endpoints.get_keys``)."""
    return ManagedOnlineEndpoint(
        name=name,
        auth_mode="key",
        description="heartflow real-time endpoint",
        tags={**CREATED_BY_TAG, **dict(tags or {})},
    )


def build_deployment(
    settings: AzureSettings,
    spec: DeploySpec,
    *,
    name: str,
    endpoint_name: str,
    model: str | Model,
    environment: str | Environment,
    code: str | Path | None = None,
) -> ManagedOnlineDeployment:
    """The model served by src/score.py, with request limits and health probes. The name is lowercased:
    Azure ML lowercases traffic keys, so a mixed-case deployment would never be seen serving."""
    probe = {"initial_delay": 10, "period": 10, "timeout": 2, "failure_threshold": 30, "success_threshold": 1}
    return ManagedOnlineDeployment(
        name=name.lower(),
        endpoint_name=endpoint_name,
        model=model,
        environment=environment,
        code_configuration=CodeConfiguration(code=str(code or code_root()), scoring_script=SCORING_SCRIPT),
        instance_type=settings.instance_type or spec.instance_type,
        instance_count=spec.instance_count,
        request_settings=OnlineRequestSettings(
            request_timeout_ms=spec.request_timeout_ms,
            max_concurrent_requests_per_instance=1,
            max_queue_wait_ms=500,
        ),
        scale_settings=DefaultScaleSettings(),  # a fixed instance_count (no autoscale rules)
        liveness_probe=ProbeSettings(**probe),
        readiness_probe=ProbeSettings(**{**probe, "failure_threshold": 10}),
        environment_variables={"HEARTFLOW_MAX_ROWS": str(spec.max_rows)},
        data_collector=build_data_collector(spec.capture_rate),  # backends.azure.collector
        tags=dict(CREATED_BY_TAG),
    )

