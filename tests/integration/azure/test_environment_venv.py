"""The job's environment runs the job: the Azure ML Environment's conda file, as heartflow generates it,
installed by pip into a clean virtualenv exactly as listed. In that virtualenv MLflow finds the azureml://
tracking store, the trial runs from the code folder heartflow uploads (src/ as a package: ``python -m
src.model_train`` with the tutorial's arguments) on the embedded data and writes an MLflow model, and
src/score.py under azmlinfsrv, with that folder as its app root, serves that model on 127.0.0.1.

The virtualenv is cached under ~/.cache/heartflow/azure-env/<hash of the conda file and the Python>, outside
the checkout as pip's own cache is, so only a new package set pays for the install (about six minutes on a
2-core machine) and a fresh clone on the same machine does not; reruns take seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from backends.azure.code import SCORING_SCRIPT, stage_code
from backends.azure import entities, packages
from backends.domain.dataset import canonical_csv, prepare_data
from backends.local.cache import cache_dir
from backends.local.locks import file_lock
from backends.domain.spec import SweepSpec
from tests.net import free_port
from tests.servers import answers_http, running_server

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
CACHE = cache_dir() / "azure-env"
INSTALL_TIMEOUT_S = 900
COMPLETE = ".heartflow-complete"


def _run(command: list[str], *, timeout: float, **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{shlex.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def conda() -> dict:
    """The conda file exactly as the Environment carries it (the same dict build_environment uses)."""
    from backends.azure.settings import AzureSettings

    environment = entities.build_environment(AzureSettings(_env_file=None))  # type: ignore[call-arg]
    spec = environment.conda_file
    return yaml.safe_load(spec) if isinstance(spec, str) else dict(spec)


@pytest.fixture(scope="module")
def env_python(conda: dict) -> Path:
    """A virtualenv holding exactly the conda file's pip list, cached by the file's hash."""
    python_version = next(d for d in conda["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert python_version == f"python={sys.version_info.major}.{sys.version_info.minor}", "the venv needs that Python"
    pins = packages.pip_entries(conda)
    base = getattr(sys, "_base_executable", sys.executable)
    identity = yaml.safe_dump(conda, sort_keys=True) + sys.version + os.path.realpath(base)  # the venv's Python too
    key = hashlib.sha256(identity.encode()).hexdigest()[:16]
    venv = CACHE / key
    python = venv / "bin" / "python"
    with file_lock(CACHE / f"{key}.lock"):
        if not (venv / COMPLETE).is_file():
            shutil.rmtree(venv, ignore_errors=True)  # a half-built one from an interrupted run
            _run([base, "-m", "venv", str(venv)], timeout=300)
            requirements = venv / "requirements.txt"
            requirements.write_text("\n".join(pins) + "\n")
            # exactly the listed packages, as the image's pip installs a conda file's pip section
            _run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "--quiet", "--no-compile", "-r", str(requirements)],
                 timeout=INSTALL_TIMEOUT_S)
            (venv / COMPLETE).write_text(json.dumps({"pins": len(pins)}))
    return python


def test_pip_installed_exactly_the_listed_packages(env_python: Path, conda: dict) -> None:
    frozen = _run([str(env_python), "-m", "pip", "freeze", "--all", "--disable-pip-version-check"], timeout=120).stdout
    from packaging.utils import canonicalize_name

    def normal(lines: list[str]) -> set[str]:
        return {f"{canonicalize_name(n)}=={v}" for n, _, v in (line.partition("==") for line in lines if "==" in line)}

    installed = {p for p in normal(frozen.splitlines()) if not p.startswith(("pip==", "setuptools==", "wheel=="))}
    assert installed == normal(packages.pip_entries(conda))  # nothing missing from the list, nothing added
    _run([str(env_python), "-m", "pip", "check", "--disable-pip-version-check"], timeout=120)


def test_mlflow_there_handles_the_azureml_tracking_uri(env_python: Path) -> None:
    probe = (
        "import json; from importlib.metadata import entry_points\n"
        "found = {g: sorted(e.name for e in entry_points(group=g)) for g in "
        "('mlflow.tracking_store', 'mlflow.artifact_repository', 'mlflow.model_registry_store')}\n"
        "[e.load() for e in entry_points(group='mlflow.tracking_store') if e.name == 'azureml']\n"
        "from mlflow.tracking._tracking_service.utils import _tracking_store_registry as r\n"
        "print(json.dumps({'groups': found, 'schemes': sorted(r._registry)}))"
    )
    result = json.loads(_run([str(env_python), "-c", probe], timeout=240).stdout.strip().splitlines()[-1])
    for group, names in result["groups"].items():
        assert "azureml" in names, group
    assert "azureml" in result["schemes"]


@pytest.fixture(scope="module")
def trained(env_python: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The trial run in the code folder heartflow uploads (src/ alone, as a package) with the command line
    training_command() generates, on the embedded data's training split as heartflow uploads it; returns
    (model dir, MLflow db)."""
    work = tmp_path_factory.mktemp("job")
    code = stage_code(work / "code")
    split = prepare_data(None, None, 0.1).train
    data = work / "input_data.csv"
    data.write_bytes(canonical_csv(split))
    spec = SweepSpec()
    folder = "heart-classifier"
    values = {"input_data": str(data), "model_name": folder, "test_size": spec.validation.test_size,
              "random_state": spec.validation.random_state, "seed": spec.seed, "validation": spec.validation.method,
              "folds": 3, "n_estimators": 10, "max_depth": 6, "criterion": "entropy", "max_features": "sqrt"}
    template = entities.training_command(spec)
    line = re.sub(r"\$\{\{inputs\.(\w+)\}\}", lambda m: shlex.quote(str(values[m.group(1)])), template)
    argv = shlex.split(line)
    assert argv[:3] == ["python", "-m", "src.model_train"]
    db = work / "mlflow.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(MLFLOW_TRACKING_URI=f"sqlite:///{db}", MLFLOW_EXPERIMENT_NAME="azure-env")
    _run([str(env_python), *argv[1:]], cwd=code, env=env, timeout=300)
    return code / "outputs" / folder, db


