"""What makes two sweeps the same, for caching: backend-agnostic (the Azure backend's cache identity; the
local backend uses the same rule through its own sweep key, which also names its MLflow sweep run)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from backends.results import DataRef
from backends.domain.spec import SweepSpec

SRC_DIR = Path(__file__).resolve().parents[2] / "src"
SPEED_ONLY = {"max_concurrent_trials", "timeout_s", "trial_timeout_s"}


def code_version() -> str:
    """A hash of the training code (src/*.py): a change to it invalidates cached sweeps."""
    digest = hashlib.sha256()
    for file in sorted(SRC_DIR.glob("*.py")):
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def sweep_identity(data: DataRef, spec: SweepSpec, schema_json: str) -> str:
    """Data, schema, search, validation, seed and training code; concurrency and timeouts left out."""
    relevant = spec.model_dump(mode="json", exclude=SPEED_ONLY)
    payload = json.dumps(
        {"data": data.sha256, "spec": relevant, "schema": json.loads(schema_json), "code": code_version()},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:24]
