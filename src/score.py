"""The scoring script of the real-time endpoint: ``init()`` and ``run()``, the contract of Azure ML's
inference server (azmlinfsrv), also used by heartflow's local host.

``init()`` loads the MLflow model under AZUREML_MODEL_DIR once per worker; ``run(raw)`` takes the request
body ``{"data": [records]}`` (as the JSON string azmlinfsrv passes to an undecorated run()) and returns the
list of predicted labels, in the data's own labels (the schema recorded with the model says which). A request it refuses comes back as an AMLResponse with a 4xx status and
``{"error": "..."}`` naming the problem, never as an exception (which azmlinfsrv would turn into a bare 500).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

try:  # imported as part of the project
    from .scoring import ModelLoadError, Scorer, max_rows_from_env
except ImportError:  # loaded by azmlinfsrv from a copy of src/, so no parent package
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from scoring import ModelLoadError, Scorer, max_rows_from_env  # type: ignore[no-redef]

try:
    from azureml_inference_server_http.api.aml_response import AMLResponse
except ImportError:  # pragma: no cover - outside azmlinfsrv's environment errors come back as plain dicts
    AMLResponse = None

logger = logging.getLogger(__name__)

MODEL_DIR_ENV = "AZUREML_MODEL_DIR"
_scorer: Scorer | None = None


def init() -> None:
    """Load the model under AZUREML_MODEL_DIR (that folder, or the one folder below it holding MLmodel)."""
    global _scorer
    root = os.environ.get(MODEL_DIR_ENV)
    if not root:
        raise ModelLoadError(f"{MODEL_DIR_ENV} is not set: point it at the folder of the MLflow model")
    _scorer = Scorer.from_model_dir(Path(root), max_rows=max_rows_from_env())


def run(raw_data: str | bytes) -> Any:
    """Predict for ``{"data": [records]}``: a list of labels, or with ``"return_probabilities": true`` a dict
    with predictions, probabilities and the classes they belong to. Refused requests: AMLResponse({"error": ...}, 4xx)."""
    if _scorer is None:
        return _respond({"error": "the model is not loaded: init() has not run"}, 503)
    status, payload = _scorer.score(raw_data)
    if status == 200:
        return payload
    return _respond(payload, status)


def _respond(payload: dict[str, Any], status: int) -> Any:
    if AMLResponse is None:
        return payload
    return AMLResponse(payload, status, json_str=True)
