"""The shadow's and the watch's primitives on the local host (``backends.domain.shadow.LiveTraffic``).

Starting a mirror or a watch writes it into state.json (every worker follows that file); the workers
record into ``<endpoint>/live/<session>/`` (``backends.local.endpoint.live``), and this module reads it back.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
import uuid
from pathlib import Path

from backends.domain.shadow import ServedAnswer, WatchSample
from backends.errors import DeploymentError
from backends.local.endpoint.state import EndpointPaths, LiveConfig, locked, read_state, write_state
from backends.results import Endpoint

logger = logging.getLogger(__name__)

FINISH_S = 60.0  # the longest wait for the mirror processes of a session to write their last answers
KEEP_SESSIONS = 10  # recorded sessions kept per endpoint; older ones are removed when a new one starts


class LocalLiveTraffic:
    def __init__(self, home: Path) -> None:
        self.home = home

    def _paths(self, endpoint: Endpoint) -> EndpointPaths:
        return EndpointPaths(self.home, endpoint.name)

    def _set(self, endpoint: Endpoint, kind: str, config: LiveConfig | None) -> None:
        paths = self._paths(endpoint)
        with locked(paths):
            state = read_state(paths)
            if state is None:
                if config is None:
                    return
                raise DeploymentError(f"endpoint {endpoint.name} does not exist under {self.home}: deploy first")
            if config is not None:
                wanted = {config.deployment, config.fallback} - {""}
                missing = sorted(wanted - set(state.deployments))
                if missing:
                    raise DeploymentError(f"endpoint {endpoint.name} has no deployment {', '.join(missing)} to {kind}")
            changed = dataclasses.replace(state, mirror=config) if kind == "mirror" else dataclasses.replace(state, watch=config)
            write_state(paths, changed)

    def _session(self, endpoint: Endpoint) -> str:
        paths = self._paths(endpoint)
        root = paths.root / "live"
        if root.is_dir():
            for old in sorted(root.iterdir(), key=lambda p: p.stat().st_mtime)[:-KEEP_SESSIONS]:
                shutil.rmtree(old, ignore_errors=True)
        session = uuid.uuid4().hex[:12]
        paths.live(session).mkdir(parents=True, exist_ok=True)
        return session

    # ---- shadow ---------------------------------------------------------------------------------------
    def start_mirror(self, endpoint: Endpoint, candidate: str, percent: int) -> str:
        if not 1 <= percent <= 100:
            raise DeploymentError(f"mirror percent must be 1-100, got {percent}")
        state = read_state(self._paths(endpoint))
        if state is not None and state.traffic.get(candidate, 0) > 0:
            raise DeploymentError(f"{candidate} takes live traffic on {endpoint.name}: a mirror goes to a deployment "
                                  "with none (as on Azure)")
        session = self._session(endpoint)
        self._set(endpoint, "mirror", LiveConfig("mirror", candidate, session, percent=percent))
        logger.info("endpoint %s: mirroring %d %% of live requests to %s (session %s)", endpoint.name, percent,
                    candidate, session)
        return session

    def stop_mirror(self, endpoint: Endpoint) -> None:
        self._set(endpoint, "mirror", None)

    def mirrored_answers(self, endpoint: Endpoint, session: str) -> tuple[tuple[ServedAnswer, ...], int]:
        """Both sides' answers, once every mirror process of the session has written its last (each notices
        the end of the session within a fifth of a second and scores what it was sent), or after FINISH_S."""
        folder = self._paths(endpoint).live(session)
        deadline = time.monotonic() + FINISH_S
        while time.monotonic() < deadline and self._session_ended(endpoint, session):
            if {p.stem for p in folder.glob("*.started")} <= {p.stem for p in folder.glob("*.done")}:
                break
            time.sleep(0.1)
        answers: list[ServedAnswer] = []
        dropped = 0
        for file in sorted(folder.glob("*.jsonl")):
            for line in file.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:  # a line cut by a worker killed mid-write
                    continue
                if record.get("side") == "dropped":
                    dropped += int(record.get("n", 0))
                elif "id" in record:
                    answers.append(ServedAnswer(request_id=str(record["id"]), side=str(record["side"]),
                                                status=int(record["status"]), ms=float(record["ms"]),
                                                predictions=tuple(record.get("predictions") or ())))
        return tuple(answers), dropped

    def _session_ended(self, endpoint: Endpoint, session: str) -> bool:
        """True once this session's mirror is off (read while it runs, the answers are those written so far)."""
        state = read_state(self._paths(endpoint))
        return state is None or state.mirror is None or state.mirror.session != session

    # ---- watch ----------------------------------------------------------------------------------------
    def start_watch(self, endpoint: Endpoint, champion: str, previous: str) -> str:
        session = self._session(endpoint)
        self._set(endpoint, "watch", LiveConfig("watch", champion, session, fallback=previous))
        logger.info("endpoint %s: watching %s, %s kept warm (session %s)", endpoint.name, champion, previous, session)
        return session

    def watch_sample(self, endpoint: Endpoint, session: str) -> WatchSample:
        requests = errors = fallbacks = 0
        latencies: list[float] = []
        for file in self._paths(endpoint).live(session).glob("watch-*.txt"):
            for line in file.read_text(encoding="utf-8").splitlines():
                parts = line.split()
                if len(parts) != 3:
                    continue
                requests += 1
                errors += int(parts[0]) >= 500
                fallbacks += int(parts[2])
                latencies.append(float(parts[1]))
        return WatchSample(requests, errors, tuple(latencies), fallbacks)

    def stop_watch(self, endpoint: Endpoint) -> None:
        self._set(endpoint, "watch", None)
