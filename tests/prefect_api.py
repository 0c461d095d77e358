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

from backends.local.cache import cache_dir
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
        self.folder = folder
        self.log = folder / "prefect-server.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._error: Exception | None = None
        # Making the template (a first run on a machine: a whole migration) does not hold up the collection either.
        self._starting = threading.Thread(target=self._start, name="test-prefect-api", daemon=True)
        self._starting.start()

    def _start(self) -> None:
        try:
            database = self.folder / "prefect-test.db"
            _copy_database(template_database(), database)
            settings = {"PREFECT_API_BLOCKS_REGISTER_ON_START": "false", **QUIET_SERVICES}  # the template has the blocks
            self._process, self.url = _launch_server(database, self.log, settings)
        except (OSError, RuntimeError, sqlite3.Error, subprocess.SubprocessError) as exc:  # for the first test needing it
            self._error = exc

    def wait_healthy(self) -> str:
        """The API's URL once it answers; a failed start raises with the end of the server's log."""
        self._starting.join(STARTUP_TIMEOUT_S)
        if self._error is not None:
            raise RuntimeError(f"the test Prefect API could not start: {self._error}") from self._error
        assert self._process is not None, "the test Prefect API is still being prepared"
        try:
            _wait_healthy(self._process, self.url, self.log)
        except RuntimeError:
            self.stop()
            raise
        return self.url

    def stop(self) -> None:
        self._starting.join(STARTUP_TIMEOUT_S)
        if self._process is not None:
            _stop(self._process)
        shutil.rmtree(self.folder, ignore_errors=True)


def template_database() -> Path:
    """A Prefect database migrated to the installed Prefect's head, its blocks registered (made on first use,
    atomically: two workers making it at once both succeed, one file wins)."""
    import prefect

    cache = cache_dir()
    template = cache / f"prefect-{prefect.__version__}-test-api.db"
    if template.exists():
        return template
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as scratch:
        made, log = Path(scratch) / "made.db", Path(scratch) / "server.log"
        process, url = _launch_server(made, log, {})  # it migrates the database and registers the blocks as it starts
        try:
            _wait_healthy(process, url, log)
        finally:
            _stop(process)
        part = Path(scratch) / "template.db"
        _copy_database(made, part)
        os.replace(part, template)
    return template


def _launch_server(database: Path, log: Path, settings: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """Prefect's temporary server on ``database`` with ``settings`` (its output in ``log``): the process and its
    API's URL, without waiting for it."""
    spec = importlib.util.find_spec("prefect")
    assert spec is not None and spec.origin is not None
    port = free_port()
    command, ephemeral = temporary_server_command(Path(spec.origin).parent.parent, port)
    environment = {**os.environ, **ephemeral, "PREFECT_SERVER_DATABASE_CONNECTION_URL": _sqlite_url(database), **settings}
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=environment, stdout=out, stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}/api"


def _wait_healthy(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    """Return once the API at ``url`` answers; raise with the end of ``log`` when the server exits first or does not
    answer within STARTUP_TIMEOUT_S."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not _answers(f"{url}/health"):
        if process.poll() is not None:
            raise RuntimeError(f"Prefect's server exited with code {process.returncode}: {_tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"Prefect's server did not answer within {STARTUP_TIMEOUT_S} s: {_tail(log)}")
        time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"


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
