"""An endpoint host started before its first model exists ("warm"), so a first deploy costs the model's load
and a smoke request rather than a Python process's start-up (imports, skops, the forest kernel: 2-3 s).

Only an endpoint that was never deployed (no state.json) and whose host is not running is warmed: a stopped
endpoint keeps its state, and starting its host early would serve the old champion sooner than the deploy
would. The warm host serves nothing (no deployment, /score answers 503) until a deploy writes state.json.
Its marker (``warm.json`` beside the endpoint's state) holds its pid and the port and workers it was
started with; a deploy asking for others stops it and starts the host as usual. A warm host no deploy took is stopped by ``release_warm_host``, and
it stops itself when the process that started it is gone before any state.json appears (a killed run
leaves no idle host behind).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from backends.local.endpoint.process import pid_alive, spawn_detached, stop_process
from backends.local.endpoint.state import (
    KEY_ENV,
    EndpointPaths,
    ensure_key,
    locked,
    read_runtime,
    read_state,
    write_json_atomic,
)

logger = logging.getLogger(__name__)

WARM_FOR_FLAG = "--warm-for"
PARENT_POLL_S = 0.5


def _marker(paths: EndpointPaths) -> Path:
    return paths.root / "warm.json"


def warm_host_pid(paths: EndpointPaths) -> int | None:
    """The pid of a live warm host no deploy has taken yet (started, perhaps not yet listening), else None."""
    marker = _live_marker(paths)
    return None if marker is None else marker["pid"]


def _live_marker(paths: EndpointPaths) -> dict | None:
    """The marker of a live warm host no deploy has taken yet (its pid, port and workers), else None."""
    if paths.state.exists():
        return None
    try:
        marker = json.loads(_marker(paths).read_text(encoding="utf-8"))
        marker["pid"] = int(marker["pid"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None
    return marker if pid_alive(marker["pid"]) else None


def start_warm_host(paths: EndpointPaths, python: str, module: str, *, port: int | None, workers: int) -> int | None:
    """Start the host of a never-deployed endpoint in the background (not waiting for it); its pid, or None
    when the endpoint has a state or a running host (nothing to warm)."""
    with locked(paths):
        if read_state(paths) is not None or warm_host_pid(paths) is not None:
            return None
        runtime = read_runtime(paths)
        if runtime and pid_alive(runtime.get("pid")):
            return None
        paths.root.mkdir(parents=True, exist_ok=True)
        ensure_key(paths)  # the host reads the key when it starts; created 0600 as a deploy would
        paths.runtime.unlink(missing_ok=True)
        env = {k: v for k, v in os.environ.items() if k != KEY_ENV}  # the key travels in its 0600 file
        argv = [python, "-m", module, "--dir", str(paths.root), WARM_FOR_FLAG, str(os.getpid()),
                "--port", str(port or 0), "--workers", str(workers)]
        process = spawn_detached(argv, paths.log, env)
        # Written before the host listens: a deploy that comes first finds it starting and waits for it.
        write_json_atomic(_marker(paths), {"pid": process.pid, "port": port or 0, "workers": workers})
    logger.info("endpoint %s: host starting ahead of its first deployment (pid %d)", paths.name, process.pid)
    return process.pid


def take_warm_host(paths: EndpointPaths, port: int | None, workers: int, deadline: float) -> bool:
    """For a first deploy (under the endpoint's lock): True when a warm host started with ``port`` and
    ``workers`` listens (waited for until ``deadline``): it becomes the endpoint's host. One started with
    others is stopped, and so is one that does not listen in time: the deploy then starts the host as asked."""
    marker = _live_marker(paths)
    if marker is None:
        _marker(paths).unlink(missing_ok=True)
        return False
    pid = marker["pid"]
    if marker.get("workers") == workers and (port is None or port == marker.get("port")):
        while time.monotonic() < deadline and pid_alive(pid):
            if (read_runtime(paths) or {}).get("pid") == pid:
                _marker(paths).unlink(missing_ok=True)
                return True
            time.sleep(0.05)
    logger.info("endpoint %s: the host started ahead (%s worker(s), port %s) is not the one asked for or did not "
                "start: starting another", paths.name, marker.get("workers"), marker.get("port") or "any")
    _stop_warm(paths, pid)
    return False


def release_warm_host(paths: EndpointPaths, timeout_s: float = 10) -> bool:
    """Stop a warm host no deploy took (state.json still absent). True when one was stopped."""
    with locked(paths):
        pid = warm_host_pid(paths)
        if pid is None:
            _marker(paths).unlink(missing_ok=True)
            return False
        _stop_warm(paths, pid, timeout_s)
    logger.info("endpoint %s: the host started ahead of a deployment that did not come was stopped", paths.name)
    return True


def _stop_warm(paths: EndpointPaths, pid: int, timeout_s: float = 10) -> None:
    stop_process(pid, timeout_s)
    if (read_runtime(paths) or {}).get("pid") == pid:
        paths.runtime.unlink(missing_ok=True)
    _marker(paths).unlink(missing_ok=True)


def watch_parent(paths: EndpointPaths, parent_pid: int, stop: Callable[[], None]) -> threading.Thread:
    """In the warm host: call ``stop`` when ``parent_pid`` is gone before state.json exists, or when a
    state.json appears that another host serves; once a deploy takes this host it is an endpoint like any
    other and outlives the run, as a deployed endpoint does."""

    def run() -> None:
        while not paths.state.exists():
            if not pid_alive(parent_pid):
                logger.info("the run that started this host ahead of a deployment is gone: stopping")
                stop()
                return
            threading.Event().wait(PARENT_POLL_S)
        if (read_runtime(paths) or {}).get("pid") != os.getpid():
            logger.info("another host serves this endpoint: stopping")
            stop()

    thread = threading.Thread(target=run, name="heartflow-warm-host-parent", daemon=True)
    thread.start()
    return thread
