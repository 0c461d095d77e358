"""Start Prefect's temporary API server the moment `heartflow run` starts, in its own process.

Without PREFECT_API_URL a flow starts a temporary Prefect server (uvicorn in a subprocess) and waits for it:
about 7 s here, 3 s of them importing Prefect's server in the CLI's own process first. heartflow launches
the same command (Prefect's ``SubprocessASGIServer`` command line: ``uvicorn prefect.server.api.server:
create_app``, UI off, ephemeral) before it validates the data or imports the flow, without importing the
server in this process: the server's import and start-up then run on the other core while the CLI works,
and the flow runs against it (PREFECT_API_URL set for the run only). The CLI owns the process and stops it
when the run ends. With PREFECT_API_URL set, a running server is used and nothing starts; if the early
server fails, the flow starts Prefect's own as before.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 120  # in the background a slow start costs nothing; a busy 2-core machine needs it


def _die_with_parent() -> None:
    """In the server's process before it runs: the kernel sends it SIGTERM when the CLI dies, even by SIGKILL,
    so a killed run never leaves a temporary server behind (Linux's PR_SET_PDEATHSIG)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class EarlyServer:
    """A temporary Prefect API this process started, or nothing when the run uses a configured one."""

    def __init__(self, process: subprocess.Popen[bytes] | None = None, url: str = "") -> None:
        self._process = process
        self.url = url
        if process is not None:
            atexit.register(self.stop)

    @contextlib.contextmanager
    def serving(self, prefetch: Sequence[str | Callable[[], object]] = ()) -> Iterator[None]:
        """Run the flow inside: waits until the server answers and points Prefect at it. When it does not
        answer, Prefect starts its own temporary server as it would have. ``prefetch``: what the run will do
        anyway, done one by one while the server is not yet answering (the wait's idle time): modules to
        import (names), or calls whose work the run finds done (a store opened once per process)."""
        if self._process is None:
            yield
            return
        if not self._wait_healthy(prefetch):
            self.stop()
            yield
            return
        from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

        # Not stopped on leaving: Prefect's log and event workers send what they hold when the process
        # exits, and the server must still answer then. The exit handler registered when it started (before
        # Prefect registered theirs) stops it after them.
        # No flow-run heartbeats: they let a long-lived server mark a crashed run, and this server dies with
        # the run; their thread sleeps in 1 s steps and is joined when the flow ends (up to 1 s of each run).
        with temporary_settings({PREFECT_API_URL: self.url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            yield

    def _wait_healthy(self, prefetch: Sequence[str | Callable[[], object]] = ()) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        waiting = list(prefetch)
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                logger.warning("Prefect's temporary server exited with code %s while starting; the flow starts its own", code)
                return False
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as answer:  # our own loopback URL
                    if answer.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            if waiting:
                _prefetch(waiting.pop(0))
                continue
            time.sleep(0.1)
        logger.warning("Prefect's temporary server did not answer within %d s; the flow starts its own", STARTUP_TIMEOUT_S)
        return False

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _prefetch(step: str | Callable[[], object]) -> None:
    """One step of the wait's work. A failure is left to the run: it does the same step later, in context,
    and says what went wrong there."""
    if isinstance(step, str):
        with contextlib.suppress(ImportError):
            importlib.import_module(step)
        return
    try:
        step()
    except Exception:  # repeated by the run, which reports it
        logger.debug("a step done while the server starts failed; the run does it again", exc_info=True)


# Prefect's temporary server has no public command line of its own: `prefect server start` is the public one,
# but it runs the server's background services and answered after about 12 s here against about 7 s. So this
# is the command and environment Prefect's SubprocessASGIServer runs, its two private settings
# (PREFECT__SERVER_EPHEMERAL, PREFECT__SERVER_FINAL) included; tests/unit/test_early_server.py compares them
# with the installed Prefect's own, so an upgrade that changes them fails there.
EPHEMERAL_ENVIRONMENT = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}


def temporary_server_command(app_dir: Path, port: int) -> tuple[list[str], dict[str, str]]:
    """The command line and the environment additions of Prefect's temporary server on 127.0.0.1:``port``."""
    command = [
        sys.executable, "-m", "uvicorn", "--app-dir", str(app_dir), "--factory",
        "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port), "--log-level", "error",
        "--lifespan", "on",
    ]
    return command, dict(EPHEMERAL_ENVIRONMENT)


def start_temporary_server_early() -> EarlyServer:
    """Launch the temporary server when the flow would start one (no PREFECT_API_URL, ephemeral mode on).

    It is launched first and checked against Prefect's settings after: importing those settings takes about
    a second, which the server's own start-up then overlaps. A profile that names an API stops it at once."""
    if os.environ.get("PREFECT_API_URL"):
        return EarlyServer()
    spec = importlib.util.find_spec("prefect")
    if spec is None or spec.origin is None:
        return EarlyServer()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:  # a free port, as Prefect picks one
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command, ephemeral = temporary_server_command(Path(spec.origin).parent.parent, port)
    try:  # the server reads the same environment and profile as this process
        process = subprocess.Popen(command, env={**os.environ, **ephemeral}, stdin=subprocess.DEVNULL,
                                   preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    except OSError as exc:
        logger.warning("cannot start Prefect's temporary server early (%s); the flow starts its own", exc)
        return EarlyServer()
    server = EarlyServer(process, f"http://127.0.0.1:{port}/api")
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.api.url or not settings.server.ephemeral.enabled:  # a profile names a server: use that one
        server.stop()
        return EarlyServer()
    return server
