"""Evaluation through the live endpoint: the holdout goes over HTTP exactly as a client's request would.

Shared by both backends: the local host and an Azure managed endpoint take the same body, the same
key header and the same `azureml-model-deployment` routing header.
"""

from __future__ import annotations

import json
import logging
import statistics
import uuid
from typing import Any, Protocol

import numpy as np
import pandas as pd
import requests
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from backends.client.batching import BatchAnswer, BatchPredictor
from backends.results import EvalReport, Endpoint
from backends.domain.split import ROW_KEY
from backends.errors import EvaluationError

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0
TRANSIENT_STATUS = {429, 502, 503, 504}


class _TransientHTTPError(Exception):
    pass


def records_of(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts of plain Python values (numpy scalars are not JSON; a missing cell is null)."""
    return [
        {str(k): None if _is_nan(v) else (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
        for row in frame.to_dict("records")
    ]


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and value != value


def call_endpoint(
    session: requests.Session, endpoint: Endpoint, key: str, records: list[dict[str, Any]],
    *, deployment: str | None = None, extra: dict[str, Any] | None = None, request_id: str | None = None,
) -> Any:
    """POST one batch and return the decoded JSON answer; retries throttling and gateway errors.
    ``request_id`` goes as ``x-request-id``, so captured evaluation traffic is told from live traffic."""
    headers = {
        "Authorization": f"Bearer {key}",
        "Content-Type": "application/json",
        "azureml-model-deployment": deployment or endpoint.deployment,
    }
    if request_id:
        headers["x-request-id"] = request_id
    body = json.dumps({"data": records, **(extra or {})})
    for attempt in Retrying(
        retry=retry_if_exception_type((_TransientHTTPError, requests.ConnectionError)),
        wait=wait_exponential(multiplier=0.2, max=5),
        stop=stop_after_attempt(5),
        reraise=True,
    ):
        with attempt:
            response = session.post(endpoint.scoring_uri, data=body, headers=headers, timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S))
            if response.status_code in TRANSIENT_STATUS:
                raise _TransientHTTPError(f"HTTP {response.status_code}")
    if response.status_code != 200:
        raise EvaluationError(
            f"endpoint {endpoint.name} (deployment {deployment or endpoint.deployment}) answered HTTP "
            f"{response.status_code}: {response.text[:300]}"
        )
    try:
        return response.json()
    except ValueError as exc:
        raise EvaluationError(f"endpoint {endpoint.name} answered with a body that is not JSON: {response.text[:200]}") from exc


# Asked of the endpoint so that its answer names its classes: the data's labels ("Presence"/"Absence"),
# listed negative first, are turned back into the 0/1 the holdout's target holds.
WITH_CLASSES = {"return_probabilities": True}
EVAL_ID_PREFIX = "heartflow-"  # request ids of heartflow's own evaluation traffic: heartflow-<purpose>-<run>-<n>
HOLDOUT_PURPOSE = "holdout"


def predictions_of(answer: Any, expected: int, endpoint: Endpoint) -> list[int]:
    """The 0/1 labels in an endpoint's answer (a list, or Azure's doubly encoded JSON string); an answer
    with ``classes`` (the data's labels, negative first) is mapped to each label's index."""
    if isinstance(answer, str):  # an Azure run() that returns a JSON string gets encoded twice
        answer = json.loads(answer)
    if isinstance(answer, dict):
        classes = answer.get("classes")
        answer = answer.get("predictions", answer.get("result"))
        if isinstance(classes, list) and len(classes) == 2 and isinstance(answer, list):
            index = {json.dumps(c): i for i, c in enumerate(classes)}
            unknown = [p for p in answer if json.dumps(p) not in index]
            if unknown:
                raise EvaluationError(f"endpoint {endpoint.name} answered labels {unknown[:5]} outside its classes {classes}")
            answer = [index[json.dumps(p)] for p in answer]
    if not isinstance(answer, list) or len(answer) != expected:
        raise EvaluationError(
            f"endpoint {endpoint.name} answered {type(answer).__name__} for {expected} rows; expected a list of {expected} labels"
        )
    try:
        return [int(p) for p in answer]
    except (TypeError, ValueError) as exc:
        raise EvaluationError(f"endpoint {endpoint.name} answered labels that are not 0/1: {answer[:5]}") from exc


def positive_scores_of(answer: Any, expected: int) -> list[float] | None:
    """The positive class's probability per row (classes listed negative first); None when the answer has none."""
    if isinstance(answer, str):
        answer = json.loads(answer)
    proba = answer.get("probabilities") if isinstance(answer, dict) else None
    if not isinstance(proba, list) or len(proba) != expected:
        return None
    try:
        return [float(row[1]) for row in proba]
    except (TypeError, ValueError, IndexError):
        return None


def classes_of(answer: Any) -> list[str] | None:
    """The two classes an answer names (the data's labels, negative first), as text; None without them."""
    if isinstance(answer, str):
        answer = json.loads(answer)
    classes = answer.get("classes") if isinstance(answer, dict) else None
    return [str(c) for c in classes] if isinstance(classes, list) and len(classes) == 2 else None


class Predictor(Protocol):
    """Predictions of one deployment for a frame of features, in its row order, and what calling it cost.
    Over HTTP (``EndpointPredictor``) for a real endpoint; in process for the in-memory backend."""

    requests: int  # calls made so far
    latencies_ms: list[float]  # one per call
    classes: list[str] | None  # the data's labels, negative first, when the deployment names them
    # (optional) ``scores``: the positive class's probability per row of the last call, when it gave them

    def __call__(self, frame: pd.DataFrame) -> list[int]: ...


class EndpointPredictor(BatchPredictor):
    """Predictions of one deployment of a live endpoint over HTTP, in batches of at most ``batch_size`` rows."""

    def __init__(self, endpoint: Endpoint, key: str, *, deployment: str | None = None, batch_size: int = 500,
                 purpose: str = HOLDOUT_PURPOSE) -> None:
        super().__init__(self._post, deployment=deployment or endpoint.deployment, batch_size=batch_size)
        # Each request's id is heartflow-<purpose>-<run>-<n>: monitoring tells heartflow's own traffic from live
        # traffic, and takes the holdout's answers as its prediction reference.
        self._ids = f"{EVAL_ID_PREFIX}{purpose}-{uuid.uuid4().hex[:12]}"
        self.endpoint = endpoint
        self._key = key
        self._session: requests.Session | None = None

    def __call__(self, frame: pd.DataFrame) -> list[int]:
        try:
            with requests.Session() as self._session:  # one connection for the frame's batches
                return super().__call__(frame)
        except requests.RequestException as exc:
            raise EvaluationError(
                f"endpoint {self.endpoint.name} at {self.endpoint.scoring_uri} did not answer: {exc}"
            ) from exc
        finally:
            self._session = None

    def _post(self, rows: pd.DataFrame, number: int) -> BatchAnswer:
        assert self._session is not None  # only called from __call__
        records = records_of(rows)
        answer = call_endpoint(self._session, self.endpoint, self._key, records, deployment=self.deployment,
                               extra=WITH_CLASSES, request_id=f"{self._ids}-{number}")
        return BatchAnswer(predictions_of(answer, len(records), self.endpoint), positive_scores_of(answer, len(records)),
                           classes_of(answer))


def evaluate_with(
    predict: Predictor, endpoint: Endpoint, holdout: pd.DataFrame, target: str, *, deployment: str | None = None,
) -> EvalReport:
    """Score ``predict``'s answers on ``holdout`` (features only go in) against its labels. The report's
    predictions stay in the holdout's row order; a holdout indexed by row keys gives them as ``row_ids``,
    so two reports on the same rows pair up row by row (the gate's paired test). Each request's id starts
    with ``heartflow-<purpose>-``: monitoring takes the holdout's answers as its prediction reference."""
    if holdout.empty:
        raise EvaluationError("the holdout is empty: nothing to evaluate")
    features = holdout.drop(columns=[target])
    labels = holdout[target].astype(int).tolist()
    predictions = predict(features)
    if len(predictions) != len(labels):
        raise EvaluationError(f"endpoint {endpoint.name} gave {len(predictions)} predictions for {len(labels)} rows")
    # The printed report names the data's labels (Absence/Presence); the dict keeps 0/1 for code that reads it.
    report_text = classification_report(labels, predictions, labels=[0, 1], target_names=predict.classes,
                                        zero_division=0)
    report = classification_report(labels, predictions, labels=[0, 1], zero_division=0, output_dict=True)
    scores = getattr(predict, "scores", None)  # the metric's floor and the calibration read them
    matrix = confusion_matrix(labels, predictions, labels=[0, 1])
    logger.info("evaluated %d holdout rows through %s in %d request(s)", len(labels), endpoint.scoring_uri,
                predict.requests)
    return EvalReport(
        endpoint=endpoint.name,
        deployment=deployment or endpoint.deployment,
        model_version=endpoint.model_version,
        rows=len(labels),
        labels=tuple(labels),
        predictions=tuple(predictions),
        accuracy=float(accuracy_score(labels, predictions)),
        report_text=report_text,
        report=report,
        confusion_matrix=tuple(tuple(int(x) for x in row) for row in matrix),
        requests=predict.requests,
        latency_ms_p50=float(statistics.median(predict.latencies_ms)) if predict.latencies_ms else 0.0,
        row_ids=tuple(map(str, holdout.index)) if holdout.index.name == ROW_KEY else (),
        scores=tuple(scores) if scores and len(scores) == len(labels) else (),
    )


def evaluate_over_http(
    endpoint: Endpoint, key: str, holdout: pd.DataFrame, target: str, *, batch_size: int = 32,
    deployment: str | None = None,
) -> EvalReport:
    """Send ``holdout`` (features only) in batches over HTTP, as a client would, and score the answers."""
    predictor = EndpointPredictor(endpoint, key, deployment=deployment, batch_size=batch_size)
    return evaluate_with(predictor, endpoint, holdout, target, deployment=deployment)
