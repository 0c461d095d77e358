"""MLflow on SQLite under the heartflow home: one place that knows the URIs and names."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from mlflow.tracking import MlflowClient

logger = logging.getLogger(__name__)

EXPERIMENT = "heartflow"
SRC_DIR = Path(__file__).resolve().parents[2] / "src"

# Tag names, shared by the sweep, the registry and the reports.
TAG_SWEEP_KEY = "heartflow.sweep_key"
TAG_TRIAL_NUMBER = "heartflow.trial_number"
TAG_DATA_SHA = "heartflow.data_sha256"
TAG_ERROR = "heartflow.error"
TAG_DURATION = "heartflow.duration_s"
PARENT_TAG = "mlflow.parentRunId"


def tracking_uri(home: Path) -> str:
    return f"sqlite:///{(home / 'mlflow.db').resolve()}"


def artifact_root(home: Path) -> Path:
    return (home / "artifacts").resolve()


_SQLITE_TUNED = False


def _tune_sqlite_connections() -> None:
    """WAL journal and synchronous=NORMAL on every SQLite connection this process opens.

    A sweep commits a few times per trial; with SQLite's defaults (rollback journal, a full fsync per
    commit) those commits cost more than the trials' own bookkeeping. WAL with synchronous=NORMAL cannot
    corrupt the database; a power cut may lose the last commits, which a rerun of the sweep redoes.
    WAL also lets `mlflow ui` read while a sweep writes."""
    global _SQLITE_TUNED
    if _SQLITE_TUNED:
        return
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _pragmas(dbapi_connection: object, _record: object) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    _SQLITE_TUNED = True


def make_client(home: Path) -> MlflowClient:
    """A client bound to this home's store (no process-global tracking URI is changed)."""
    home.mkdir(parents=True, exist_ok=True)
    _tune_sqlite_connections()
    # MLflow's usage telemetry wraps every client call; heartflow runs offline and does not send it.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # MLflow logs its database migrations at INFO on first use; they are not news to a user.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = tracking_uri(home)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(client: MlflowClient, home: Path) -> str:
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(EXPERIMENT, artifact_location=artifact_root(home).as_uri())


def code_version() -> str:
    """A hash of the training code (src/*.py): a change to it invalidates cached sweeps."""
    digest = hashlib.sha256()
    for file in sorted(SRC_DIR.glob("*.py")):
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def local_path(artifact_uri: str) -> Path:
    """The filesystem path of a file:// artifact URI."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(artifact_uri)
    return Path(unquote(parsed.path)) if parsed.scheme in {"file", ""} else Path(artifact_uri)
