"""In-memory endpoints under the shared rollout policy: each endpoint holds deployments (a registered
model each) and a traffic split; a request goes to the deployment it names, else by the split. The
primitives keep the promises the policy relies on: a new deployment answers a smoke request before it
exists, never takes traffic while another serves, and a failed one leaves the endpoint as it was."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from backends.client.batching import BatchAnswer, BatchPredictor
from backends.domain.rollout import RolloutPolicy, serving
from backends.domain.spec import DeploySpec
from backends.errors import DeploymentError, EvaluationError
from backends.memory.faults import Faults
from backends.memory.live import MemoryLiveTraffic, Scorer
from backends.memory.registry import MemoryRegistry
from backends.results import Endpoint, HistoryEntry, ModelVersion

# Errors a fitted scikit-learn pipeline raises on rows it cannot score (what a real host answers 4xx/5xx for).
SCORING_ERRORS = (ValueError, TypeError, KeyError, AttributeError, IndexError)


@dataclass
class MemoryEndpoint:
    key: str
    deployments: dict[str, ModelVersion] = field(default_factory=dict)
    traffic: dict[str, int] = field(default_factory=dict)


class MemoryEndpoints(RolloutPolicy):
    registry: MemoryRegistry

    def __init__(self, registry: MemoryRegistry, faults: Faults) -> None:
        super().__init__(registry)
        self._faults = faults
        self._endpoints: dict[str, MemoryEndpoint] = {}
        self._history: list[HistoryEntry] = []
        self.live = MemoryLiveTraffic()

    # ---- endpoint primitives ------------------------------------------------------------------------
    def read_traffic(self, endpoint_name: str) -> dict[str, int]:
        endpoint = self._endpoints.get(endpoint_name)
        if endpoint is None:
            return {}
        return {name: endpoint.traffic.get(name, 0) for name in endpoint.deployments}

    def put_deployment(self, endpoint_name: str, deployment: str, model: ModelVersion, spec: DeploySpec) -> None:
        self._faults.check("deploy")
        trained = self.registry.trained(model)
        try:  # the smoke request: the model answers one row of its own training features
            answer = trained.predict(trained.example)
        except SCORING_ERRORS as exc:
            raise DeploymentError(
                f"deployment {deployment} of {endpoint_name} did not pass its smoke request: {type(exc).__name__}: {exc}"
            ) from exc
        if len(answer) != len(trained.example):
            raise DeploymentError(f"deployment {deployment} of {endpoint_name} answered {len(answer)} labels for 1 row")
        endpoint = self._endpoints.setdefault(endpoint_name, MemoryEndpoint(key=secrets.token_urlsafe(24)))
        endpoint.deployments[deployment] = model
        others = serving({k: v for k, v in endpoint.traffic.items() if k != deployment})
        endpoint.traffic[deployment] = 0 if others else endpoint.traffic.get(deployment, 0)

    def set_traffic(self, endpoint_name: str, traffic: Mapping[str, int]) -> None:
        self._faults.check("set_traffic")
        endpoint = self._endpoints.get(endpoint_name)
        if endpoint is None:
            raise DeploymentError(f"endpoint {endpoint_name} does not exist: deploy first")
        unknown = sorted(set(traffic) - set(endpoint.deployments))
        total = sum(int(v) for v in traffic.values())
        if unknown or total not in (0, 100) or any(int(v) < 0 for v in traffic.values()):
            raise DeploymentError(
                f"traffic {dict(traffic)} for {endpoint_name} is not a split of its deployments "
                f"{sorted(endpoint.deployments)} summing to 0 or 100"
            )
        endpoint.traffic = {name: int(traffic.get(name, 0)) for name in endpoint.deployments}

    def delete_deployment(self, endpoint_name: str, deployment: str) -> None:
        endpoint = self._endpoints.get(endpoint_name)
        if endpoint is None or deployment not in endpoint.deployments:
            return
        if endpoint.traffic.get(deployment, 0) > 0:
            raise DeploymentError(f"deployment {deployment} of {endpoint_name} still has traffic; move it first")
        del endpoint.deployments[deployment]
        endpoint.traffic.pop(deployment, None)

    def describe(self, endpoint_name: str, deployment: str, model: ModelVersion) -> Endpoint:
        endpoint = self._endpoints.get(endpoint_name)
        if endpoint is None or deployment not in endpoint.deployments:
            raise DeploymentError(f"endpoint {endpoint_name} has no deployment {deployment}")
        served = endpoint.deployments[deployment]
        return Endpoint(
            name=endpoint_name, deployment=deployment, scoring_uri=f"memory://{endpoint_name}/score",
            model_name=served.name, model_version=served.version, key_hint="InMemoryBackend.endpoint_key",
            traffic=self.read_traffic(endpoint_name),
        )

    def append_history(self, entry: HistoryEntry) -> None:
        self._history.append(entry)

    def read_history(self, endpoint_name: str) -> tuple[HistoryEntry, ...]:
        return self.history(endpoint_name)

    def deployed_versions(self, endpoint_name: str) -> dict[str, tuple[str, str]]:
        endpoint = self._endpoints.get(endpoint_name)
        if endpoint is None:
            return {}
        return {name: (model.name, model.version) for name, model in endpoint.deployments.items()}

    # ---- what the backend reads -------------------------------------------------------------------------
    def history(self, endpoint_name: str) -> tuple[HistoryEntry, ...]:
        return tuple(e for e in self._history if e.endpoint == endpoint_name)

    def serving(self, endpoint_name: str) -> Endpoint | None:
        live = serving(self.read_traffic(endpoint_name))
        if not live:
            return None
        top = max(live.items(), key=lambda kv: kv[1])[0]
        endpoint = self._endpoints[endpoint_name]
        return self.describe(endpoint_name, top, endpoint.deployments[top])

    def key(self, endpoint_name: str) -> str:
        endpoint = self._endpoints.get(endpoint_name)
        if endpoint is None:
            raise DeploymentError(f"endpoint {endpoint_name} does not exist: nothing to call")
        return endpoint.key

    def remove(self, endpoint_name: str) -> None:
        self._endpoints.pop(endpoint_name, None)

    def predict(self, endpoint_name: str, deployment: str | None, key: str, frame: pd.DataFrame) -> list[int]:
        """A request: checked like the hosts check it (key, deployment), answered by the model it reaches."""
        return self.answer(endpoint_name, deployment, key, frame)[0]

    def answer(self, endpoint_name: str, deployment: str | None, key: str,
               frame: pd.DataFrame, request_id: str | None = None) -> tuple[list[int], list[float]]:
        """``predict``'s labels (at the model's stored threshold, as src/scoring.py labels) and the positive
        class's probabilities. A live request (no deployment named) is kept under ``request_id`` (as a host's
        ``x-request-id``), for labels given later."""
        endpoint = self._endpoints.get(endpoint_name)
        if endpoint is None:
            raise EvaluationError(f"endpoint {endpoint_name} does not exist: nothing answered")
        if not secrets.compare_digest(key, endpoint.key):
            raise EvaluationError(f"endpoint {endpoint_name} answered 401: wrong key")
        if deployment is None:
            live = serving(endpoint.traffic)
            if not live:
                raise EvaluationError(f"endpoint {endpoint_name} has no traffic: nothing answered")
            deployment = max(live.items(), key=lambda kv: kv[1])[0]
            started = time.perf_counter()
            try:
                answer = self._score(endpoint, endpoint_name, deployment, frame)
            except EvaluationError:  # a live request that failed: the watch counts it, the client sees it
                self.live.record(endpoint_name, deployment, self._scorer(endpoint, endpoint_name), frame, None,
                                 (time.perf_counter() - started) * 1000, request_id)
                raise
            self.live.record(endpoint_name, deployment, self._scorer(endpoint, endpoint_name), frame,
                             [str(v) for v in answer[0]], (time.perf_counter() - started) * 1000, request_id, answer[1])
            return answer
        return self._score(endpoint, endpoint_name, deployment, frame)

    def _scorer(self, endpoint: MemoryEndpoint, endpoint_name: str) -> Scorer:
        return lambda deployment, frame: [str(v) for v in self._score(endpoint, endpoint_name, deployment, frame)[0]]

    def _score(self, endpoint: MemoryEndpoint, endpoint_name: str, deployment: str,
               frame: pd.DataFrame) -> tuple[list[int], list[float]]:
        model = endpoint.deployments.get(deployment)
        if model is None:
            raise EvaluationError(f"endpoint {endpoint_name} has no deployment {deployment}")
        try:
            labels, proba = self.registry.trained(model).answer(frame)
        except SCORING_ERRORS as exc:
            raise EvaluationError(f"deployment {deployment} of {endpoint_name} failed: {type(exc).__name__}: {exc}") from exc
        return [int(v) for v in labels], [float(v) for v in proba]


class MemoryPredictor(BatchPredictor):
    """``backends.client.evaluation.Predictor`` for an in-memory deployment: batches of ``batch_size`` rows
    answered by the deployed model in this process (key and routing checked as a host checks them)."""

    def __init__(self, endpoints: MemoryEndpoints, faults: Faults, endpoint: Endpoint, key: str,
                 deployment: str | None, batch_size: int) -> None:
        super().__init__(self._answer, deployment=deployment or endpoint.deployment, batch_size=batch_size)
        self._endpoints, self._faults, self._endpoint, self._key = endpoints, faults, endpoint, key

    def __call__(self, frame: pd.DataFrame) -> list[int]:
        self._faults.check("evaluate")
        return super().__call__(frame)

    def _answer(self, rows: pd.DataFrame, number: int) -> BatchAnswer:
        labels, scores = self._endpoints.answer(self._endpoint.name, self.deployment, self._key, rows)
        return BatchAnswer(list(labels), list(scores))
