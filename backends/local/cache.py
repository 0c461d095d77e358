"""heartflow's per-machine cache: what is the same for every home and is made once per machine and library
version (the empty MLflow store; in the tests, Prefect's migrated database, the Azure virtualenv, mypy's cache)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """~/.cache/heartflow, or heartflow/ under XDG_CACHE_HOME when it is set (not created here)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "heartflow"
