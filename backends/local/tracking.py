"""The local backend's MLflow: one place that knows the URIs and names.

By default the tracking and registry store is SQLite under the heartflow home and artifacts live in
<home>/artifacts. A team shares one store instead: any MLflow tracking server (``http(s)://``) or
SQLAlchemy database (``postgresql://``, ``mysql://``, ...), given as ``--tracking-uri`` or
MLFLOW_TRACKING_URI, so a Prefect worker and a laptop see the same runs and champion. Artifacts must then
live where every machine reads them: the server's artifact store (``mlflow server`` serves artifacts by
default), or a shared artifact root (``--artifact-root`` / HEARTFLOW_ARTIFACT_ROOT, e.g. a mounted folder).
Passwords never go in a URI heartflow is given: use MLFLOW_TRACKING_USERNAME/PASSWORD for a server, and
PGPASSWORD or ~/.pgpass for PostgreSQL.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from mlflow.tracking import MlflowClient

from backends.domain.lineage import TAG_DATA_SHA as TAG_DATA_SHA  # the sweep run carries it too
from backends.errors import ConfigurationError
from backends.local.cache import cache_dir

logger = logging.getLogger(__name__)

EXPERIMENT = "heartflow"

# Tag names, shared by the sweep, the registry and the reports.
TAG_SWEEP_KEY = "heartflow.sweep_key"
TAG_TRIAL_NUMBER = "heartflow.trial_number"
TAG_ERROR = "heartflow.error"
TAG_DURATION = "heartflow.duration_s"
PARENT_TAG = "mlflow.parentRunId"


ARTIFACT_ROOT_ENV = "HEARTFLOW_ARTIFACT_ROOT"
STAGING_DIR = "staging"  # trial models wait here until uploaded, when artifacts are not a local folder
MODELS_DIR = "models"  # registered models downloaded for serving, when artifacts are not a local folder


def tracking_uri(home: Path) -> str:
    """The home's own store (the default)."""
    return f"sqlite:///{(home / 'mlflow.db').resolve()}"


def resolve_tracking_uri(home: Path, explicit: str | None = None) -> str:
    """``explicit``, else MLFLOW_TRACKING_URI, else the home's SQLite store."""
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or tracking_uri(home)


def is_shared(uri: str, home: Path) -> bool:
    return uri != tracking_uri(home)