def test_model_train_runs_there_and_writes_an_mlflow_model(trained: tuple[Path, Path], env_python: Path) -> None:
    model_dir, db = trained
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    assert mlmodel["flavors"]["sklearn"]["serialization_format"] == "skops"
    probe = ("import sys, json; from mlflow.tracking import MlflowClient; c = MlflowClient(sys.argv[1]); "
             "(r,) = c.search_runs([c.get_experiment_by_name('azure-env').experiment_id]); "
             "print(json.dumps({'m': r.data.metrics, 'p': r.data.params, "
             "'steps': [h.step for h in c.get_metric_history(r.info.run_id, 'accuracy')]}))")
    run = json.loads(_run([str(env_python), "-c", probe, f"sqlite:///{db}"], timeout=240).stdout.strip().splitlines()[-1])
    assert 0.5 < run["m"]["accuracy"] <= 1.0 and run["p"]["criterion"] == "entropy"
    assert sorted(run["steps"]) == [1, 2, 3]


@pytest.fixture(scope="module")
def server(trained: tuple[Path, Path], env_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    model_dir, _ = trained
    code = model_dir.parents[1]
    port = free_port()
    log = tmp_path_factory.mktemp("azmlinfsrv") / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    # The model one folder below, as Azure lays it out; the code folder is the app root (Azure's AML_APP_ROOT,
    # which azmlinfsrv puts on sys.path) and the entry script src/score.py, as the deployment names them. The
    # server runs from another folder, so src is found through the app root alone.
    env.update(AZUREML_MODEL_DIR=str(model_dir.parent), AML_APP_ROOT=str(code))
    base = f"http://127.0.0.1:{port}"
    command = [str(env_python.with_name("azmlinfsrv")), "--entry_script", str(code / SCORING_SCRIPT),
               "--port", str(port)]
    with running_server(command, ready=answers_http(f"{base}/"), what="azmlinfsrv (job environment)", log=log,
                        timeout_s=120, poll_s=0.3, env=env, cwd=log.parent):
        yield base, code


def test_score_py_under_azmlinfsrv_there_serves_that_model(server: tuple[str, Path]) -> None:
    server, code = server
    holdout = prepare_data(None, None, 0.1).holdout
    records = json.loads(holdout.drop(columns=["output"]).head(5).to_json(orient="records"))
    response = requests.post(f"{server}/score", json={"data": records, "return_probabilities": True}, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["predictions"]) == 5 and set(body["predictions"]) <= {0, 1} and body["classes"] == [0, 1]
    refused = requests.post(f"{server}/score", json={"data": [{"age": 63}]}, timeout=30)
    assert refused.status_code == 400 and "missing" in refused.json()["error"]
    # The forest ran as machine code: numba, installed from the Environment's list, compiled the kernel
    # there and cached it beside src/forest_kernel.py in the code folder (under its one name, src.forest_kernel).
    assert list((code / "src" / "__pycache__").glob("forest_kernel*.nbi")), "the Environment's numba did not compile the kernel"


# The trial run as Azure runs it (python -m src.model_train <rendered command line>, in the code folder),
# once per case, in one process of the Environment's interpreter: the module is executed as __main__ each
# time, so argparse, the JSON parsing and to_estimator_params are the Environment's own.
_RENDERED_RUNS = """
import importlib, json, runpy, sys
cases = json.loads(open(sys.argv[1]).read())
out = {}
for name, argv in cases.items():
    sys.argv = ["src.model_train", *argv]
    try:
        scope = runpy.run_module("src.model_train", run_name="__main__", alter_sys=True)
    except SystemExit as done:
        if done.code:
            out[name] = {"exit": done.code}
            continue
        scope = vars(importlib.import_module("src.model_train"))
    args = scope["parse_args"](argv)
    classifier = scope["build_pipeline"](scope["HEART_SCHEMA"], scope["trial_params"](args), args.seed).named_steps["classifier"]
    out[name] = {"exit": 0, "estimator": type(classifier).__name__,
                 "params": {k: v for k, v in classifier.get_params().items() if v is None or isinstance(v, (int, float, str, bool))}}
print(json.dumps(out))
"""


def test_model_train_there_accepts_every_distribution_as_azure_renders_it(env_python: Path, tmp_path: Path) -> None:
    from tests.sweep_renderings import RENDERINGS

    code = stage_code(tmp_path / "code")
    data = tmp_path / "input_data.csv"
    data.write_bytes(canonical_csv(prepare_data(None, None, 0.1).train))
    cases = tmp_path / "cases.json"
    cases.write_text(json.dumps({case.name: case.argv(str(data)) for case in RENDERINGS}))
    db = tmp_path / "mlflow.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(MLFLOW_TRACKING_URI=f"sqlite:///{db}", MLFLOW_EXPERIMENT_NAME="renderings")
    done = _run([str(env_python), "-c", _RENDERED_RUNS, str(cases)], cwd=code, env=env, timeout=600)
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for case in RENDERINGS:
        result = results[case.name]
        assert result["exit"] == 0, (case.name, result)
        assert result["estimator"] == case.estimator
        got = {k: result["params"][k] for k in case.expected}
        assert got == case.expected and all(type(got[k]) is type(v) for k, v in case.expected.items()), (case.name, got)
        assert (code / "outputs" / f"model-{case.name}" / "MLmodel").is_file(), case.name
