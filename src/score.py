"""The scoring script of the real-time endpoint: ``init()`` and ``run()``, the contract of Azure ML's
inference server (azmlinfsrv), also used by heartflow's local host.

``init()`` loads the MLflow model under AZUREML_MODEL_DIR once per worker; ``run(raw)`` takes the request
body ``{"data": [records]}`` (as the JSON string azmlinfsrv passes to an undecorated run()) and returns the
list of predicted labels, in the data's own labels (the schema recorded with the model says which). A request it refuses comes back as an AMLResponse with a 4xx status and
``{"error": "..."}`` naming the problem, never as an exception (which azmlinfsrv would turn into a bare 500).

Capture on Azure: when ``azureml-ai-monitoring`` is installed (it is in heartflow's Environment), the
collectors ``model_inputs`` (the validated rows) and ``model_outputs`` (prediction and P(positive) per row)
send each answered request to the deployment's data collector, which writes them to the workspace's blob
storage joined by the request's correlation id (its x-request-id). Headers, and so the key, are never
collected. HEARTFLOW_CAPTURE=0 turns it off; the local host captures in its own way and never runs this.
"""

from __future__ import annotations

import logging
import os
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
        status, payload, scored = _scorer.score_captured(raw_data)
        if scored is not None:
            _collect(scored)
    if status == 200:
        return payload
    return _respond(payload, status)


def _collect(scored: Any) -> None:
    """The rows and answers of one request to the data collector (it sends in the background)."""
    import json

    import pandas as pd

    assert _collectors is not None
    rows = scored.rows if scored.rows is not None else json.loads(scored.body)["data"]
    inputs, outputs = _collectors
    try:
        context = inputs.collect(pd.DataFrame(rows))
        proba = None if scored.positive_proba is None else scored.positive_proba.tolist()
        outputs.collect(pd.DataFrame({"prediction": scored.predictions, "probability": proba}), context)
    except Exception as exc:  # noqa: BLE001 - capture must never fail a request; the loss is logged
        logger.warning("data collector: request not captured: %s", exc)


def _respond(payload: dict[str, Any], status: int) -> Any:
    if AMLResponse is None:
        return payload
    return AMLResponse(payload, status, json_str=True)