def redact(uri: str) -> str:
    """``uri`` with any password replaced, for messages and logs."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def check_no_password(uri: str | None, what: str = "tracking URI") -> None:
    """A URI that heartflow passes around (a flow parameter, shown in the Prefect UI) holds no password."""
    if uri and urlsplit(uri).password is not None:
        raise ConfigurationError(
            f"the {what} {redact(uri)} contains a password: remove it from the URI and give it as "
            "MLFLOW_TRACKING_PASSWORD (a tracking server) or PGPASSWORD / ~/.pgpass (PostgreSQL)"
        )


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


def make_client(home: Path, uri: str | None = None) -> MlflowClient:
    """A client bound to ``uri`` (default: this home's store); no process-global tracking URI is changed."""
    home.mkdir(parents=True, exist_ok=True)
    _tune_sqlite_connections()
    # MLflow's usage telemetry wraps every client call; heartflow runs offline and does not send it.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # MLflow logs its database migrations at INFO on first use; they are not news to a user.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = uri or tracking_uri(home)
    if uri == tracking_uri(home):
        seed_home_store(home / "mlflow.db")
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def seed_home_store(db: Path) -> None:
    """A home's new store starts as a copy of an empty store at the installed MLflow's schema, made once per
    machine and MLflow version (``store_template``): MLflow's own creation of a store runs every schema
    migration since its first (1-2 s of a fresh home's first command, measured; a copy takes milliseconds).
    MLflow then opens it as any store: it checks the schema revision and adds its Default experiment. An
    existing store is never touched; where the cache cannot be written, MLflow creates the store itself."""
    if db.exists():
        return
    try:
        template = store_template()
        part = db.with_name(f"{db.name}.{os.getpid()}.part")
        shutil.copyfile(template, part)
        try:
            os.link(part, db)  # only if still absent: a store another process just created is kept
        except FileExistsError:
            pass
        finally:
            part.unlink(missing_ok=True)
    except (OSError, sqlite3.Error) as exc:
        logger.debug("no store template (%s): MLflow creates the store", exc)


def store_template() -> Path:
    """The empty store's file for the installed MLflow (created on first use, atomically)."""
    import mlflow

    cache = cache_dir()
    template = cache / f"mlflow-{mlflow.__version__}-empty-store.db"
    if template.exists():
        return template
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as scratch:
        made = Path(scratch) / "made.db"
        MlflowClient(tracking_uri=f"sqlite:///{made}").search_experiments()  # MLflow creates and migrates it
        copy = Path(scratch) / "template.db"
        with contextlib.closing(sqlite3.connect(made)) as source, contextlib.closing(sqlite3.connect(copy)) as target:
            source.backup(target)  # a consistent copy, whatever MLflow's connections hold open
            target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            target.execute("DELETE FROM experiment_tags")
            target.execute("DELETE FROM experiments")  # MLflow adds its Default one, located for the home
            target.commit()
        os.replace(copy, template)
    return template


def ensure_experiment(client: MlflowClient, home: Path, shared_artifact_root: str | None = None) -> str:
    """The experiment's id, created if missing: artifacts under <home>/artifacts for the home's own store;
    for a shared store under ``shared_artifact_root`` (or HEARTFLOW_ARTIFACT_ROOT), else where a tracking
    server puts them. A database store without an artifact root is refused: MLflow would put artifacts
    in ./mlruns of whichever machine ran first."""
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is not None:
        return experiment.experiment_id
    uri = client.tracking_uri
    if not is_shared(uri, home):
        location: str | None = artifact_root(home).as_uri()
    else:
        location = shared_artifact_root or os.environ.get(ARTIFACT_ROOT_ENV) or None
        if location and "://" not in location:
            location = Path(location).expanduser().resolve().as_uri()
        if location is None and not uri.startswith(("http://", "https://", "databricks")):
            raise ConfigurationError(
                f"the tracking store {redact(uri)} is a database: give an artifact root every machine can read "
                f"with --artifact-root or {ARTIFACT_ROOT_ENV} (a shared folder or an object store URI), or use "
                "an `mlflow server` that serves artifacts as the tracking URI"
            )
    return client.create_experiment(EXPERIMENT, artifact_location=location)


def is_local_artifact(artifact_uri: str) -> bool:
    return urlsplit(artifact_uri).scheme in {"file", ""}


def trial_model_dir(home: Path, run_id: str, artifact_uri: str) -> Path:
    """Where a trial writes its model: straight into the run's artifacts when they are a local (or mounted)
    folder, else a staging folder under the home that ``publish_trial_model`` uploads."""
    if is_local_artifact(artifact_uri):
        return local_path(artifact_uri) / "model"
    return home / STAGING_DIR / run_id / "model"


def publish_trial_model(client: MlflowClient, home: Path, run_id: str, model_dir: Path) -> None:
    """Upload a staged trial model to the run's artifacts (``model/``) and drop the staged copy."""
    staging = (home / STAGING_DIR).resolve()
    if not model_dir.resolve().is_relative_to(staging) or not model_dir.is_dir():
        return
    client.log_artifacts(run_id, str(model_dir), artifact_path="model")
    import shutil

    shutil.rmtree(model_dir.parent, ignore_errors=True)


def served_model_dir(client: MlflowClient, home: Path, name: str, version: str) -> Path:
    """A local folder holding a registered model: its artifact folder when local, else a download into
    <home>/models/<name>/<version> (kept: a version's files never change)."""
    uri = client.get_model_version_download_uri(name, version)
    if is_local_artifact(uri):
        return local_path(uri)
    target = home / MODELS_DIR / name / str(version)
    if (target / "model" / "MLmodel").is_file():
        return target / "model"
    from mlflow.artifacts import download_artifacts

    partial = target.with_name(f"{target.name}.part")
    import shutil

    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    download_artifacts(artifact_uri=uri, dst_path=str(partial), tracking_uri=client.tracking_uri)
    downloaded = next((p.parent for p in partial.rglob("MLmodel")), None)
    if downloaded is None:
        raise ConfigurationError(f"model {name} version {version} at {uri} holds no MLmodel file")
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    os.replace(downloaded, target / "model")
    shutil.rmtree(partial, ignore_errors=True)
    return target / "model"


def local_path(artifact_uri: str) -> Path:
    """The filesystem path of a file:// artifact URI."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(artifact_uri)
    return Path(unquote(parsed.path)) if parsed.scheme in {"file", ""} else Path(artifact_uri)
