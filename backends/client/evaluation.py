"""Evaluation through the live endpoint: the holdout goes over HTTP exactly as a client's request would.

Shared by both backends: the local host and an Azure managed endpoint take the same body, the same
key header and the same `azureml-model-deployment` routing header.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import time
import uuid
from typing import Any

import numpy as np
import pandas as pd
import requests
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

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


def classes_of(answer: Any) -> list[str] | None:
    """The two classes an answer names (the data's labels, negative first), as text; None without them."""
    if isinstance(answer, str):
        answer = json.loads(answer)
    classes = answer.get("classes") if isinstance(answer, dict) else None
    return [str(c) for c in classes] if isinstance(classes, list) and len(classes) == 2 else None


def evaluate_over_http(
    endpoint: Endpoint, key: str, holdout: pd.DataFrame, target: str, *, batch_size: int = 32,
    deployment: str | None = None, purpose: str = HOLDOUT_PURPOSE,
) -> EvalReport:
    """Send ``holdout`` (features only) in batches and score the answers against its labels. The report's
    predictions stay in the holdout's row order; a holdout indexed by row keys gives them as ``row_ids``,
    so two reports on the same rows pair up row by row (the gate's paired test). Each request's id starts
    with ``heartflow-<purpose>-``: monitoring takes the holdout's answers as its prediction reference."""
    if holdout.empty:
        raise EvaluationError("the holdout is empty: nothing to evaluate")
    features = holdout.drop(columns=[target])
    labels = holdout[target].astype(int).tolist()
    predictions: list[int] = []
    latencies: list[float] = []
    names: list[str] | None = None
    run = uuid.uuid4().hex[:12]
    try:
        with requests.Session() as session:
            for start in range(0, len(features), batch_size):
                batch = records_of(features.iloc[start : start + batch_size])
                started = time.perf_counter()
                answer = call_endpoint(session, endpoint, key, batch, deployment=deployment, extra=WITH_CLASSES,
                                       request_id=f"{EVAL_ID_PREFIX}{purpose}-{run}-{start // batch_size}")
                latencies.append((time.perf_counter() - started) * 1000)
                names = names or classes_of(answer)
                predictions.extend(predictions_of(answer, len(batch), endpoint))
    except requests.RequestException as exc:
        raise EvaluationError(f"endpoint {endpoint.name} at {endpoint.scoring_uri} did not answer: {exc}") from exc
    # The printed report names the data's labels (Absence/Presence); the dict keeps 0/1 for code that reads it.
    report_text = classification_report(labels, predictions, labels=[0, 1], target_names=names, zero_division=0)
    report = classification_report(labels, predictions, labels=[0, 1], zero_division=0, output_dict=True)
    matrix = confusion_matrix(labels, predictions, labels=[0, 1])
    requests_sent = math.ceil(len(features) / batch_size)
    logger.info("evaluated %d holdout rows through %s in %d request(s)", len(labels), endpoint.scoring_uri, requests_sent)
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
        requests=requests_sent,
        latency_ms_p50=float(statistics.median(latencies)),
        row_ids=tuple(map(str, holdout.index)) if holdout.index.name == ROW_KEY else (),
    )
