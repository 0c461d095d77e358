"""A season of nights on ONE local home: the real CLI, the endpoint serving between nights, the data changing,
a fault injected at a stage boundary; after every night the invariants of tests/lifecycle/invariants.py.

A night is the scheduled `heartflow run`; when its fault killed the run (or the endpoint under it), the
scheduler's retry of that night follows at once and must complete: that is "the next night completes".
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections import Counter
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from backends.local.endpoint.state import EndpointPaths, read_runtime
from tests.lifecycle.data import POSITIVE, SeasonTable, failing_source
from tests.lifecycle.invariants import check_home, check_serves
from tests.lifecycle.runner import KILL_POINTS, PROBED, RunOutcome, champion_alias, run_heartflow, serving_deployment
from tests.tables import TARGET

ENDPOINT = "season-endpoint"
MODEL = "season-classifier"
DATA_CHANGES = ("first", "append", "drift", "unchanged", "worse")
DATA_FAULTS = ("http500", "truncated", "new-column", "missing-column")
ENDPOINT_FAULTS = ("endpoint-killed", "endpoint-killed@evaluate")
FAULTS = (*(f"kill@{point}" for point in KILL_POINTS), *ENDPOINT_FAULTS, *DATA_FAULTS)


@dataclass(frozen=True)
class Night:
    data: str  # one of DATA_CHANGES
    fault: str | None = None  # one of FAULTS


@dataclass
class SeasonReport:
    label: str
    backend: str = "local"
    nights: int = 0
    runs: int = 0
    seconds: float = 0.0
    faults_injected: Counter[str] = field(default_factory=Counter)
    faults_landed: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    nights_log: list[str] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set, repr=False)

    def violate(self, night: int, invariant: str, details: list[str]) -> None:
        """Record each violation the night it first shows (one that lasts is not repeated night after night)."""
        for detail in details:
            key = f"{invariant}: {re.sub(r'[(]status [a-z]*[)]', '', detail)}"
            if key not in self._seen:
                self._seen.add(key)
                self.violations.append(f"night {night}: {invariant}: {detail}")

    def summary(self) -> str:
        faults = ", ".join(f"{k} {v}/{self.faults_injected[k]}" for k, v in sorted(self.faults_landed.items()))
        lines = [
            f"lifecycle season {self.label} ({self.backend}): {self.nights} nights, {self.runs} runs, "
            f"{self.seconds:.0f} s",
            f"  faults injected: {sum(self.faults_injected.values())} (landed at their boundary: "
            f"{sum(self.faults_landed.values())}) {faults}",
            f"  outcomes: {dict(sorted(self.outcomes.items()))}",
            f"  invariant violations: {len(self.violations)}",
            *(f"    {v}" for v in self.violations),
        ]
        return "\n".join(lines)

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"lifecycle-{self.label}.json"
        # Not dataclasses.asdict: it rebuilds a Counter from (key, value) pairs and counts the pairs.
        payload = {name: dict(value) if isinstance(value, Counter) else value for name, value in vars(self).items()
                   if not name.startswith("_")}
        path.write_text(json.dumps(payload, indent=2))
        return path


def kill_endpoint_host(home: Path) -> bool:
    """SIGKILL the endpoint's host process and its workers (as the OOM killer would)."""
    runtime = read_runtime(EndpointPaths(home, ENDPOINT)) or {}
    pid = int(runtime.get("pid") or 0)
    if not pid or not psutil.pid_exists(pid):
        return False
    host = psutil.Process(pid)
    for process in [*host.children(recursive=True), host]:
        with suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)
    return True


