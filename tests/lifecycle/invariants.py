"""What must hold on a local home after every night, checked by code. Each check returns the violations it
found as sentences (empty: it holds)."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path

import psutil
import requests

from backends.domain.convergence import ABANDONED, inconsistencies
from backends.domain.rollout_holder import slot_name
from backends.local import tracking
from backends.local.backend import LocalBackend
from backends.local.endpoint.state import EndpointPaths, read_runtime
from backends.results import HistoryEntry

DECISIONS = ("promoted", "rejected", ABANDONED)  # abandoned: a crashed run's candidate the next run removed
STATUS_TAG = "heartflow.status"


def held_slot(prefect_home: Path, endpoint: str) -> str | None:
    """Who holds the endpoint's rollout slot, read from the database of the season's PREFECT_HOME (the
    temporary server of every run keeps it there): the slot's Prefect Variable (``tasks.rollout``), or the
    global concurrency limit used before it. None when nobody does."""
    database = prefect_home / "prefect.db"
    if not database.exists():
        return None
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "variable" in tables:
            row = connection.execute("SELECT value FROM variable WHERE name = ?", (slot_name("local", endpoint),)).fetchone()
            if row:
                return f"variable {slot_name('local', endpoint)} = {row[0]}"
        if "concurrency_limit_v2" in tables:
            row = connection.execute("SELECT active_slots FROM concurrency_limit_v2 WHERE name = ?",
                                     (f"heartflow-deploy-local-{endpoint}",)).fetchone()
            if row and int(row[0]):
                return f"heartflow-deploy-local-{endpoint} has {row[0]} active slot(s)"
    return None


def _versions(home: Path, model: str) -> dict[str, dict[str, str]]:
    client = tracking.make_client(home)
    return {str(v.version): dict(v.tags or {}) for v in client.search_model_versions(f"name = '{model}'")}


def _champion_version(home: Path, model: str) -> str | None:
    champion = LocalBackend(home).champion(model)
    return None if champion is None else str(champion.version)


def serving_state(home: Path, endpoint: str) -> tuple[dict[str, str], dict[str, int], bool]:
    """(deployment -> model version, traffic, host alive) as the endpoint's files and process say."""
    paths = EndpointPaths(home, endpoint)
    try:
        state = json.loads(paths.state.read_text())
    except FileNotFoundError:
        return {}, {}, False
    deployments = {name: str(d["model_version"]) for name, d in state.get("deployments", {}).items()}
    runtime = read_runtime(paths) or {}
    alive = bool(runtime.get("pid")) and psutil.pid_exists(int(runtime["pid"]))
    return deployments, {k: int(v) for k, v in state.get("traffic", {}).items()}, alive


def check_serves(home: Path, endpoint: str, records: list[dict[str, object]]) -> list[str]:
    """The champion answers: the endpoint is up and scores rows a client sends."""
    served = LocalBackend(home).endpoint(endpoint)
    if served is None:
        return [f"nothing serves on {endpoint} although a champion exists"]
    key = (home / "endpoints" / endpoint / "key").read_text().strip()
    try:
        answer = requests.post(served.scoring_uri, json={"data": records},
                               headers={"Authorization": f"Bearer {key}"}, timeout=30)
    except requests.RequestException as exc:
        return [f"{endpoint} does not answer: {exc}"]
    body = answer.json() if answer.status_code == 200 else None
    predictions = body.get("predictions") if isinstance(body, dict) else body
    if not isinstance(predictions, list) or len(predictions) != len(records):
        return [f"{endpoint} answered {answer.status_code}: {answer.text[:200]}"]
    return []


def check_alias_agrees(home: Path, endpoint: str, model: str) -> list[str]:
    champion = _champion_version(home, model)
    deployments, traffic, _ = serving_state(home, endpoint)
    live = {name: share for name, share in traffic.items() if share > 0}
    if champion is None:
        return [] if not live else [f"{endpoint} serves {live} but {model} has no champion alias"]
    if list(live.values()) != [100]:
        return [f"champion v{champion}: traffic of {endpoint} is {traffic}, not one deployment at 100 %"]
    (deployment,) = live
    if deployments.get(deployment) != champion:
        return [f"alias says champion v{champion}, {endpoint}/{deployment} serves v{deployments.get(deployment)}"]
    return []


