"""A fresh home's MLflow store is a copy of an empty store at the installed MLflow's schema
(backends.local.tracking.seed_home_store): the same tables, indexes and revision MLflow itself creates, the
Default experiment MLflow adds on opening, and an existing store never touched. Real SQLite, real MLflow."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from backends.local import tracking


def _schema(db: Path) -> dict[str, object]:
    """Tables with their columns (name, type, nullability, default, key) and the indexes: what a store is. Not
    the CREATE statements' text: MLflow's migrations write constraints in an order that varies per process."""
    with sqlite3.connect(db) as connection:
        tables = [name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        indexes = sorted(connection.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'").fetchall())
        return {"indexes": indexes,
                **{table: sorted(connection.execute(f"PRAGMA table_info('{table}')").fetchall()) for table in tables}}


def _rows(db: Path, table: str) -> list[tuple]:
    with sqlite3.connect(db) as connection:
        return connection.execute(f"SELECT * FROM {table}").fetchall()


@pytest.fixture(scope="module")
def cache_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the module's tests: the template is made once (as once per machine), by the first."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def cache(cache_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))
    return cache_home / "heartflow"


def test_a_seeded_store_is_the_store_mlflow_creates(tmp_path: Path, cache: Path) -> None:
    home = tmp_path / "home"
    client = tracking.make_client(home)
    experiment_id = tracking.ensure_experiment(client, home)
    assert list(cache.glob("mlflow-*-empty-store.db")), "the template was made in the cache"

    created = tmp_path / "created.db"  # what MLflow makes without the template
    MlflowClient(tracking_uri=f"sqlite:///{created}").search_experiments()
    seeded = home / "mlflow.db"
    assert _schema(seeded) == _schema(created)
    assert _rows(seeded, "alembic_version") == _rows(created, "alembic_version")
    assert _rows(seeded, "workspaces") == _rows(created, "workspaces")
    names = {e.experiment_id: e.name for e in client.search_experiments()}
    assert names == {"0": "Default", experiment_id: tracking.EXPERIMENT}
    run = client.create_run(experiment_id)  # and it works as a store
    client.log_metric(run.info.run_id, "accuracy", 0.8)
    assert client.get_run(run.info.run_id).data.metrics == {"accuracy": 0.8}


def test_an_existing_store_is_never_replaced(tmp_path: Path, cache: Path) -> None:
    home = tmp_path / "home"
    first = tracking.make_client(home)
    kept = first.create_experiment("kept")
    tracking.seed_home_store(home / "mlflow.db")
    again = tracking.make_client(home)
    assert again.get_experiment(kept).name == "kept"


def test_without_a_writable_cache_mlflow_creates_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    home = tmp_path / "home"
    client = tracking.make_client(home)
    assert [e.name for e in client.search_experiments()] == ["Default"]
    assert not list(home.glob("*.part"))
