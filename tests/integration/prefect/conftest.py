"""One real Prefect server for the session: work pool created, `prefect deploy --all` run from the repo
root, a process worker polling the pool, and the local deployment triggered with tiny settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import SyncPrefectClient

from backends.local.backend import LocalBackend
from tests.integration.prefect.server import PrefectServer, pool_name, running_server, wait_for_flow_run

MAIN_ENDPOINT = "it-prefect"
GATE_ENDPOINT = "it-gate"
TINY_SWEEP = {"max_total_trials": 3, "max_concurrent_trials": 2}


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    with running_server(tmp_path_factory.mktemp("prefect-server")) as server:
        server.run("work-pool", "create", pool_name(), "--type", "process")
        server.run("--no-prompt", "deploy", "--all", timeout=180)
        server.start("worker", "start", "--pool", pool_name(), log_name="worker.log")
        yield server


@pytest.fixture(scope="session")
def api(prefect_server: PrefectServer) -> Iterator[SyncPrefectClient]:
    """A client bound to the test server (no process-wide setting changed)."""
    with SyncPrefectClient(api=prefect_server.api_url) as client:
        yield client


@pytest.fixture(scope="session")
def heartflow_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("heartflow-home")
    yield home
    backend = LocalBackend(home)
    for endpoint in (MAIN_ENDPOINT, GATE_ENDPOINT):
        backend.teardown(endpoint)


def trigger(api: SyncPrefectClient, deployment: str, spec: dict[str, Any]) -> Any:
    found = api.read_deployment_by_name(f"train-and-deploy/{deployment}")
    return api.create_flow_run_from_deployment(found.id, parameters={"spec": spec})


def finish(api: SyncPrefectClient, server: PrefectServer, flow_run: Any, timeout: float = 300.0) -> Any:
    return wait_for_flow_run(api, flow_run.id, timeout, logs=[server.log_tail("worker.log")])


@pytest.fixture(scope="session")
def local_runs(api: SyncPrefectClient, prefect_server: PrefectServer, heartflow_home: Path,
               tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The local deployment triggered twice at once: a good run, and one whose data file is missing."""
    good = trigger(api, "local", {
        "backend": "local", "home": str(heartflow_home), "sweep": TINY_SWEEP,
        "deploy": {"endpoint_name": MAIN_ENDPOINT, "stop_endpoint": True},
    })
    bad = trigger(api, "local", {
        "backend": "local", "home": str(tmp_path_factory.mktemp("bad-home")),
        "data": {"path": "/nonexistent/heart.csv"}, "deploy": {"stop_endpoint": True},
    })
    return {"good": finish(api, prefect_server, good), "bad": finish(api, prefect_server, bad)}
