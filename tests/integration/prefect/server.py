"""A real `prefect server` on 127.0.0.1 with its own PREFECT_HOME, and a worker, as subprocesses.

Shared by the integration tests (one server per session) and the e2e kill-and-resume test. Processes run
in their own session so that stopping one also stops what it started (flow-run processes, trial workers,
endpoint hosts)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml
from tests.net import free_port

REPO = Path(__file__).resolve().parents[3]
HEALTH_TIMEOUT_S = 120.0
FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def prefect_yaml() -> dict[str, Any]:
    return yaml.safe_load((REPO / "prefect.yaml").read_text())


def pool_name() -> str:
    names = {d["work_pool"]["name"] for d in prefect_yaml()["deployments"]}
    assert len(names) == 1, f"expected one work pool in prefect.yaml, found {names}"
    return names.pop()


@dataclass
class PrefectServer:
    home: Path
    port: int
    logs: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PREFECT_HOME=str(self.home),
            PREFECT_API_URL=self.api_url,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_WORKER_QUERY_SECONDS="1",
            PREFECT_WORKER_HEARTBEAT_SECONDS="10",
            PREFECT_LOGGING_LEVEL="INFO",
            PYTHONUNBUFFERED="1",
        )
        env.pop("HEARTFLOW_HOME", None)
        return env

    def start(self, *args: str, log_name: str, cwd: Path = REPO) -> subprocess.Popen[bytes]:
        """A long-running prefect command (server, worker) in its own session, output to a log file."""
        log = open(self.logs / log_name, "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", *args], cwd=cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def run(self, *args: str, cwd: Path = REPO, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """A short prefect command; fails the test with its output when it exits non-zero."""
        done = subprocess.run(
            [sys.executable, "-m", "prefect", *args], cwd=cwd, env=self.env, capture_output=True, text=True,
            timeout=timeout, check=False,
        )
        assert done.returncode == 0, f"prefect {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        return done

    def wait_healthy(self, timeout: float = HEALTH_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.processes and self.processes[0].poll() is not None:
                raise AssertionError(f"prefect server exited {self.processes[0].returncode}:\n{self.log_tail('server.log')}")
            try:
                if requests.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise AssertionError(f"prefect server did not answer /api/health in {timeout:.0f} s:\n{self.log_tail('server.log')}")

    def log_tail(self, name: str, lines: int = 60) -> str:
        path = self.logs / name
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self) -> None:
        """SIGTERM each process group (newest first: the worker before the server), SIGKILL stragglers."""
        for process in reversed(self.processes):
            stop_group(process)
        self.processes.clear()


def stop_group(process: subprocess.Popen[Any], grace_s: float = 15.0) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace_s)
    with suppress(ProcessLookupError):  # the group may outlive its leader (flow-run processes, endpoint hosts)
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=5)


def drain_to_server(timeout_s: float = 10.0) -> None:
    """Send this process's queued run logs and events to the API before it stops (else Prefect reports each
    one it could not send)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=timeout_s)
    EventsWorker.drain_all(timeout=timeout_s)


@contextmanager
def running_server(base: Path) -> Iterator[PrefectServer]:
    """A server on a free loopback port with PREFECT_HOME under ``base``."""
    # Prefect keeps one events worker per client type, bound to the API it first saw: stop any worker of an
    # earlier server so this one's events reach this server (else tests depend on the order they run in).
    drain_to_server()
    (base / "prefect-home").mkdir(parents=True, exist_ok=True)
    (base / "logs").mkdir(parents=True, exist_ok=True)
    server = PrefectServer(home=base / "prefect-home", port=free_port(), logs=base / "logs")
    server.start("server", "start", "--host", "127.0.0.1", "--port", str(server.port), log_name="server.log", cwd=base)
    try:
        server.wait_healthy()
        yield server
    finally:
        drain_to_server()
        server.stop()


def wait_for_flow_run(client: Any, flow_run_id: Any, timeout: float = 300.0, logs: Sequence[str] = ()) -> Any:
    """Poll until the flow run reaches a final state; returns the flow run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.read_flow_run(flow_run_id)
        if run.state is not None and run.state.type.value in FINAL_STATES:
            return run
        time.sleep(1.0)
    raise AssertionError(f"flow run {flow_run_id} not finished after {timeout:.0f} s (state {run.state}):\n" + "\n".join(logs))
