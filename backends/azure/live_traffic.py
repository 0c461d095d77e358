"""The shadow's and the watch's primitives on an Azure ML managed online endpoint
(``backends.domain.shadow.LiveTraffic``), mixed into ``AzureBackend``.

- **mirror**: the endpoint's ``mirror_traffic`` sends a copy of a share of live requests to one deployment (at
  most 50 %, to a deployment with no live traffic). Requests that name a deployment with the
  ``azureml-model-deployment`` header are never mirrored: heartflow's own holdout evaluation names its
  deployment, so it neither feeds nor disturbs the shadow, and a client that pins a deployment is not in it.
  Azure keeps the mirrored deployment's answers to itself (the client gets the champion's); both deployments'
  data collectors write them to blob storage (src/score.py puts each request's id, status and in-process
  latency in ``model_outputs``), and ``mirrored_answers`` reads both sides over the mirror window
  (``backends.azure.collected``) and joins them by request id: the gateway gives the copy the request's
  x-request-id. The latencies are the scoring containers' own (run()'s time), not the gateway's.
- **watch**: the previous deployment stays at 0 % for the window (warm: ``heartflow rollback`` or the watch's
  rollback is a traffic change). ``watch_sample`` reads the new champion's collected answers since the watch
  began: its live requests, server errors (a failure score.py collected before re-raising it) and latencies.
  Azure has no fallback for a failed request: a client sees the errors that lead to the rollback. Failures
  the scoring container never sees (the gateway's timeouts, a container that died) are not in the records.

The collector writes with a delay, so a read waits for the record to settle (``COLLECTOR_POLL_S``), and the
watch reads storage at most every ``WATCH_READ_S`` seconds.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from backends.azure.collected import EVAL_PREFIX, open_collected
from backends.domain.shadow import ServedAnswer, WatchSample
from backends.errors import DeploymentError
from backends.results import Endpoint

logger = logging.getLogger(__name__)

MAX_MIRROR_PERCENT = 50  # Azure ML's limit on an endpoint's mirror traffic
COLLECTOR_POLL_S = 15.0  # between two reads of the collected answers, until two agree
COLLECTOR_SETTLE_S = 300.0  # the longest wait for the collector to write a window's last answers
WATCH_READ_S = 15.0  # the watch polls every second; storage is read at most this often


def _session(deployment: str, started: float) -> str:
    """A session id that says what it watches and since when (deployment names hold no dot)."""
    return f"{int(started)}.{deployment}.{uuid.uuid4().hex[:8]}"


def _parse_session(session: str) -> tuple[datetime, str]:
    started, deployment, _ = session.split(".", 2)
    return datetime.fromtimestamp(int(started) - 1, UTC), deployment


class AzureLiveTraffic:
    """Mixed into AzureBackend: ``self.endpoints`` is its AzureEndpoints."""

    endpoints: Any
    _watch_read: tuple[str, float, WatchSample] | None = None

    def now(self) -> float:  # AzureBackend's injectable clock and pause win over these
        return time.monotonic()

    def pause(self, seconds: float) -> None:
        time.sleep(seconds)

    def start_mirror(self, endpoint: Endpoint, candidate: str, percent: int) -> str:
        if not 1 <= percent <= 100:
            raise DeploymentError(f"mirror percent must be 1-100, got {percent}")
        share = min(percent, MAX_MIRROR_PERCENT)
        read = self.endpoints.get_endpoint(endpoint.name)
        if read is None:
            raise DeploymentError(f"endpoint {endpoint.name} does not exist any more; deploy again")
        if int((read.traffic or {}).get(candidate, 0)) > 0:
            raise DeploymentError(f"{candidate} takes live traffic on {endpoint.name}: Azure mirrors only to a "
                                  "deployment with none")
        read.mirror_traffic = {candidate: share}
        self.endpoints._write_endpoint(read, f"mirroring {share} % of live traffic to {candidate}")
        logger.info("endpoint %s: %d %% of live requests mirrored to %s", endpoint.name, share, candidate)
        return _session(candidate, datetime.now(UTC).timestamp())

    def stop_mirror(self, endpoint: Endpoint) -> None:
        read = self.endpoints.get_endpoint(endpoint.name)
        if read is None or not getattr(read, "mirror_traffic", None):
            return
        read.mirror_traffic = {}
        self.endpoints._write_endpoint(read, "stopping the mirror traffic")

    def mirrored_answers(self, endpoint: Endpoint, session: str) -> tuple[tuple[ServedAnswer, ...], int]:
        """Both sides' collected answers to the requests mirrored since ``session`` began, once the collector's
        record stops growing (or after COLLECTOR_SETTLE_S). Azure does not count dropped copies: 0."""
        since, candidate = _parse_session(session)
        read = self.endpoints.get_endpoint(endpoint.name)
        traffic = {str(k): int(v) for k, v in ((read.traffic if read is not None else None) or endpoint.traffic or {}).items()}
        champions = [d for d, share in traffic.items() if share > 0 and d != candidate]
        answers = self._settled(lambda: self._mirrored(endpoint.name, candidate, champions, since))
        return answers, 0

    def _mirrored(self, endpoint_name: str, candidate: str, champions: list[str], since: datetime) -> tuple[ServedAnswer, ...]:
        store = open_collected(self)
        until = datetime.now(UTC)
        copies = [r for r in store.records(endpoint_name, candidate, since, until, with_inputs=False)
                  if not str(r["request_id"]).startswith(EVAL_PREFIX)]
        ids = [str(r["request_id"]) for r in copies]
        answers = [_answer(r, "candidate") for r in copies]
        for champion in champions if ids else ():
            answers += [_answer(r, "champion") for r in store.records(endpoint_name, champion, since, until,
                                                                       with_inputs=False, only=ids)]
        return tuple(answers)

    def _settled(self, read: Any) -> tuple[ServedAnswer, ...]:
        """``read()`` again every COLLECTOR_POLL_S until two reads agree (the collector writes with a delay)."""
        answers = read()
        deadline = self.now() + COLLECTOR_SETTLE_S
        while self.now() < deadline:
            self.pause(COLLECTOR_POLL_S)
            again = read()
            if len(again) == len(answers):
                return again
            answers = again
        return answers

    def start_watch(self, endpoint: Endpoint, champion: str, previous: str) -> str:
        return _session(champion, datetime.now(UTC).timestamp())  # the policy keeps ``previous`` at 0 %

    def watch_sample(self, endpoint: Endpoint, session: str) -> WatchSample:
        """The new champion's collected live answers since the watch began (read at most every WATCH_READ_S)."""
        last = self._watch_read
        if last is not None and last[0] == session and self.now() - last[1] < WATCH_READ_S:
            return last[2]
        since, champion = _parse_session(session)
        records = [r for r in open_collected(self).records(endpoint.name, champion, since, datetime.now(UTC), with_inputs=False)
                   if not str(r["request_id"]).startswith(EVAL_PREFIX)]
        sample = WatchSample(len(records), sum(1 for r in records if int(r["status"]) >= 500),
                             tuple(float(r["latency_ms"]) for r in records))
        self._watch_read = (session, self.now(), sample)
        return sample

    def stop_watch(self, endpoint: Endpoint) -> None:
        self._watch_read = None


def _answer(record: dict[str, Any], side: str) -> ServedAnswer:
    return ServedAnswer(request_id=str(record["request_id"]), side=side, status=int(record["status"]),
                        ms=float(record["latency_ms"]), predictions=tuple(str(p) for p in record.get("predictions") or ()))
