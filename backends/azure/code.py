"""The code folder Azure ML runs: the package ``src`` and nothing else of the project.

Training jobs and deployments upload a folder that holds ``src/`` (a copy of this project's src package), so on
Azure the trial runs ``python -m src.model_train`` and the deployment's scoring script is ``src/score.py`` with
the folder as its root (azmlinfsrv puts the root on sys.path): src is imported as the same package there as
here, by the same absolute imports.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import tempfile
from pathlib import Path

PACKAGE = "src"
TRAIN_MODULE = f"{PACKAGE}.model_train"  # python -m src.model_train, from the code folder
TRAIN_COMMAND = ("python", "-m", TRAIN_MODULE)  # the trial's command line before its arguments
SCORING_SCRIPT = f"{PACKAGE}/score.py"  # relative to the code folder, as CodeConfiguration takes it
_SKIPPED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")


def source_dir() -> Path:
    """This project's src/ package folder."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is not None and spec.origin:
        return Path(spec.origin).resolve().parent
    return Path(__file__).resolve().parents[2] / PACKAGE  # pragma: no cover - src is always importable here


def stage_code(folder: Path) -> Path:
    """Copy src/ (without caches) into ``folder``/src; returns ``folder``, the code folder Azure ML runs in."""
    shutil.copytree(source_dir(), Path(folder) / PACKAGE, ignore=_SKIPPED)
    return Path(folder)


def code_root() -> Path:
    """The code folder to upload: src/ alone inside a folder, staged once per content of src/ (so the SDK's
    content hash, and Azure's code asset, stay the same while src/ does)."""
    source = source_dir()
    digest = hashlib.sha256()
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        if "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo"):
            continue
        digest.update(path.relative_to(source).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    root = Path(tempfile.gettempdir()) / "heartflow-code" / digest.hexdigest()[:16]
    if (root / PACKAGE).is_dir():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root.parent))
    stage_code(staging)
    try:
        staging.rename(root)  # atomic: a concurrent run sees the whole folder or none
    except OSError:  # another process staged the same content first
        shutil.rmtree(staging, ignore_errors=True)
    return root
