"""What makes two sweeps the same: one identity for every backend, used as Prefect's cache key
(``Backend.sweep_identity``), as the local backend's sweep key (which names its MLflow sweep run) and as
the Azure backend's job name (which dedupes a retried submit).

The inputs: the data, the schema, the search and validation, the seed, the training code, and the
environment the trials run in (``Backend.sweep_environment``: this interpreter's training packages here,
Azure's Environment, its image and pins, and the folder its trials save their model to). Concurrency and
timeouts are left out: they change how fast a sweep runs, not what it finds.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

from backends.domain.spec import SweepSpec
from backends.results import DataRef

SRC_DIR = Path(__file__).resolve().parents[2] / "src"
SPEED_ONLY = {"max_concurrent_trials", "timeout_s", "trial_timeout_s"}
# What a trial's result depends on besides heartflow's own code (the estimators, their numerics, the reader).
TRAINING_PACKAGES = ("scikit-learn", "numpy", "scipy", "pandas")
IDENTITY_CHARS = 24


def training_code_hash(folder: Path) -> str:
    """sha256 over a training code folder (relative paths and bytes, sorted; caches skipped)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        if "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo"):
            continue
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def code_version() -> str:
    """A hash of the training code (src/, as Azure uploads it): a change to it invalidates cached sweeps."""
    return training_code_hash(SRC_DIR)[:16]


def interpreter_environment() -> dict[str, str]:
    """This interpreter's Python and training packages: where trials run on a backend that trains in-process
    or in local workers."""
    versions = {}
    for name in TRAINING_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    return {"python": python, "packages": ";".join(f"{k}=={v}" for k, v in sorted(versions.items()))}


def sweep_identity(data: DataRef, spec: SweepSpec, schema_json: str, environment: Mapping[str, str]) -> str:
    """The identity of a sweep (24 hex digits): the same inputs give the same identity, any change another."""
    relevant = spec.model_dump(mode="json", exclude=SPEED_ONLY)
    payload = json.dumps(
        {"data": data.sha256, "spec": relevant, "schema": json.loads(schema_json), "code": code_version(),
         "environment": dict(environment)},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:IDENTITY_CHARS]
