"""The endpoint host started ahead of its first deployment (backends.local.endpoint.warm): real host processes
on 127.0.0.1, a real model, the process that started it killed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import requests

from backends.domain.spec import DeploySpec
from backends.local.endpoint import LocalEndpointManager
from backends.local.endpoint.process import pid_alive
from backends.local.endpoint.state import read_runtime
from backends.local.endpoint.warm import warm_host_pid
from tests.integration.endpoint.conftest import RECORD

COMMON = dict(port=None, max_rows=50, request_timeout_ms=5000)


def _wait_listening(manager: LocalEndpointManager, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runtime = read_runtime(manager.paths)
        if runtime and runtime.get("port"):
            try:  # bound before its start-up ends: a busy machine's host may not answer within the timeout yet
                if requests.get(f"http://127.0.0.1:{runtime['port']}/health", timeout=2) is not None:
                    return runtime
            except requests.RequestException:
                pass
        time.sleep(0.1)
    raise AssertionError(f"the warm host did not listen; log:\n{manager.paths.log.read_text()}")


def _wait_gone(pid: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(pid), f"pid {pid} still runs"


def test_the_first_deploy_takes_the_warm_host(tmp_path: Path, trained_model_dir: Path) -> None:
    manager = LocalEndpointManager(tmp_path, "warm-one")
    assert manager.start_warm(port=None, workers=1)
    try:
        runtime = _wait_listening(manager)
        assert runtime["warm"] is True and manager.status() is None  # never deployed: nothing to show
        scoring = f"http://127.0.0.1:{runtime['port']}/score"
        auth = {"Authorization": f"Bearer {manager.key()}"}
        refused = requests.post(scoring, json={"data": [RECORD]}, headers=auth, timeout=10)
        assert refused.status_code == 503  # the warm host serves nothing until a deployment exists
        assert not manager.start_warm(port=None, workers=1)  # already running: not started twice

        status = manager.deploy("blue", trained_model_dir, "heart-classifier", "1", workers=1, **COMMON)
        assert status.pid == runtime["pid"] and status.port == runtime["port"]  # the same process serves
        answer = requests.post(status.scoring_uri, json={"data": [RECORD]}, headers=auth, timeout=10)
        assert answer.status_code == 200 and len(answer.json()) == 1
        assert not manager.release_warm()  # a deployment took it: it stays
        assert manager.is_running()
    finally:
        manager.stop()


def test_a_warm_host_no_deployment_took_is_stopped_and_a_deployed_endpoint_is_not_warmed(
    tmp_path: Path, trained_model_dir: Path,
) -> None:
    manager = LocalEndpointManager(tmp_path, "warm-two")
    assert manager.start_warm(port=None, workers=1)
    pid = _wait_listening(manager)["pid"]
    assert manager.release_warm()
    _wait_gone(pid)
    assert read_runtime(manager.paths) is None and not manager.release_warm()

    manager.deploy("blue", trained_model_dir, "heart-classifier", "1", workers=1, **COMMON)
    manager.stop()
    # A stopped endpoint keeps its state: warming it would serve the old model before the deploy does.
    assert not manager.start_warm(port=None, workers=1)
    assert not manager.is_running()


def test_a_deploy_asking_other_workers_replaces_the_warm_host(tmp_path: Path, trained_model_dir: Path) -> None:
    manager = LocalEndpointManager(tmp_path, "warm-three")
    assert manager.start_warm(port=None, workers=1)
    warm_pid = _wait_listening(manager)["pid"]
    try:
        status = manager.deploy("blue", trained_model_dir, "heart-classifier", "1", workers=2, **COMMON)
        assert status.pid != warm_pid and (read_runtime(manager.paths) or {}).get("workers") == 2
        _wait_gone(warm_pid)
    finally:
        manager.stop()


def test_the_warm_host_stops_itself_when_the_run_that_started_it_dies(tmp_path: Path) -> None:
    """A run killed during its sweep leaves no idle host: the host watches the process that started it."""
    starter = textwrap.dedent(f"""
        import sys, time
        from backends.local.endpoint import LocalEndpointManager
        from backends.local.endpoint.state import read_runtime
        manager = LocalEndpointManager({str(tmp_path)!r}, "warm-orphan")
        assert manager.start_warm(port=None, workers=1)
        while not (read_runtime(manager.paths) or {{}}).get("port"):
            time.sleep(0.1)
        print(read_runtime(manager.paths)["pid"], flush=True)
        time.sleep(600)
    """)
    run = subprocess.Popen([sys.executable, "-c", starter], stdout=subprocess.PIPE, text=True,
                           cwd=Path(__file__).resolve().parents[3])
    try:
        assert run.stdout is not None
        host_pid = int(run.stdout.readline())
        assert pid_alive(host_pid)
    finally:
        run.kill()
        run.wait()
    _wait_gone(host_pid)


def test_the_local_backend_warms_the_endpoint_in_the_sweeps_tail_and_releases_it(tmp_path: Path) -> None:
    """Through the real sweep: the host starts once the last trial is handed out; a run that ends without
    deploying stops it."""
    from backends.domain.dataset import prepare_data
    from backends.domain.spec import Choice, SweepSpec, ValidationSpec
    from backends.local.backend import LocalBackend

    prepared = prepare_data(None, None, 0.1)
    backend = LocalBackend(tmp_path)
    data = backend.upload(prepared.train)
    spec = SweepSpec(sampling="grid", search_space={"n_estimators": Choice(values=[5, 10, 15])},
                     max_total_trials=3, max_concurrent_trials=1, validation=ValidationSpec(method="split"))
    deploy = DeploySpec(endpoint_name="warm-sweep")
    manager = LocalEndpointManager(tmp_path, "warm-sweep")
    backend.warm_endpoint(deploy)
    assert read_runtime(manager.paths) is None  # asked, not started: the sweep's tail starts it
    seen: list[bool] = []
    backend.sweep(data, spec, prepared.schema, progress=lambda t, done, total: seen.append(manager.paths.runtime.exists()
                                                                                          or manager.paths.log.exists()))
    assert seen[-1], "the host was started before the sweep ended"
    pid = _wait_listening(manager)["pid"]
    assert warm_host_pid(manager.paths) == pid
    backend.release_warm_endpoint()
    _wait_gone(pid)
    backend.release_warm_endpoint()  # idempotent


def test_release_without_a_warm_request_does_nothing(tmp_path: Path) -> None:
    manager = LocalEndpointManager(tmp_path, "warm-none")
    assert not manager.release_warm()
    assert read_runtime(manager.paths) is None


def test_a_deploy_right_after_the_warm_start_waits_for_that_host(tmp_path: Path, trained_model_dir: Path) -> None:
    """The deploy can come before the warm host listens (a busy machine): it takes that host, never a second."""
    import psutil

    manager = LocalEndpointManager(tmp_path, "warm-race")
    assert manager.start_warm(port=None, workers=1)
    pid = warm_host_pid(manager.paths)
    assert pid is not None
    try:
        status = manager.deploy("blue", trained_model_dir, "heart-classifier", "1", workers=1, **COMMON)
        assert status.pid == pid
        hosts = [p for p in psutil.process_iter(["cmdline"])
                 if "backends.local.endpoint.server" in " ".join(p.info["cmdline"] or [])
                 and str(manager.paths.root) in " ".join(p.info["cmdline"] or [])]
        assert [h.pid for h in hosts] == [pid]
    finally:
        manager.stop()
