"""Prefect caching for the expensive, repeatable stages (upload and sweep).

A cache key is computed from what decides the result, never from the inputs' pickles (a DataFrame
hashes poorly): the training data's sha256, the search space and validation, the training code's version
and where the backend stores things; the backend says what those are (``Backend.store_identity``,
``Backend.sweep_identity``). Results are persisted where the backend says (``Backend.result_storage``: the
heartflow home on the local backend, so deleting a home also forgets its cache), else under PREFECT_HOME's
default result storage.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from backends.base import Backend

# Bump to invalidate every cached upload and sweep (a change in what the cached objects hold).
CACHE_FORMAT = "1"


def backend_identity(backend: Backend) -> str:
    """Which store a backend writes to: a cached result is valid only for the same store."""
    return backend.store_identity()


def _digest(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]


def upload_key(backend: Backend, train_sha256: str) -> str:
    return "heartflow-upload-" + _digest(
        {"format": CACHE_FORMAT, "backend": backend_identity(backend), "data": train_sha256}
    )


def sweep_cache_key(backend: Backend, data: Any, spec: Any, schema_json: str) -> str:
    """The backend's sweep identity (data sha256, search spec, schema, training-code version) plus the store."""
    return "heartflow-sweep-" + _digest(
        {
            "format": CACHE_FORMAT,
            "backend": backend_identity(backend),
            "sweep": backend.sweep_identity(data, spec, schema_json),
        }
    )


def upload_cache_key_fn(context: Any, parameters: dict[str, Any]) -> str:  # noqa: ARG001 - Prefect's signature
    return upload_key(parameters["backend"], parameters["prepared"].train_sha256)


def sweep_cache_key_fn(context: Any, parameters: dict[str, Any]) -> str:  # noqa: ARG001 - Prefect's signature
    return sweep_cache_key(
        parameters["backend"], parameters["data"], parameters["spec"], parameters["prepared"].schema.to_json()
    )


def result_storage_for(backend: Backend) -> Path | None:
    """Where cached results live: <home>/prefect-results on the local backend; None means Prefect's
    default (PREFECT_LOCAL_STORAGE_PATH, under PREFECT_HOME)."""
    return backend.result_storage()
