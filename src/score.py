"""The scoring script of the real-time endpoint: ``init()`` and ``run()``, the contract of Azure ML's
inference server (azmlinfsrv), also used by heartflow's local host.

``init()`` loads the MLflow model under AZUREML_MODEL_DIR once per worker; ``run(raw)`` takes the request
body ``{"data": [records]}`` (as the JSON string azmlinfsrv passes to an undecorated run()) and returns the
list of predicted labels, in the data's own labels (the schema recorded with the model says which). A request it refuses comes back as an AMLResponse with a 4xx status and
``{"error": "..."}`` naming the problem, never as an exception (which azmlinfsrv would turn into a bare 500).

Capture on Azure: when ``azureml-ai-monitoring`` is installed (it is in heartflow's Environment), the
collectors ``model_inputs`` (the validated rows) and ``model_outputs`` (one row per answered input row, or one
row for a refused or failed request) send each request to the deployment's data collector, which writes them
to the workspace's blob storage (``backends.azure.collected`` reads them back). Every collected row carries a
``correlationid`` column: the request id (azmlinfsrv's x-request-id, the one its answer's header carries), or
``<id>/<row>`` for a row of a batch, because the collector may batch close requests into one record under one
id. ``model_outputs`` also carries ``request_id``, ``row``, ``status``, ``latency_ms`` (run()'s own time in
this process: the scoring container's, not the gateway's, which adds queueing and network), ``model_version``
and, for a 200, ``prediction``, ``probability`` and ``positive_class``; a refusal carries a short ``reason``
(a column's name at most, never a value sent), a failure its exception's type, collected before it is
re-raised. Headers, and so the key, are never collected. HEARTFLOW_CAPTURE=0 turns it off; the local host
captures in its own way and never runs this.
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from pathlib import Path
from typing import Any

from src.scoring import ModelLoadError, Scorer, max_rows_from_env

try:
    from azureml_inference_server_http.api.aml_response import AMLResponse
except ImportError:  # pragma: no cover - outside azmlinfsrv's environment errors come back as plain dicts
    AMLResponse = None

logger = logging.getLogger(__name__)

MODEL_DIR_ENV = "AZUREML_MODEL_DIR"
CAPTURE_ENV = "HEARTFLOW_CAPTURE"
_scorer: Scorer | None = None
_collectors: tuple[Any, Any] | None = None


def init() -> None:
    """Load the model under AZUREML_MODEL_DIR (that folder, or the one folder below it holding MLmodel)."""
    global _scorer
    root = os.environ.get(MODEL_DIR_ENV)
    if not root:
        raise ModelLoadError(f"{MODEL_DIR_ENV} is not set: point it at the folder of the MLflow model")
    _scorer = Scorer.from_model_dir(Path(root), max_rows=max_rows_from_env())
    _start_collectors()


def _start_collectors() -> None:
    global _collectors
    if os.environ.get(CAPTURE_ENV, "1") == "0":
        return
    try:
        from azureml.ai.monitoring import Collector
    except ImportError:  # not in this environment: serving goes on without capture
        logger.info("azureml-ai-monitoring is not installed: requests are not captured")
        return

    reported: set[str] = set()

    def on_error(exc: Exception) -> None:  # once per kind of problem ("custom logging is not enabled" off Azure)
        if str(exc) not in reported:
            reported.add(str(exc))
            logger.warning("data collector: %s (said once)", exc)

    _collectors = (Collector(name="model_inputs", on_error=on_error), Collector(name="model_outputs", on_error=on_error))


def run(raw_data: str | bytes) -> Any:
    """Predict for ``{"data": [records]}``: a list of labels, or with ``"return_probabilities": true`` a dict
    with predictions, probabilities and the classes they belong to. Refused requests: AMLResponse({"error": ...}, 4xx)."""
    if _scorer is None:
        return _respond({"error": "the model is not loaded: init() has not run"}, 503)
    if _collectors is None:
        status, payload = _scorer.score(raw_data)
    else:
        started = time.perf_counter()
        try:
            status, payload, scored = _scorer.score_captured(raw_data)
        except Exception as exc:  # collected as a failure, then raised: azmlinfsrv answers 500 as before
            _collect_refusal(500, type(exc).__name__, _since(started))
            raise
        if scored is not None:  # the time to validate and predict, without the collection's own cost
            _collect(scored, _since(started))
        else:
            _collect_refusal(status, _reason(status, str(payload.get("error", "")) if isinstance(payload, dict) else ""),
                             _since(started))
    if status == 200:
        return payload
    return _respond(payload, status)


def request_id() -> str:
    """The id azmlinfsrv answers with in ``x-request-id`` (the client's, else one it made up); a new one
    outside a request (a direct call in a test)."""
    try:
        from flask import g, has_request_context, request
    except ImportError:  # pragma: no cover - flask comes with azmlinfsrv
        return uuid.uuid4().hex
    if not has_request_context():
        return uuid.uuid4().hex
    return str(getattr(g, "request_id", "") or request.headers.get("x-request-id", "") or uuid.uuid4().hex)


def model_version() -> str | None:
    """The served model's version: Azure mounts a registered model at AZUREML_MODEL_DIR = .../<name>/<version>."""
    root = os.environ.get(MODEL_DIR_ENV, "").rstrip("/")
    version = os.path.basename(root)
    return version if version.isdigit() else None


_COLUMN = re.compile(r"^data\[\d+\]\.([^ ]+) must be")


def _reason(status: int, message: str) -> str:
    """A short reason for a refused request: a column's name at most, never a value sent."""
    column = _COLUMN.match(message)
    if column:
        return f"bad value in {column.group(1)}"
    if "column(s)" in message:
        return "missing column(s)"
    if "not valid JSON" in message:
        return "invalid JSON"
    return {413: "too many records"}.get(status, f"status {status}")


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _meta(rid: str, status: int, latency_ms: float) -> dict[str, Any]:
    return {"request_id": rid, "status": status, "latency_ms": latency_ms, "model_version": model_version()}


def _collect(scored: Any, latency_ms: float) -> None:
    """The rows and answers of one request to the data collector (it sends in the background)."""
    import json

    import pandas as pd

    assert _collectors is not None
    rows = scored.rows if scored.rows is not None else json.loads(scored.body)["data"]
    rid = request_id()
    ids = [rid] if len(rows) == 1 else [f"{rid}/{i}" for i in range(len(rows))]
    inputs, outputs = _collectors
    try:
        # One object block per frame, built from lists: about half of pandas' cost per column (same JSON).
        names = list(rows[0]) if rows else []
        table = [[row.get(n) for n in names] + [cid] for row, cid in zip(rows, ids, strict=True)]
        context = inputs.collect(pd.DataFrame(table, columns=[*names, "correlationid"], dtype=object), _context(rid))
        proba = [None] * len(rows) if scored.positive_proba is None else scored.positive_proba.tolist()
        meta = _meta(rid, 200, latency_ms)
        positive = scored.classes[-1] if scored.classes else None
        answers = [[cid, i, p, q, positive, *meta.values()]
                   for i, (cid, p, q) in enumerate(zip(ids, scored.predictions, proba, strict=True))]
        outputs.collect(pd.DataFrame(answers, columns=["correlationid", "row", "prediction", "probability",
                                                       "positive_class", *meta], dtype=object), context)
    except Exception as exc:  # noqa: BLE001 - capture must never fail a request; the loss is logged
        logger.warning("data collector: request not captured: %s", exc)


def _collect_refusal(status: int, reason: str, latency_ms: float) -> None:
    """One model_outputs row for a request refused (4xx) or failed (5xx): no body, no rows."""
    import pandas as pd

    assert _collectors is not None
    rid = request_id()
    try:
        _collectors[1].collect(pd.DataFrame([{"correlationid": rid, "row": -1, "reason": reason, **_meta(rid, status, latency_ms)}]),
                               _context(rid))
    except Exception as exc:  # noqa: BLE001 - as in _collect
        logger.warning("data collector: refusal not captured: %s", exc)


def _context(rid: str) -> Any:
    """The collector's correlation context under the request's id (its ``correlationid``/``xrequestid``)."""
    from azureml.ai.monitoring.context import BasicCorrelationContext

    return BasicCorrelationContext(id=rid)


def _respond(payload: dict[str, Any], status: int) -> Any:
    if AMLResponse is None:
        return payload
    return AMLResponse(payload, status, json_str=True)
