"""The session's Prefect API for the tests that run a flow in this process: the `prefect_harness` fixture.
A pytest plugin (tests/conftest.py).

It is what `prefect.testing.utilities.prefect_test_harness` gives (Prefect's temporary server on a database
of its own, PREFECT_API_URL pointing at it), made cheaper in the two places that cost a test run time:
- the database starts as a copy of one already migrated for the installed Prefect (made once per machine and
  Prefect version in ~/.cache/heartflow, as the CLI's MLflow store template): a fresh database runs every
  migration since Prefect's first, about half of the server's start-up here (15 s against 7.5 s, measured);
- the server starts when the collection ends, if any selected test will need it, so its start-up runs
  beside the tests before those (harness tests run last, see tests/conftest.py) instead of in front of one.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.early_server import temporary_server_command
from tests.net import free_port

HARNESS_FIXTURE = "prefect_harness"
STARTUP_TIMEOUT_S = 180  # a loaded 2-core machine; a healthy start takes 7-15 s here
_API = pytest.StashKey["TestApi"]()
# The task-run recorder writes each task's states into the UI's tables in transactions that hold SQLite's
# write lock while a flow runs: an API write of the flow's own (the rollout slot taken or released, an
# artifact) then waits up to 2.4 s behind it (measured: a variable PATCH after five tasks, 2.2-2.4 s with the
# recorder, 0.01-0.06 s without). The in-process flow tests read flow runs, artifacts and variables, never
# the recorded task runs; the e2e tests that do (tests/e2e/test_prefect_resume.py) run a real server.
QUIET_SERVICES = {"PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED": "false"}


class TestApi:
    """Prefect's temporary server (the command Prefect's own harness runs) on a migrated copy of the template."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, folder: Path) -> None:
        self.url = ""
        self.port = 0
        self.folder = folder
        self.log = folder / "prefect-server.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._error: Exception | None = None
        # Making the template (a first run on a machine: a whole migration) does not hold up the collection either.
        self._starting = threading.Thread(target=self._start, args=(folder,), name="test-prefect-api", daemon=True)
        self._starting.start()

    def _start(self, folder: Path) -> None:
        try:
            self._launch(folder)
        except (OSError, RuntimeError, sqlite3.Error, subprocess.SubprocessError) as exc:  # for the first test needing it
            self._error = exc

    def _launch(self, folder: Path) -> None:
        database = folder / "prefect-test.db"
        _copy_database(template_database(), database)
        spec = importlib.util.find_spec("prefect")
        assert spec is not None and spec.origin is not None
        self.port = free_port()
        command, ephemeral = temporary_server_command(Path(spec.origin).parent.parent, self.port)
        environment = {**os.environ, **ephemeral, "PREFECT_SERVER_DATABASE_CONNECTION_URL": _sqlite_url(database),
                       "PREFECT_API_BLOCKS_REGISTER_ON_START": "false",  # the template holds Prefect's blocks
                       **QUIET_SERVICES}
        with self.log.open("wb") as log:
            self._process = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}/api"

    def wait_healthy(self) -> str:
        """The API's URL once it answers; a failed start raises with the end of the server's log."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        self._starting.join(STARTUP_TIMEOUT_S)
        if self._error is not None:
            raise RuntimeError(f"the test Prefect API could not start: {self._error}") from self._error
        assert self._process is not None, "the test Prefect API is still being prepared"
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the test Prefect API exited with code {self._process.returncode}: {self._log_tail()}")
            if _answers(f"{self.url}/health"):
                return self.url
            time.sleep(0.1)
        tail = self._log_tail()
        self.stop()
        raise RuntimeError(f"the test Prefect API did not answer within {STARTUP_TIMEOUT_S} s: {tail}")

    def _log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else "(no log)"

    def stop(self) -> None:
        self._starting.join(STARTUP_TIMEOUT_S)
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def template_database() -> Path:
    """A Prefect database migrated to the installed Prefect's head, its blocks registered (made on first use,
    atomically: two workers making it at once both succeed, one file wins)."""
    import prefect

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "heartflow"
    template = cache / f"prefect-{prefect.__version__}-test-api.db"
    if template.exists():
        return template
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as scratch:
        made = Path(scratch) / "made.db"
        spec = importlib.util.find_spec("prefect")
        assert spec is not None and spec.origin is not None
        port = free_port()
        command, ephemeral = temporary_server_command(Path(spec.origin).parent.parent, port)
        log = Path(scratch) / "server.log"
        with log.open("wb") as out:  # the server migrates the database and registers the blocks as it starts
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                       env={**os.environ, **ephemeral, "PREFECT_SERVER_DATABASE_CONNECTION_URL": _sqlite_url(made)})
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while not _answers(f"http://127.0.0.1:{port}/api/health"):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Prefect's server did not start on a new database: {log.read_text(errors='replace')[-2000:]}")
                time.sleep(0.1)
        finally:
            process.terminate()
            process.wait(timeout=30)
        part = Path(scratch) / "template.db"
        _copy_database(made, part)
        os.replace(part, template)
    return template


def _copy_database(source: Path, target: Path) -> None:
    """A consistent, self-contained copy (whatever a write-ahead log still holds)."""
    with contextlib.closing(sqlite3.connect(source)) as db, contextlib.closing(sqlite3.connect(target)) as copy:
        db.backup(copy)
        copy.execute("PRAGMA journal_mode=DELETE")


def _sqlite_url(database: Path) -> str:
    return f"sqlite+aiosqlite:///{database}"


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:  # our own loopback server
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the API now when a selected test will need it (under pytest-xdist each worker collects every
    test and starts its own: a worker that gets none of them stops it at the end)."""
    if any(HARNESS_FIXTURE in getattr(item, "fixturenames", ()) for item in session.items):
        folder = Path(tempfile.mkdtemp(prefix="heartflow-prefect-api-"))
        session.config.stash[_API] = TestApi(folder)


def pytest_unconfigure(config: pytest.Config) -> None:
    api = config.stash.get(_API, None)
    if api is not None:
        api.stop()


@pytest.fixture(scope="session")
def prefect_harness(request: pytest.FixtureRequest) -> Iterator[None]:
    """One Prefect API (a temporary database and server) for every test of the session that runs a flow in
    this process; PREFECT_API_URL points at it from the first use to the session's end."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    api = request.config.stash.get(_API, None)
    if api is None:  # asked for by a test the collection did not show (getfixturevalue): started now
        api = request.config.stash[_API] = TestApi(Path(tempfile.mkdtemp(prefix="heartflow-prefect-api-")))
    with temporary_settings(updates={PREFECT_API_URL: api.wait_healthy()}):
        yield
        APILogWorker.drain_all(timeout=10)  # what the flows logged reaches the API before it stops
        EventsWorker.drain_all()
    api.stop()
