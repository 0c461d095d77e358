"""Control of a local endpoint from another process: deploy, traffic, delete, status, key, stop.

The host runs detached (its own session, logs in server.log) and follows state.json, so the manager only
edits that file (atomically, under a lock) and checks the result over HTTP on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

from backends.errors import DeploymentError
from backends.local.endpoint.probe import http_request, smoke_request
from backends.local.endpoint.process import log_tail, pid_alive, spawn_detached, stop_process
from backends.local.endpoint.state import (
    DEFAULT_HOST,
    KEY_ENV,
    DeploymentConfig,
    EndpointPaths,
    EndpointState,
    check_traffic,
    ensure_key,
    locked,
    read_runtime,
    read_state,
    write_state,
)
from backends.local.endpoint.warm import release_warm_host, start_warm_host, take_warm_host
from backends.domain.spec import check_resource_name
from src.scoring import ModelLoadError, find_model_dir, read_features

logger = logging.getLogger(__name__)

SERVER_MODULE = "backends.local.endpoint.server"


def default_max_body_bytes(max_rows: int) -> int:
    """Room for ``max_rows`` records of a few dozen columns, at least 1 MiB."""
    return max(1 << 20, max_rows * 2048)


@dataclass(frozen=True)
class DeploymentStatus:
    """One deployment of the endpoint: the model version it serves and its share of traffic."""

    name: str
    model_name: str
    model_version: str
    model_dir: str
    traffic: int


@dataclass(frozen=True)
class EndpointStatus:
    """What the endpoint serves and where. The key is never part of it (``LocalEndpointManager.key()``)."""

    name: str
    scoring_uri: str
    port: int | None
    pid: int | None
    running: bool
    deployments: tuple[DeploymentStatus, ...]
    traffic: Mapping[str, int] = field(default_factory=dict)
    key_path: Path | None = None
    log_path: Path | None = None
    openapi_url: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "traffic", MappingProxyType(dict(self.traffic)))

    def deployment(self, name: str) -> DeploymentStatus | None:
        return next((d for d in self.deployments if d.name == name), None)


class LocalEndpointManager:
    """One local endpoint ``name`` under ``home``: several named deployments behind one port."""

    def __init__(self, home: Path, name: str, *, python: str | None = None) -> None:
        check_resource_name("endpoint name", name)
        self.paths = EndpointPaths(Path(home), name)
        self.name = name
        self._python = python or sys.executable
        self._process: subprocess.Popen[bytes] | None = None

    # -- queries -------------------------------------------------------------------------------------------

    def key(self) -> str:
        """The endpoint key (HEARTFLOW_ENDPOINT_KEY, or the 0600 key file's, created on first use). Never logged."""
        return ensure_key(self.paths)

    def is_running(self) -> bool:
        """True when the host process is alive and answers GET /health."""
        runtime = read_runtime(self.paths)
        if not runtime or not pid_alive(runtime.get("pid")):
            return False
        try:
            status, _, _ = http_request(int(runtime["port"]), "GET", "/health", timeout_s=2, host=runtime.get("host", DEFAULT_HOST))
        except OSError:
            return False
        return status == 200

    def status(self) -> EndpointStatus | None:
        """The endpoint's deployments, traffic, port and process, or None when it was never deployed."""
        state = read_state(self.paths)
        if state is None:
            return None
        runtime = read_runtime(self.paths) or {}
        pid = runtime.get("pid")
        running = pid_alive(pid)
        port = runtime.get("port") if running else state.port
        host = runtime.get("host", state.host)
        base = f"http://{host}:{port}" if port else ""
        return EndpointStatus(
            name=self.name,
            scoring_uri=f"{base}/score" if base else "",
            port=port,
            pid=pid if running else None,
            running=running,
            deployments=tuple(
                DeploymentStatus(d.name, d.model_name, d.model_version, d.model_dir, state.traffic.get(d.name, 0))
                for d in state.deployments.values()
            ),
            traffic=state.traffic,
            key_path=self.paths.key,
            log_path=self.paths.log,
            openapi_url=f"{base}/openapi.json" if base else "",
        )

    # -- changes -------------------------------------------------------------------------------------------

    def deploy(
        self,
        deployment: str,
        model_dir: Path,
        model_name: str,
        model_version: str,
        *,
        port: int | None,
        workers: int,
        max_rows: int,
        request_timeout_ms: int,
        ready_timeout_s: float = 60,
        max_body_bytes: int | None = None,
    ) -> EndpointStatus:
        """Add or replace ``deployment`` serving the MLflow model in ``model_dir`` and block until it answers
        a smoke request through the endpoint (addressed with the azureml-model-deployment header).

        Starts the host in the background when it is not running. The deployment takes 0 % of traffic when
        another deployment serves, 100 % when none does. ``port``/``workers`` apply when the host starts.
        Raises DeploymentError (naming the log file) when the model cannot be served; the endpoint then
        keeps its previous deployments and traffic.
        """
        try:
            check_resource_name("deployment name", deployment)
            folder = find_model_dir(Path(model_dir))
            features = read_features(folder)
        except (ValueError, ModelLoadError) as exc:
            raise DeploymentError(f"cannot deploy {deployment} on endpoint {self.name}: {exc}") from exc
        deadline = time.monotonic() + ready_timeout_s
        config = DeploymentConfig(
            name=deployment,
            model_dir=str(folder.resolve()),
            model_name=model_name,
            model_version=str(model_version),
            max_rows=max_rows,
            request_timeout_ms=request_timeout_ms,
        )
        with locked(self.paths):
            self.key()
            previous = read_state(self.paths)
            # A host started ahead of this first deployment is taken when it listens as asked, else replaced.
            warm = take_warm_host(self.paths, port, workers, deadline) if previous is None else False
            # A live host that is slow to answer (a busy machine) is waited for, never started twice.
            running = self._host_alive()
            if running:
                self._wait_healthy(deadline)
            base = previous or EndpointState(name=self.name)
            if not running or warm:
                base = replace(base, port=port, workers=workers)
            elif workers != base.workers or (port is not None and port != (self.status() or base).port):
                logger.warning(
                    "endpoint %s already runs with %d worker(s) on port %s; port/workers apply after a restart",
                    self.name, base.workers, base.port,
                )
            body_limit = max_body_bytes or max(default_max_body_bytes(max_rows), base.max_body_bytes if previous else 0)
            new_state = replace(base.with_deployment(config), max_body_bytes=body_limit)
            write_state(self.paths, new_state)
            started_here = warm  # a warm host no deployment serves is stopped when this one fails
            try:
                if not running:
                    self._start(deadline)
                    started_here = True
                port_now = int((read_runtime(self.paths) or {}).get("port", 0))
                smoke_request(port_now, self.key(), deployment, {"data": [{f.name: 0 for f in features}]}, deadline,
                              f"deployment {deployment} of endpoint {self.name}", self.paths.log)
            except DeploymentError:
                if previous is not None:
                    write_state(self.paths, previous)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        self.paths.state.unlink()
                if started_here:
                    self.stop()
                raise
        logger.info(
            "endpoint %s: deployment %s serves %s version %s (traffic %s)",
            self.name, deployment, model_name, model_version, dict(new_state.traffic),
        )
        status = self.status()
        assert status is not None
        return status

    def set_traffic(self, traffic: Mapping[str, int]) -> EndpointStatus:
        """Replace the traffic split (deployments left out get 0 %); weights are whole percentages summing
        to 100 (or 0). Every worker applies it at its next request. Raises DeploymentError."""
        with locked(self.paths):
            state = self._require_state()
            full = {name: int(traffic.get(name, 0)) for name in state.deployments}
            try:
                check_traffic(dict(traffic), state.deployments)
            except ValueError as exc:
                raise DeploymentError(f"endpoint {self.name}: {exc}") from exc
            write_state(self.paths, replace(state, traffic=full))
        logger.info("endpoint %s: traffic %s", self.name, full)
        return self._status_or_raise()

    def delete_deployment(self, deployment: str) -> EndpointStatus:
        """Remove ``deployment``. Refused (DeploymentError) while it takes traffic: move traffic first, as
        Azure requires. Deleting a deployment that does not exist is a no-op."""
        with locked(self.paths):
            state = self._require_state()
            if deployment not in state.deployments:
                logger.info("endpoint %s has no deployment %s: nothing to delete", self.name, deployment)
                return self._status_or_raise()
            weight = state.traffic.get(deployment, 0)
            if weight > 0:
                others = sum(w for n, w in state.traffic.items() if n != deployment)
                hint = "it is the only deployment taking traffic" if others == 0 else f"it takes {weight} % of traffic"
                raise DeploymentError(
                    f"cannot delete deployment {deployment} of endpoint {self.name}: {hint}; "
                    "set its traffic to 0 first (set_traffic)"
                )
            write_state(self.paths, state.without_deployment(deployment))
        logger.info("endpoint %s: deployment %s deleted", self.name, deployment)
        return self._status_or_raise()

    def stop(self, timeout_s: float = 10) -> None:
        """Stop the host gracefully (SIGTERM: in-flight requests finish), killing it after ``timeout_s``.
        Idempotent; the endpoint's state stays, so a later deploy starts it again."""
        runtime = read_runtime(self.paths) or {}
        pid = runtime.get("pid")
        if self._process is not None and self._process.poll() is None:
            pid = self._process.pid
        if pid_alive(pid):
            logger.info("stopping endpoint %s (pid %s)", self.name, pid)
            if not stop_process(pid, timeout_s):
                logger.warning("endpoint %s did not stop within %.0f s: killed it", self.name, timeout_s)
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=1)
            self._process = None
        runtime_now = read_runtime(self.paths)
        if runtime_now and not pid_alive(runtime_now.get("pid")):
            with contextlib.suppress(FileNotFoundError):
                self.paths.runtime.unlink()

    def delete(self, timeout_s: float = 10) -> None:
        """Stop the host and forget the endpoint (state, key and runtime files; the log stays). Idempotent."""
        self.stop(timeout_s)
        for path in (self.paths.state, self.paths.key, self.paths.runtime):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    # -- internals -----------------------------------------------------------------------------------------

    def _require_state(self) -> EndpointState:
        state = read_state(self.paths)
        if state is None:
            raise DeploymentError(f"endpoint {self.name} does not exist under {self.paths.home}: deploy a model first")
        return state

    def _status_or_raise(self) -> EndpointStatus:
        status = self.status()
        if status is None:
            raise DeploymentError(f"endpoint {self.name} vanished while being changed")
        return status

    def start_warm(self, *, port: int | None, workers: int) -> bool:
        """Start the host of this never-deployed endpoint now, without waiting for it, so that the first
        ``deploy`` finds it running (``backends.local.endpoint.warm``). False when there is nothing to warm."""
        return start_warm_host(self.paths, self._python, SERVER_MODULE, port=port, workers=workers) is not None

    def release_warm(self) -> bool:
        """Stop the host ``start_warm`` started if no deployment took it. True when one was stopped."""
        return release_warm_host(self.paths)

    def _host_alive(self) -> bool:
        runtime = read_runtime(self.paths)
        if not runtime:
            return False
        return pid_alive(runtime.get("pid"))

    def _wait_healthy(self, deadline: float) -> None:
        runtime = read_runtime(self.paths) or {}
        while time.monotonic() < deadline and pid_alive(runtime.get("pid")):
            with contextlib.suppress(OSError):
                status, _, _ = http_request(int(runtime["port"]), "GET", "/health", timeout_s=2)
                if status == 200:
                    return
            time.sleep(0.1)
        raise DeploymentError(
            f"the endpoint host of {self.name} (pid {runtime.get('pid')}) runs but does not answer /health; "
            f"see {self.paths.log}, or stop it first"
        )

    def _start(self, deadline: float) -> None:
        """Start the host detached and wait until it answers GET /health."""
        self.paths.root.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.paths.runtime.unlink()
        env = {k: v for k, v in os.environ.items() if k != KEY_ENV}  # the key travels in its 0600 file
        self._process = spawn_detached([self._python, "-m", SERVER_MODULE, "--dir", str(self.paths.root)], self.paths.log, env)
        logger.info("endpoint %s starting (pid %d, log %s)", self.name, self._process.pid, self.paths.log)
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise DeploymentError(
                    f"the endpoint host of {self.name} exited with code {self._process.returncode} while starting; "
                    f"see {self.paths.log}:\n{log_tail(self.paths.log)}"
                )
            runtime = read_runtime(self.paths)
            if runtime and runtime.get("pid") == self._process.pid:
                with contextlib.suppress(OSError):
                    status, _, _ = http_request(int(runtime["port"]), "GET", "/health", timeout_s=1)
                    if status == 200:
                        return
            time.sleep(0.05)
        raise DeploymentError(f"the endpoint host of {self.name} did not answer /health in time; see {self.paths.log}")