def decision_problems(entries: list[HistoryEntry], statuses: dict[str, str]) -> list[str]:
    """History against the registry (``statuses``: version -> its status tag). Every version has a decision
    on record (promoted, rejected, or abandoned by the run after a crash); a version is promoted at most once
    and never both promoted and rejected; no run records one decision twice. A rejected version that a later run gates again (its data came back) has one record
    per run that gated it."""
    decisions = [e for e in entries if e.event in DECISIONS]
    problems = []
    by_version: dict[str, list[HistoryEntry]] = {}
    for entry in decisions:
        by_version.setdefault(entry.model_version, []).append(entry)
    for version, records in sorted(by_version.items(), key=lambda kv: int(kv[0])):
        events = Counter(e.event for e in records)
        runs = Counter(e.triggered_by for e in records)
        if events["promoted"] > 1 or (events["promoted"] and (events["rejected"] or events[ABANDONED])):
            problems.append(f"v{version} has {dict(events)} in history")
        problems += [f"v{version}: {by} recorded its decision {n} times" for by, n in runs.items() if n > 1]
    for version, status in sorted(statuses.items(), key=lambda kv: int(kv[0])):
        records = by_version.get(version)
        if not records:
            problems.append(f"v{version} (status {status or 'none'}) has no decision in history: neither promoted "
                            "nor rejected")
        elif (records[-1].event in {"rejected", ABANDONED}) != (status == "rejected"):
            problems.append(f"v{version}: history says {records[-1].event}, its status tag says {status or 'none'}")
    return problems


def check_history(home: Path, endpoint: str, model: str) -> list[str]:
    entries = [e for e in LocalBackend(home).history(endpoint) if e.model_name == model]
    return decision_problems(entries, {v: tags.get(STATUS_TAG, "") for v, tags in _versions(home, model).items()})


def check_no_orphan(home: Path, endpoint: str) -> list[str]:
    """No deployment without traffic, and no endpoint host process but the recorded one (and its workers)."""
    deployments, traffic, _ = serving_state(home, endpoint)
    idle = sorted(name for name in deployments if traffic.get(name, 0) == 0)
    problems = [f"deployment {name} of {endpoint} (v{deployments[name]}) has no traffic" for name in idle]
    paths = EndpointPaths(home, endpoint)
    runtime = read_runtime(paths) or {}
    recorded = int(runtime.get("pid") or 0)
    family = {recorded}
    if recorded and psutil.pid_exists(recorded):
        family |= {child.pid for child in psutil.Process(recorded).children(recursive=True)}
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = process.info.get("cmdline") or []
        if str(paths.root) in cmdline and process.info["pid"] not in family:
            problems.append(f"an endpoint host of {endpoint} runs without being recorded (pid {process.info['pid']})")
    return problems


def check_no_held_slot(prefect_home: Path, endpoint: str) -> list[str]:
    held = held_slot(prefect_home, endpoint)
    return [f"the rollout slot is held with no run holding it: {held}"] if held else []


def check_home(home: Path, prefect_home: Path, endpoint: str, model: str,
               records: list[dict[str, object]]) -> dict[str, list[str]]:
    """Every invariant of a home at rest (between nights), by name."""
    results = {
        "alias agrees with what serves": check_alias_agrees(home, endpoint, model),
        "one history record per decision": check_history(home, endpoint, model),
        "no orphan deployment": check_no_orphan(home, endpoint),
        "no held rollout slot": check_no_held_slot(prefect_home, endpoint),
        # What `heartflow status` names as not agreeing (flows/cli_status.py), read the same way.
        "status names no inconsistency": list(inconsistencies(LocalBackend(home).rollout_policy(), endpoint, model)),
    }
    if _champion_version(home, model) is not None:
        results["something serves"] = check_serves(home, endpoint, records)
    return results
