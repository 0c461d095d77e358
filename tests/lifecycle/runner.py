"""`heartflow run` as a subprocess in its own process group, its output watched line by line; a fault kills the
whole group (the run, its trial workers and its temporary Prefect server) with SIGKILL the moment the run's
own log says it reached a stage boundary. No hook in the product: only what an operator's terminal shows,
and, inside the promotion, what it changes step by step: the endpoint's state file (traffic moves first),
then the registry's champion alias."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 300.0  # a night takes ~30 s; a run waiting on a slot nobody holds takes two hours

# Where each kill lands: the first output line matching the pattern, the n-th time (gate: after the last
# evaluation, which is the second when a champion serves).
BOUNDARIES: dict[str, str] = {
    "sweep": r"trial \d+ finished \(1/",
    "deploy": r"holding the rollout slot",
    "evaluate": r"deployment \w+ of endpoint \S+ serves",
    "gate": r"holdout through \S+: accuracy",
    "promote": r"holdout through \S+: accuracy",  # then a probe watches for the traffic switch
    "alias": r"holdout through \S+: accuracy",  # then a probe watches for the champion alias to move
}
PROBED = {"promote", "alias"}  # kill points that land when their probe's value changes
KILL_POINTS = tuple(BOUNDARIES)


@dataclass(frozen=True)
class RunOutcome:
    """How one `heartflow run` ended: ``kind`` is promoted, rejected, unchanged, refused (a one-line error
    before anything changed), failed (a stage failed), killed (by the fault) or hung (past the timeout)."""

    kind: str
    returncode: int | None
    seconds: float
    error_line: str
    landed: bool  # a kill fault: the boundary was reached and the group killed
    log: Path
    tracebacks: int = 0

    @property
    def completed(self) -> bool:
        return self.kind in {"promoted", "rejected", "unchanged"}


@dataclass
class _Watch:
    pattern: re.Pattern[str] | None
    occurrence: int
    seen: int = 0
    fired: threading.Event = field(default_factory=threading.Event)


def heartflow_env(prefect_home: Path) -> dict[str, str]:
    """The CLI's environment: this worktree's code, one PREFECT_HOME for the season, Prefect's temporary
    server (no PREFECT_API_URL), as a team's cron job runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    env.update(PYTHONPATH=str(REPO), PREFECT_HOME=str(prefect_home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120", PYTHONUNBUFFERED="1", COLUMNS="200")
    return env


def heartflow_command() -> list[str]:
    return [sys.executable, "-c", "from flows.cli import main; main()"]


def classify_output(returncode: int | None, text: str) -> tuple[str, str]:
    """How a run that was not killed ended, from its exit code and output; and its last `error:` line."""
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    error = errors[-1] if errors else ""
    if returncode == 0:
        return ("unchanged" if "no new data since" in text or "no deployment change" in text else "promoted"), error
    if "rejected by the promotion gate" in error:
        return "rejected", error
    if error and "stage " in error and " failed:" in error:
        return "failed", error
    return ("refused" if error else "failed"), error


def serving_deployment(state_file: Path) -> str | None:
    """The deployment with all the traffic, as the endpoint's state file says."""
    try:
        traffic = json.loads(state_file.read_text()).get("traffic", {})
    except (OSError, ValueError):
        return None
    return next((name for name, share in traffic.items() if int(share) == 100), None)


def champion_alias(database: Path, model: str) -> str | None:
    """The version the registry's champion alias points at, read from MLflow's SQLite store."""
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as connection:
            row = connection.execute("SELECT version FROM registered_model_aliases WHERE name = ? AND alias = 'champion'",
                                     (model,)).fetchone()
    except sqlite3.Error:
        return None
    return None if row is None else str(row[0])


def run_heartflow(args: list[str], prefect_home: Path, log: Path, *, kill_at: str | None = None,
                  occurrence: int = 1, probe: Callable[[], object] | None = None, delay_s: float = 0.0,
                  action: Callable[[], None] | None = None, timeout_s: float = RUN_TIMEOUT_S) -> RunOutcome:
    """Run `heartflow run ARGS`; with ``kill_at`` (a key of BOUNDARIES) SIGKILL its process group there, or
    call ``action`` there instead (the run goes on: ``landed`` says the action ran)."""
    watch = _Watch(re.compile(BOUNDARIES[kill_at]) if kill_at else None, occurrence)
    started = time.monotonic()
    process = subprocess.Popen([*heartflow_command(), "run", *args], cwd=log.parent, env=heartflow_env(prefect_home),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               start_new_session=True, text=True, bufsize=1)
    lines: list[str] = []
    landed = threading.Event()
    acted = threading.Event()

    def kill() -> None:
        if action is not None:
            action()
            acted.set()
            return
        if not landed.is_set():
            landed.set()
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                landed.clear()

    def probe_watcher(before: object) -> None:
        # The promotion moves traffic first, then the alias, deletes the old deployment, writes history:
        # the kill lands as soon as the probed step happened, in the middle of all that.
        assert probe is not None
        while process.poll() is None:
            now = probe()
            if now is not None and now != before:
                kill()
                return
            time.sleep(0.005)

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if watch.pattern is not None and not watch.fired.is_set() and watch.pattern.search(line):
                watch.seen += 1
                if watch.seen >= watch.occurrence:
                    watch.fired.set()
                    if kill_at in PROBED and probe is not None:
                        threading.Thread(target=probe_watcher, args=(probe(),), daemon=True).start()
                    elif delay_s:
                        threading.Timer(delay_s, kill).start()
                    else:
                        kill()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        returncode: int | None = process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        returncode = None
    reader.join(timeout=10)
    seconds = time.monotonic() - started
    text = "".join(lines)
    log.write_text(f"$ heartflow run {' '.join(args)}\n{text}")
    tracebacks = text.count("Traceback (most recent call last)")
    if returncode is None:
        return RunOutcome("hung", None, seconds, "", False, log, tracebacks)
    if landed.is_set():
        return RunOutcome("killed", returncode, seconds, "", True, log, tracebacks)
    kind, error = classify_output(returncode, text)
    return RunOutcome(kind, returncode, seconds, error, acted.is_set(), log, tracebacks)
