"""A team's shared MLflow: two homes ("machines") on one tracking store see the same runs, champion and
history. Against a real PostgreSQL (as a SQLAlchemy store, and behind a real `mlflow server`)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends.base import HistoryEntry
from backends.domain.dataset import prepare_data
from backends.errors import ConfigurationError
from backends.local import tracking
from backends.local.backend import LocalBackend
from backends.domain.spec import SweepSpec
from tests.integration.shared.servers import Postgres, running_mlflow_server, running_postgres

MODEL = "heart-classifier"
ENDPOINT = "shared-store"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    with running_postgres() as server:
        yield server


@pytest.fixture()
def pg_env(postgres: Postgres, monkeypatch: pytest.MonkeyPatch) -> Postgres:
    monkeypatch.setenv("PGPASSWORD", postgres.password)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(tracking.ARTIFACT_ROOT_ENV, raising=False)
    return postgres


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"MLFLOW_TRACKING_URI", "HEARTFLOW_HOME"}}
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, timeout=600,
                          cwd=cwd, env={**clean, **env, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                               "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300"})


def test_a_database_store_needs_an_artifact_root_every_machine_reads(pg_env: Postgres, tmp_path: Path) -> None:
    uri = pg_env.create_database("no_root")
    with pytest.raises(ConfigurationError, match="artifact root every machine can read"):
        LocalBackend(tmp_path / "a", tracking_uri=uri)
    with pytest.raises(ConfigurationError, match="contains a password"):
        LocalBackend(tmp_path / "a", tracking_uri=uri.replace("heartflow@", f"heartflow:{pg_env.password}@"))


def test_two_homes_on_one_postgres_store_share_models_champion_and_history(pg_env: Postgres, tmp_path: Path) -> None:
    uri = pg_env.create_database("shared")
    shared_root = tmp_path / "shared-artifacts"
    laptop = LocalBackend(tmp_path / "laptop", tracking_uri=uri, artifact_root=str(shared_root))
    assert not (tmp_path / "laptop" / "mlflow.db").exists()
    prepared = prepare_data(None, None, 0.1)
    data = laptop.upload(prepared.train)
    sweep = laptop.sweep(data, SweepSpec(max_total_trials=2, max_concurrent_trials=1), prepared.schema)
    model = laptop.register(sweep)
    laptop.registry.make_champion(model, 0.9)
    laptop._history.append(HistoryEntry("2026-11-28T00:00:00+00:00", "promoted", ENDPOINT, "blue", MODEL,
                                        model.version, 0.9, None, "first", "laptop"))

    worker = LocalBackend(tmp_path / "worker", tracking_uri=uri)  # the experiment exists: no root needed
    champion = worker.champion(MODEL)
    assert champion is not None and champion.version == model.version and champion.data_sha256 == data.sha256
    assert [e.model_version for e in worker.history(ENDPOINT)] == [model.version]
    model_dir = worker.endpoints.model_dir(champion)
    assert (model_dir / "MLmodel").is_file() and model_dir.resolve().is_relative_to(shared_root.resolve())


def test_a_run_on_one_machine_is_seen_from_another_through_an_mlflow_server(pg_env: Postgres, tmp_path: Path) -> None:
    uri = pg_env.create_database("server_store")
    with running_mlflow_server(uri, tmp_path / "served-artifacts", tmp_path, pg_env.env) as server:
        env = {"MLFLOW_TRACKING_URI": server.url}
        run = _cli("run", "--home", str(tmp_path / "a"), "--trials", "3", "--concurrency", "1", "--stop-endpoint",
                   "--endpoint-name", ENDPOINT, env=env, cwd=tmp_path)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert f"MLflow: {server.url}" in run.stdout
        assert not (tmp_path / "a" / "mlflow.db").exists() and not (tmp_path / "a" / "artifacts").exists()

        status = _cli("status", "--home", str(tmp_path / "b"), "--tracking-uri", server.url,
                      "--endpoint-name", ENDPOINT, env={}, cwd=tmp_path)
        assert f"champion: {MODEL} v1 (holdout accuracy" in status.stdout, status.stdout + status.stderr
        assert "is not running" in status.stdout  # the endpoint runs on machine A, not here
        history = _cli("history", "--home", str(tmp_path / "b"), "--tracking-uri", server.url,
                       "--endpoint-name", ENDPOINT, env={}, cwd=tmp_path)
        assert history.returncode == 0 and "promoted" in history.stdout and f"{MODEL} v1" in history.stdout

        # Machine B downloads the champion through the server and can serve it.
        b = LocalBackend(tmp_path / "b", tracking_uri=server.url)
        champion = b.champion(MODEL)
        assert champion is not None and champion.tags.get("heartflow.split", "").startswith("row-sha256-v2;")
        assert (b.endpoints.model_dir(champion) / "MLmodel").is_file()