class Season:
    def __init__(self, root: Path, label: str, seed: int = 7, trials: int = 2) -> None:
        self.root = root
        self.home = root / "home"
        self.prefect_home = root / "prefect"
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.table = SeasonTable(root / "exports", seed)
        self.trials = trials
        self.report = SeasonReport(label)
        self._promoted_once = False
        self._champion_rows = 0  # rows of the table the serving champion was built from
        self._rows_before = 0

    def _args(self, data: str) -> list[str]:
        return ["--home", str(self.home), "--data", data, "--target", TARGET, "--positive-class", POSITIVE,
                "--trials", str(self.trials), "--concurrency", "2", "--endpoint-name", ENDPOINT, "--model-name", MODEL,
                "--gate", "paired"]

    def _run(self, night: int, name: str, data: str, **kwargs: object) -> RunOutcome:
        self.report.runs += 1
        outcome = run_heartflow(self._args(data), self.prefect_home, self.logs / f"night-{night:02d}-{name}.log",
                                **kwargs)  # type: ignore[arg-type]
        self.report.outcomes[outcome.kind] += 1
        if outcome.kind == "promoted" or (outcome.kind == "killed" and ("kill@promote" in name or "kill@alias" in name)):
            self._promoted_once = True
        if outcome.kind == "promoted":  # the rows the new champion was built from, as the run read them
            valid = re.search(r": (\d+) rows valid;", outcome.log.read_text())
            self._champion_rows = int(valid.group(1)) if valid else len(self.table.rows)
        return outcome

    def _write_tonight(self, night: Night) -> str:
        if night.data == "append":
            self.table.append(60)
        elif night.data == "drift":
            self.table.append(80, cholesterol_shift=70.0)
        writers = {"truncated": self.table.write_truncated, "new-column": self.table.write_with_new_column,
                   "missing-column": self.table.write_with_missing_column}
        if night.fault in writers:
            return str(writers[night.fault]())
        if night.data == "worse":
            return str(self.table.write_worse(seed=self.report.nights))
        return str(self.table.write_good())

    def play_night(self, number: int, night: Night) -> None:
        report = self.report
        report.nights += 1
        fault = night.fault
        path = self._write_tonight(night)
        champion_before = self._promoted_once
        self._rows_before = self._champion_rows  # the serving champion's rows when the night began
        if fault:
            report.faults_injected[fault] += 1
        with ExitStack() as stack:
            if fault == "http500":
                path = stack.enter_context(failing_source())
            if fault == "endpoint-killed" and kill_endpoint_host(self.home):
                report.faults_landed[fault] += 1
            kwargs: dict[str, object] = {}
            if fault and fault.startswith("kill@"):
                point = fault.removeprefix("kill@")
                probes = {"promote": lambda: serving_deployment(EndpointPaths(self.home, ENDPOINT).state),
                          "alias": lambda: champion_alias(self.home / "mlflow.db", MODEL)}
                kwargs = {"kill_at": point, "occurrence": 2 if point in {"gate", *PROBED} and champion_before else 1,
                          "delay_s": 0.3 if point == "gate" else 0.0, "probe": probes.get(point)}
            elif fault == "endpoint-killed@evaluate":
                kwargs = {"kill_at": "evaluate", "action": lambda: kill_endpoint_host(self.home)}
            first = self._run(number, f"{night.data}-{fault or 'clean'}", path, **kwargs)
        if (first.landed and fault != "endpoint-killed") or (fault in DATA_FAULTS and first.kind != "hung"):
            report.faults_landed[str(fault)] += 1  # a bad input lands when the run reads it
        outcomes = [first]
        if first.kind == "killed" and self._promoted_once:
            # The run died; the endpoint lives in its own session and must still answer.
            report.violate(number, "something serves after the kill",
                           check_serves(self.home, ENDPOINT, self.table.sample_records()))
        if first.kind in {"killed", "failed", "hung"} and fault not in DATA_FAULTS:
            outcomes.append(self._run(number, f"{night.data}-retry", str(self.table.write_good())))
        self._judge(number, night, outcomes)
        for invariant, problems in check_home(self.home, self.prefect_home, ENDPOINT, MODEL,
                                              self.table.sample_records()).items():
            report.violate(number, invariant, problems)
        report.nights_log.append(f"night {number}: {night.data}, fault {fault or 'none'}: "
                                 + " then ".join(f"{o.kind} ({o.seconds:.0f} s)" for o in outcomes))

    def _judge(self, number: int, night: Night, outcomes: list[RunOutcome]) -> None:
        """What each run should have ended as. A clean night completes; a bad input is refused in one clear
        line (or read and used); after a kill, the retry completes; the worse night's candidate is rejected."""
        report = self.report
        first, last = outcomes[0], outcomes[-1]
        if night.fault is None and not first.completed:
            report.violate(number, "a night without a fault completes", [f"{first.kind}: {first.error_line or first.log}"])
        elif night.fault in DATA_FAULTS and not first.completed and (first.kind != "refused" or first.tracebacks):
            report.violate(number, "bad input ends in one clear error line",
                           [f"{first.kind}, {first.tracebacks} traceback(s): {first.error_line or first.log}"])
        if len(outcomes) > 1 and not last.completed:
            report.violate(number, "the next run completes after the fault", [f"{last.kind}: {last.error_line or last.log}"])
        for outcome in outcomes:
            if outcome.completed and outcome.tracebacks:
                report.violate(number, "a run that completes prints no traceback",
                               [f"{outcome.kind} with {outcome.tracebacks} traceback(s): {outcome.log}"])
        watched = last if last.kind != "unchanged" else None  # the run that measured the champion on tonight's rows
        if (night.fault is None or night.fault.startswith("kill@")) and night.data in {"append", "drift"} \
                and self._rows_before and watched is not None:
            report.violate(number, "the champion's decay and drift are measured on its unseen rows",
                           self._watch_problems(night, watched))
        if night.data == "worse" and night.fault is None and first.kind != "rejected":
            report.violate(number, "the worse night's candidate is rejected", [f"{first.kind} ({first.log})"])

    def _watch_problems(self, night: Night, outcome: RunOutcome) -> list[str]:
        """What the run's watch said before training: the champion scored on the rows it never trained on (at
        most the table's rows less 80 % of those it was trained from: append-only data), and no column drifted
        on a night that only appended rows like the others."""
        text = outcome.log.read_text()
        rows = len(self.table.rows)
        problems = []
        decay = re.search(r"champion v\d+ on (\d+) new rows through", text)
        if decay is None and "decay not measured: the champion is not serving" in text:
            pass  # a promotion cut short left another version serving: nothing to score the champion through
        elif decay is None:
            problems.append(f"no decay measured ({outcome.log})")
        elif int(decay.group(1)) > rows - 0.8 * self._rows_before:
            problems.append(f"decay measured on {decay.group(1)} 'new' rows of {rows}, though the champion trained on "
                            f"most of the {self._rows_before} rows it was built from ({outcome.log})")
        drift = re.search(r"drift against v\d+'s training data: (.*)", text)
        if night.data == "append" and drift is not None and drift.group(1).strip() != "no column drifted":
            problems.append(f"drift flagged on a night that only appended rows: {drift.group(1).strip()} ({outcome.log})")
        return problems

    def play(self, nights: list[Night]) -> SeasonReport:
        started = time.monotonic()
        for number, night in enumerate(nights, start=1):
            self.play_night(number, night)
            hung = any("hung" in line for line in self.report.nights_log[-1:])
            if hung:  # every later run would wait on the same slot: end the season, the report says why
                self.report.violate(number, "season ended early", ["a run hung; later nights would hang too"])
                break
        self.report.seconds = time.monotonic() - started
        return self.report


def short_season() -> list[Night]:
    """`make test`: the first promotion, the slot-holder killed, a source answering 500, the promotion killed
    half-way (after the alias moved, before the old deployment is removed and history written), and a night
    of worse data."""
    return [Night("first"), Night("append", "kill@deploy"), Night("unchanged", "http500"),
            Night("drift", "kill@alias"), Night("worse")]


def long_season(rounds: int = 2) -> list[Night]:
    """`make soak`: every fault at every boundary (kills at six stage boundaries, the endpoint killed between
    and during nights, four kinds of bad input), ``rounds`` times, the first night itself killed at the gate,
    and after every third fault a night without one, in turn of new rows, no new data, worse data and drift."""
    faults = [*(f"kill@{point}" for point in KILL_POINTS), "endpoint-killed", "http500", "truncated",
              "new-column", "endpoint-killed@evaluate", "missing-column"]
    clean = ["append", "unchanged", "worse", "drift"]
    plan = [Night("first", "kill@gate")]
    for r in range(rounds):
        for i, fault in enumerate(faults):
            plan.append(Night("drift" if (i + r) % 3 == 0 else "append", fault))
            if i % 3 == 2:
                plan.append(Night(clean[(len(plan) // 4) % len(clean)]))
    return plan
