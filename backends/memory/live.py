"""The shadow's and the watch's primitives in memory (``backends.domain.shadow.LiveTraffic``): a mirror scores
each live request a second time with the candidate and keeps both answers by request id; a watch records the
new champion's answers (errors included) while the previous deployment stays warm. Every live answer is kept
(the last ``KEEP_ANSWERS``) with its request id, and labels given by ``add_feedback`` join them
(``backends.domain.realized.LabelledAnswers``): labels are the model's answers' classes, "0" and "1"."""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import pandas as pd

from backends.domain.realized import LabelledAnswer
from backends.domain.shadow import ServedAnswer, WatchSample
from backends.errors import DeploymentError, EvaluationError
from backends.results import Endpoint


@dataclass
class Session:
    kind: str  # "mirror" | "watch"
    deployment: str
    session: str
    percent: int = 100
    answers: list[ServedAnswer] = field(default_factory=list)


KEEP_ANSWERS = 100_000
POSITIVE = "1"  # the in-memory models answer 0 and 1


@dataclass(frozen=True)
class Answered:
    """One live request a deployment answered."""

    endpoint: str
    deployment: str
    request_id: str
    at: datetime
    predictions: tuple[str, ...]
    scores: tuple[float, ...]


class MemoryLiveTraffic:
    def __init__(self) -> None:
        self._live: dict[tuple[str, str], Session] = {}  # (endpoint, kind) -> the running session
        self._done: dict[str, Session] = {}  # session id -> session, also after it stopped
        self._count = 0
        self._answered: deque[Answered] = deque(maxlen=KEEP_ANSWERS)
        self._labels: dict[str, str] = {}  # request id (``<id>/<row>`` for a row of a batch) -> label

    def _start(self, endpoint: Endpoint, kind: str, deployment: str, percent: int = 100) -> str:
        session = Session(kind, deployment, uuid.uuid4().hex[:12], percent)
        self._live[(endpoint.name, kind)] = self._done[session.session] = session
        return session.session

    def start_mirror(self, endpoint: Endpoint, candidate: str, percent: int) -> str:
        if not 1 <= percent <= 100:
            raise DeploymentError(f"mirror percent must be 1-100, got {percent}")
        if endpoint.traffic.get(candidate, 0) > 0:
            raise DeploymentError(f"{candidate} takes live traffic on {endpoint.name}: a mirror goes to a deployment "
                                  "with none")
        return self._start(endpoint, "mirror", candidate, percent)

    def stop_mirror(self, endpoint: Endpoint) -> None:
        self._live.pop((endpoint.name, "mirror"), None)

    def mirrored_answers(self, endpoint: Endpoint, session: str) -> tuple[tuple[ServedAnswer, ...], int]:
        found = self._done.get(session)
        return (tuple(found.answers) if found else ()), 0

    def start_watch(self, endpoint: Endpoint, champion: str, previous: str) -> str:
        return self._start(endpoint, "watch", champion)

    def watch_sample(self, endpoint: Endpoint, session: str) -> WatchSample:
        found = self._done.get(session)
        answers = found.answers if found else []
        return WatchSample(requests=len(answers), errors=sum(a.status >= 500 for a in answers),
                           latencies_ms=tuple(a.ms for a in answers))

    def stop_watch(self, endpoint: Endpoint) -> None:
        self._live.pop((endpoint.name, "watch"), None)

    def mirroring(self, endpoint_name: str) -> dict[str, int]:
        """The running mirror: {deployment: percent} ({} when none)."""
        found = self._live.get((endpoint_name, "mirror"))
        return {found.deployment: found.percent} if found else {}

    def add_feedback(self, pairs: Iterable[tuple[str, object]]) -> int:
        """Labels by request id (a later label replaces an earlier one); how many were stored."""
        stored = 0
        for request_id, label in pairs:
            self._labels[str(request_id)] = str(label)
            stored += 1
        return stored

    def labelled_answers(self, endpoint: Endpoint, deployment: str, since: datetime) -> tuple[LabelledAnswer, ...]:
        out: list[LabelledAnswer] = []
        for answer in self._answered:
            if answer.endpoint != endpoint.name or answer.deployment != deployment or answer.at < since:
                continue
            single = len(answer.predictions) == 1
            for i, prediction in enumerate(answer.predictions):
                key = answer.request_id if single else f"{answer.request_id}/{i}"
                label = self._labels.get(key)
                if label is not None:
                    score = answer.scores[i] if i < len(answer.scores) else None
                    out.append(LabelledAnswer(key, prediction, label, POSITIVE, score))
        return tuple(out)

    def record(self, endpoint_name: str, served: str, score: Scorer, frame: pd.DataFrame,
               labels: list[str] | None, ms: float, request_id: str | None = None,
               scores: list[float] | None = None) -> str:
        """After a live request answered by ``served``: kept with its request id (made up when the caller gave
        none, and returned); the watch keeps the answer, a mirror scores the copy."""
        self._count += 1
        request_id = request_id or f"memory-{self._count}"
        if labels is not None:
            self._answered.append(Answered(endpoint_name, served, request_id, datetime.now(UTC), tuple(labels),
                                           tuple(scores or ())))
        watch = self._live.get((endpoint_name, "watch"))
        if watch is not None and watch.deployment == served:
            watch.answers.append(ServedAnswer(request_id, "champion", 500 if labels is None else 200, ms,
                                              tuple(labels or ())))
        mirror = self._live.get((endpoint_name, "mirror"))
        if mirror is None or labels is None or mirror.deployment == served:
            return request_id
        mirror.answers.append(ServedAnswer(request_id, "champion", 200, ms, tuple(labels)))
        started = time.perf_counter()
        try:
            copy: tuple[str, ...] = tuple(score(mirror.deployment, frame))
            status = 200
        except EvaluationError:
            copy, status = (), 500
        mirror.answers.append(ServedAnswer(request_id, "candidate", status, (time.perf_counter() - started) * 1000,
                                           copy))
        return request_id


class Scorer(Protocol):
    """Scores ``frame`` with one deployment; EvaluationError when it fails."""

    def __call__(self, deployment: str, frame: pd.DataFrame) -> list[str]: ...