def serve_foreground(
    home: Path,
    name: str,
    model_dir: Path,
    model_name: str,
    model_version: str,
    port: int | None = None,
    workers: int = 1,
    *,
    deployment: str = "blue",
    max_rows: int = 1000,
    request_timeout_ms: int = 5000,
    host: str = DEFAULT_HOST,
    on_listening: Callable[[EndpointStatus], None] | None = None,
) -> None:
    """Serve one model version on endpoint ``name`` in this process until Ctrl-C / SIGTERM (``heartflow
    serve``). ``on_listening`` receives the status once the port is bound (a free one when ``port`` is None).
    Raises DeploymentError when the model cannot be served or the endpoint already runs in the background."""
    from backends.local.endpoint.server import run_host

    manager = LocalEndpointManager(home, name)
    if manager._host_alive():
        status = manager.status()
        raise DeploymentError(
            f"endpoint {name} already runs (pid {status.pid if status else '?'}); stop it first "
            f"(LocalEndpointManager.stop or heartflow's --stop-endpoint)"
        )
    try:
        check_resource_name("deployment name", deployment)
        folder = find_model_dir(Path(model_dir))
        read_features(folder)
    except (ValueError, ModelLoadError) as exc:
        raise DeploymentError(f"cannot serve {model_name} version {model_version}: {exc}") from exc
    with locked(manager.paths):
        manager.key()
        config = DeploymentConfig(deployment, str(folder.resolve()), model_name, str(model_version), max_rows, request_timeout_ms)
        state = EndpointState(name=name, host=host, port=port, workers=workers,
                              max_body_bytes=default_max_body_bytes(max_rows)).with_deployment(config)
        write_state(manager.paths, state)

    def listening(actual_port: int) -> None:
        if on_listening is not None:
            status = manager.status()
            if status is not None:
                on_listening(replace(status, port=actual_port, scoring_uri=f"http://{host}:{actual_port}/score",
                                     openapi_url=f"http://{host}:{actual_port}/openapi.json"))

    run_host(manager.paths, host=host, port=port or 0, workers=workers,
             graceful_timeout_s=request_timeout_ms / 1000 + 5, on_listening=listening)
